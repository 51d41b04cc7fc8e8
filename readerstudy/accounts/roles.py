"""The role groups: how permissions are handed out (see `accounts.permissions` for what is checked).

Readers label cases; coordinators build the pool and run studies; analysts read
results and export them. Admins are Django superusers. Views never check a
group's name, only permissions; the names below are for granting and display.
"""

READER = "reader"
COORDINATOR = "coordinator"
ANALYST = "analyst"
ROLES = (READER, COORDINATOR, ANALYST)

_ALL = ("add", "change", "delete", "view")
# role -> app_label -> model -> what is granted: a model verb ("view" -> view_<model>) or a codename.
ROLE_PERMISSIONS = {
    READER: {"reading": {"read": ("read_cases",)}},
    COORDINATOR: {
        "imaging": {"dataset": _ALL, "poolitem": ("view", "import_images"), "rendition": ("view",)},
        "generation": {"generator": ("view", "change", "generate_images")},
        "jobs": {"job": ("view", "manage_jobs")},
        "studies": {"study": ("view", "manage_study", "view_results", "export_study"),
                    "studycase": ("view",), "assignment": ("view",), "assignedcase": ("view",)},
        "reading": {"read": ("view",)},
        "accounts": {"readerprofile": (*_ALL, "manage_readers")},
    },
    ANALYST: {
        "imaging": {"dataset": ("view",), "poolitem": ("view",), "rendition": ("view",)},
        "generation": {"generator": ("view",)},
        "jobs": {"job": ("view",)},
        "studies": {"study": ("view", "view_results", "export_study"), "studycase": ("view",),
                    "assignment": ("view",), "assignedcase": ("view",)},
        "reading": {"read": ("view",), "readrevision": ("view",)},
        "accounts": {"readerprofile": ("view",)},
    },
}
_VERBS = {"add", "change", "delete", "view"}


def ensure_role_groups(**kwargs) -> None:
    """Create the role groups and (re)grant their permissions; safe to run repeatedly."""
    from django.contrib.auth.models import Group, Permission

    for role, apps in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        wanted = {
            (app, f"{grant}_{model}" if grant in _VERBS else grant)
            for app, models in apps.items() for model, grants in models.items() for grant in grants
        }
        perms = [p for p in Permission.objects.filter(codename__in=[c for _, c in wanted])
                 .select_related("content_type") if (p.content_type.app_label, p.codename) in wanted]
        group.permissions.set(perms)


def roles_of(user) -> list[str]:
    """The role groups a user is in, for display (superusers: every role)."""
    if not user.is_authenticated or not user.is_active:
        return []
    if user.is_superuser:
        return list(ROLES)
    names = set(user.groups.values_list("name", flat=True))
    return [r for r in ROLES if r in names]
