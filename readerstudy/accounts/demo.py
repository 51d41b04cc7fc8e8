"""Demo accounts for `make demo`: one per role, with passwords printed at start-up.

For a local demonstration on 127.0.0.1 only; production installs create users
with `createsuperuser` and the admin.
"""

from django.conf import settings
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


LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


class DemoAccountsRefused(Exception):
    """The demo's well-known passwords (a superuser among them) would be set outside a local demo."""


def demo_accounts_refusal(confirmed: bool) -> str | None:
    """Why the demo accounts may not be created here, or None: with DEBUG, or confirmed on loopback only."""
    if settings.DEBUG:
        return None
    if not confirmed:
        return ("the demo accounts have published passwords (one is a superuser): create them only with "
                "DJANGO_DEBUG=1 or --i-know-this-is-a-demo")
    exposed = sorted(set(settings.ALLOWED_HOSTS) - LOOPBACK_HOSTS)
    if exposed:
        return (f"the demo accounts are for a server on loopback only, and ALLOWED_HOSTS also admits "
                f"{', '.join(exposed)}")
    return None


def ensure_demo_accounts(confirmed: bool = False) -> list[tuple[str, str, list[str]]]:
    """Create (or reset) the demo users; returns (username, password, roles). Raises DemoAccountsRefused
    outside a local demo (see `demo_accounts_refusal`)."""
    if reason := demo_accounts_refusal(confirmed):
        raise DemoAccountsRefused(reason)
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
