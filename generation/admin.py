from django.contrib import admin

from .models import Generator


@admin.register(Generator)
class GeneratorAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "kind", "modalities", "licence", "created_at")
    list_filter = ("kind",)
    search_fields = ("name", "path", "model_card")
