from django.contrib import admin

from readerstudy.admin_policy import ViewOnly, ViewOnlyAdmin

from .models import Read, ReadRevision


class ReadRevisionInline(ViewOnly, admin.TabularInline):
    model = ReadRevision
    extra = 0
    readonly_fields = ("revision", "snapshot", "created_at")
    can_delete = False


@admin.register(Read)
class ReadAdmin(ViewOnlyAdmin):
    """Answers change only through reading.answers.save_answer (revision and audit event every time)."""

    list_display = ("assigned_case", "label", "confidence", "realism", "anatomy", "submitted_at")
    list_filter = ("label",)
    raw_id_fields = ("assigned_case",)
    inlines = [ReadRevisionInline]
