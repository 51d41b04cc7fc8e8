from django.contrib import admin

from .models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "title", "status", "percent", "created_by", "created_at", "finished_at")
    list_filter = ("kind", "status")
    search_fields = ("title", "message", "error")
    readonly_fields = ("created_at", "started_at", "finished_at", "task_id", "attempts")
