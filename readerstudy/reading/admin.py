from django.contrib import admin

from .models import Read, ReadRevision


class ReadRevisionInline(admin.TabularInline):
    model = ReadRevision
    extra = 0
    readonly_fields = ("revision", "snapshot", "created_at")
    can_delete = False


@admin.register(Read)
class ReadAdmin(admin.ModelAdmin):
    list_display = ("assigned_case", "label", "confidence", "realism", "anatomy", "submitted_at")
    list_filter = ("label",)
    raw_id_fields = ("assigned_case",)
    inlines = [ReadRevisionInline]
