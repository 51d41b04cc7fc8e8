from django.contrib import admin

from readerstudy.admin_policy import ViewOnlyAdmin

from .models import Job


@admin.register(Job)
class JobAdmin(ViewOnlyAdmin):
    """Jobs are cancelled and retried on their pages (jobs.queue), which keep attempts consistent."""

    list_display = ("id", "kind", "title", "status", "percent", "created_by", "created_at", "finished_at")
    list_filter = ("kind", "status")
    search_fields = ("title", "message", "error")
    readonly_fields = ("created_at", "started_at", "finished_at", "task_id", "attempts")
