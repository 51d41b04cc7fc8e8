from django.contrib import admin

from .models import AssignedCase, Assignment, Study, StudyCase


class StudyCaseInline(admin.TabularInline):
    model = StudyCase
    raw_id_fields = ("item", "repeat_of")
    extra = 0


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ("name", "status", "created_by", "created_at", "opened_at", "closed_at")
    list_filter = ("status",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("audit", "opened_at", "closed_at")
    inlines = [StudyCaseInline]


@admin.register(StudyCase)
class StudyCaseAdmin(admin.ModelAdmin):
    list_display = ("study", "item", "role")
    list_filter = ("role", "study")
    raw_id_fields = ("item", "repeat_of")


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ("study", "reader", "created_at", "completed_at")
    list_filter = ("study",)
    search_fields = ("reader__username",)


@admin.register(AssignedCase)
class AssignedCaseAdmin(admin.ModelAdmin):
    list_display = ("assignment", "position", "session", "case", "token")
    raw_id_fields = ("assignment", "case")
