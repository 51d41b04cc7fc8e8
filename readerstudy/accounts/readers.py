"""Reader accounts, managed by coordinators without the admin: invite, send a new link, deactivate, reactivate.

An invited reader gets no password from anyone: a one-time link (Django's password-reset token,
valid for PASSWORD_RESET_TIMEOUT and spent once a password is set) lets them choose their own. The
link is shown to the coordinator once and, where the reader has an e-mail address, sent through
Django's e-mail backend. Holders of `accounts.manage_readers` manage accounts that are readers and
nothing more; coordinators' and admins' accounts stay with the admins. Every change is audited.
"""

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from readerstudy.audit.log import record

from .models import ReaderProfile
from .roles import READER, ROLES, ensure_role_groups

User = get_user_model()


class ReaderAccountError(ValueError):
    """A reader-account change that was refused; the message says why and nothing was changed."""


@dataclass(frozen=True)
class Invitation:
    user: object
    link: str
    emailed: bool


def is_reader_account(user) -> bool:
    """A plain reader: in the reader group, in no other role group, not staff, not superuser."""
    if user.is_superuser or user.is_staff:
        return False
    names = set(user.groups.values_list("name", flat=True))
    return READER in names and not (names & (set(ROLES) - {READER}))


def managed_reader_accounts():
    """Every reader account, active or not (a deactivated reader keeps their answers and history)."""
    return (User.objects.filter(groups__name=READER, is_superuser=False, is_staff=False)
            .exclude(groups__name__in=set(ROLES) - {READER})
            .select_related("reader_profile").order_by("username").distinct())


def _check_manageable(user) -> None:
    if not is_reader_account(user):
        raise ReaderAccountError(f"{user.username} is not a reader account; an administrator manages it")


def set_password_path(user) -> str:
    """The one-time set-password page for this user, as a path."""
    return reverse("set-password", kwargs={"uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
                                           "token": default_token_generator.make_token(user)})


def _send(user, link: str, by) -> bool:
    if not user.email:
        return False
    hours = settings.PASSWORD_RESET_TIMEOUT // 3600
    send_mail(
        subject="Your reader-study account",
        message=(f"{by.get_full_name() or by.username} has set up a reader account for you: {user.username}.\n\n"
                 f"Choose your password here (the link works once, for {hours} hours):\n{link}\n"),
        from_email=None, recipient_list=[user.email],
    )
    return True


def invite_reader(*, username: str, by, base_url: str, email: str = "", first_name: str = "",
                  last_name: str = "", specialty: str = "", years_experience: int | None = None,
                  is_trainee: bool = False) -> Invitation:
    """Create an active reader account without a usable password and return its set-password link."""
    username = (username or "").strip()
    try:
        User._meta.get_field(User.USERNAME_FIELD).clean(username, None)
    except ValidationError as exc:
        raise ReaderAccountError(f"user name {username!r}: {' '.join(exc.messages)}") from None
    if User.objects.filter(**{f"{User.USERNAME_FIELD}__iexact": username}).exists():
        raise ReaderAccountError(f"the user name {username!r} is taken")
    if years_experience is not None and not 0 <= years_experience <= 80:
        raise ReaderAccountError("years of experience must be between 0 and 80")
    ensure_role_groups()
    with transaction.atomic():
        user = User(username=username, email=(email or "").strip(), first_name=first_name.strip(),
                    last_name=last_name.strip())
        user.set_unusable_password()
        user.save()
        user.groups.add(Group.objects.get(name=READER))
        ReaderProfile.objects.create(user=user, specialty=specialty.strip(), years_experience=years_experience,
                                     is_trainee=is_trainee)
        record("reader.invited", actor=by, target=username, emailed=bool(user.email))
    link = base_url.rstrip("/") + set_password_path(user)
    return Invitation(user, link, _send(user, link, by))


def reinvite_reader(user, *, by, base_url: str) -> Invitation:
    """A new set-password link for a reader (the old ones stop working once a password is set)."""
    _check_manageable(user)
    if not user.is_active:
        raise ReaderAccountError(f"{user.username} is deactivated; reactivate the account first")
    record("reader.reinvited", actor=by, target=user.username)
    link = base_url.rstrip("/") + set_password_path(user)
    return Invitation(user, link, _send(user, link, by))


def set_reader_active(user, active: bool, *, by) -> bool:
    """Deactivate (log-ins, sessions and API tokens stop working; answers stay) or reactivate a reader.

    Returns whether anything changed.
    """
    from knox.models import AuthToken

    _check_manageable(user)
    if user.is_active == active:
        return False
    with transaction.atomic():
        User.objects.filter(pk=user.pk).update(is_active=active)
        user.is_active = active
        if not active:
            AuthToken.objects.filter(user=user).delete()
        record("reader.reactivated" if active else "reader.deactivated", actor=by, target=user.username)
    return True
