from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User

from .models import ReaderProfile


class ReaderProfileInline(admin.StackedInline):
    model = ReaderProfile
    can_delete = False


admin.site.unregister(User)


@admin.register(User)
class PlatformUserAdmin(UserAdmin):
    inlines = [ReaderProfileInline]
    list_display = ("username", "email", "roles", "is_staff", "is_active", "last_login")

    @admin.display(description="Roles")
    def roles(self, obj):
        return ", ".join(g.name for g in obj.groups.all()) or "-"

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")


@admin.register(ReaderProfile)
class ReaderProfileAdmin(admin.ModelAdmin):
    list_display = ("user", "specialty", "years_experience", "is_trainee")
    search_fields = ("user__username", "specialty")
