from django.contrib import admin

from .models import Generator


@admin.register(Generator)
class GeneratorAdmin(admin.ModelAdmin):
    """Descriptions may be edited here; what runs (kind, path, configuration) is set by registration
    (`register_pipeline`, training, `import_synthetic`), which checks the folder."""

    list_display = ("name", "version", "kind", "modalities", "licence", "created_at")
    list_filter = ("kind",)
    search_fields = ("name", "path", "model_card")
    readonly_fields = ("kind", "path", "config", "modalities", "created_at")

    def has_add_permission(self, request):
        return False
