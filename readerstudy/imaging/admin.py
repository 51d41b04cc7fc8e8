from django.contrib import admin

from .models import Dataset, PoolItem, Rendition
from .pool import delete_pool_item


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "origin", "licence", "item_count", "created_at")
    list_filter = ("origin",)
    search_fields = ("name", "licence", "source")
    readonly_fields = ("origin", "created_at")

    @admin.display(description="Items")
    def item_count(self, obj):
        return obj.items.count()


class RenditionInline(admin.TabularInline):
    model = Rendition
    extra = 0
    can_delete = False
    readonly_fields = ("rows", "cols", "depth", "directory", "file_bytes", "created_at")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(PoolItem)
class PoolItemAdmin(admin.ModelAdmin):
    list_display = (
        "id", "modality", "dimensionality", "origin", "body_part", "dataset", "licence",
        "source_name", "source_locator", "generator", "seed", "created_at",
    )
    list_filter = ("modality", "origin", "dimensionality", "dataset", "generator")
    search_fields = ("source_name", "source_sha256", "prompt", "body_part", "public_id")
    list_select_related = ("dataset", "generator")
    # What an item is, where it came from and its files are set by import or generation; truth and
    # provenance feed the blinding checks and the analysis, so only the body part is edited here.
    EDITABLE = ("body_part",)
    fieldsets = (
        (None, {"fields": ("public_id", "modality", "dimensionality", "body_part")}),
        ("Provenance", {"fields": (
            "origin", "dataset", "source_name", "source_sha256", "source_locator",
            "generator", "generation_job", "seed", "prompt", "import_job", "created_by", "created_at",
        )}),
        ("Image", {"fields": ("native_shape", "native_spacing_mm", "master_shape", "master_file", "source_info")}),
    )
    inlines = [RenditionInline]

    @admin.display(description="Licence", ordering="dataset__licence")
    def licence(self, obj):
        return obj.dataset.licence

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in PoolItem._meta.fields if f.name not in self.EDITABLE]

    def has_add_permission(self, request):
        return False  # items enter the pool through import or generation, which write their files

    def delete_model(self, request, obj):
        delete_pool_item(obj)

    def delete_queryset(self, request, queryset):
        for item in queryset:
            delete_pool_item(item)
