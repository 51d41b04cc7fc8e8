from django.contrib import admin

from readerstudy.admin_policy import ViewOnly, ViewOnlyAdmin

from .models import AssignedCase, Assignment, Study, StudyCase


class StudyCaseInline(ViewOnly, admin.TabularInline):
    model = StudyCase
    raw_id_fields = ("item", "repeat_of")
    extra = 0


@admin.register(Study)
class StudyAdmin(ViewOnlyAdmin):
    """Status, configuration and cases change through studies.lifecycle (the study pages and the API)."""

    list_display = ("name", "status", "created_by", "created_at", "opened_at", "closed_at")
    list_filter = ("status",)
    search_fields = ("name", "slug")
    readonly_fields = ("audit", "opened_at", "closed_at")
    inlines = [StudyCaseInline]


@admin.register(StudyCase)
class StudyCaseAdmin(ViewOnlyAdmin):
    list_display = ("study", "item", "role")
    list_filter = ("role", "study")
    raw_id_fields = ("item", "repeat_of")


@admin.register(Assignment)
class AssignmentAdmin(ViewOnlyAdmin):
    list_display = ("study", "reader", "created_at", "completed_at")
    list_filter = ("study",)
    search_fields = ("reader__username",)


@admin.register(AssignedCase)
class AssignedCaseAdmin(ViewOnlyAdmin):
    list_display = ("assignment", "position", "session", "case", "token")
    raw_id_fields = ("assignment", "case")
