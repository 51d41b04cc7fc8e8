"""Demo accounts for `make demo`: one per role, with passwords printed at start-up.

For a local demonstration on 127.0.0.1 only; production installs create users
with `createsuperuser` and the admin.
"""

from django.contrib.auth.models import Group, User

from .models import ReaderProfile
from .roles import ANALYST, COORDINATOR, READER

# username, password, roles, superuser
DEMO_ACCOUNTS = [
    ("reader1", "demo-reader1", [READER], False),
    ("reader2", "demo-reader2", [READER], False),
    ("coordinator", "demo-coordinator", [COORDINATOR], False),
    ("analyst", "demo-analyst", [ANALYST], False),
    ("admin", "demo-admin", [COORDINATOR, ANALYST], True),
]


def ensure_demo_accounts() -> list[tuple[str, str, list[str]]]:
    """Create (or reset) the demo users; returns (username, password, roles)."""
    created = []
    for username, password, roles, superuser in DEMO_ACCOUNTS:
        user, _ = User.objects.get_or_create(username=username)
        user.set_password(password)
        user.is_superuser = user.is_staff = superuser
        user.is_active = True
        user.save()
        user.groups.set(Group.objects.filter(name__in=roles))
        if READER in roles:
            ReaderProfile.objects.get_or_create(user=user, defaults={"specialty": "radiology", "years_experience": 5})
        created.append((username, password, roles))
    return created
