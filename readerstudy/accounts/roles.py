"""The platform's roles, kept as Django groups with model permissions.

Readers label cases; coordinators build the pool and run studies; analysts read
results and export them. Admins are Django superusers.
"""

from django.contrib.auth.mixins import AccessMixin
from django.core.exceptions import PermissionDenied

READER = "reader"
COORDINATOR = "coordinator"
ANALYST = "analyst"
ROLES = (READER, COORDINATOR, ANALYST)

# app_label -> model -> permission verbs granted to each group.
_ALL = ("add", "change", "delete", "view")
ROLE_PERMISSIONS = {
    READER: {},
    COORDINATOR: {
        "imaging": {"dataset": _ALL, "poolitem": _ALL, "rendition": ("view",)},
        "generation": {"generator": _ALL},
        "jobs": {"job": ("add", "change", "view")},
        "studies": {"study": _ALL, "studycase": _ALL, "assignment": _ALL, "assignedcase": ("view",)},
        "reading": {"read": ("view",)},
        "accounts": {"readerprofile": _ALL},
    },
    ANALYST: {
        "imaging": {"dataset": ("view",), "poolitem": ("view",), "rendition": ("view",)},
        "generation": {"generator": ("view",)},
        "jobs": {"job": ("view",)},
        "studies": {"study": ("view",), "studycase": ("view",), "assignment": ("view",), "assignedcase": ("view",)},
        "reading": {"read": ("view",), "readrevision": ("view",)},
        "accounts": {"readerprofile": ("view",)},
    },
}


def ensure_role_groups(**kwargs) -> None:
    """Create the role groups and (re)grant their permissions; safe to run repeatedly."""
    from django.contrib.auth.models import Group, Permission

    for role, apps in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        codenames = [
            (app, f"{verb}_{model}") for app, models in apps.items() for model, verbs in models.items() for verb in verbs
        ]
        perms = [
            p
            for p in Permission.objects.filter(codename__in=[c for _, c in codenames]).select_related("content_type")
            if (p.content_type.app_label, p.codename) in set(codenames)
        ]
        group.permissions.set(perms)


def has_role(user, *roles: str) -> bool:
    """True if the user is active and in any of the groups (superusers have every role)."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    cache = getattr(user, "_role_cache", None)
    if cache is None:
        cache = set(user.groups.values_list("name", flat=True))
        user._role_cache = cache
    return bool(cache.intersection(roles))


def require_role(user, *roles: str) -> None:
    if not has_role(user, *roles):
        raise PermissionDenied("This page is for " + " or ".join(roles) + "s.")


class RoleRequiredMixin(AccessMixin):
    """Class-based-view mixin: log in first, then require one of `roles`."""

    roles: tuple[str, ...] = ()

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        require_role(request.user, *self.roles)
        return super().dispatch(request, *args, **kwargs)
