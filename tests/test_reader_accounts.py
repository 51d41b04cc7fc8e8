"""Coordinators manage reader accounts without the admin: invite (one-time link), new link, deactivate, reactivate."""

import re

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.urls import reverse
from rest_framework.test import APIClient

from readerstudy.accounts.readers import ReaderAccountError, invite_reader, set_reader_active
from readerstudy.accounts.roles import ANALYST, COORDINATOR, READER, ensure_role_groups
from readerstudy.audit.models import AuditEvent

from .studies import make_user


@pytest.fixture
def coord(db):
    ensure_role_groups()
    return make_user("coord", COORDINATOR)


def link_path(link: str) -> str:
    return re.sub(r"^https?://[^/]+", "", link)


def test_an_invited_reader_sets_a_password_once_and_logs_in(coord, client):
    invitation = invite_reader(username="rad1", email="rad1@example.org", first_name="Ada", specialty="chest",
                               years_experience=7, by=coord, base_url="http://testserver/")
    user = invitation.user
    assert invitation.emailed and len(mail.outbox) == 1 and invitation.link in mail.outbox[0].body
    assert not user.has_usable_password() and user.is_active
    assert list(user.groups.values_list("name", flat=True)) == [READER]
    assert user.reader_profile.specialty == "chest" and user.reader_profile.years_experience == 7
    assert user.has_perm("reading.read_cases")

    page = client.get(link_path(invitation.link), follow=True)
    assert b"Choose your password" in page.content
    done = client.post(page.redirect_chain[-1][0], {"new_password1": "a-Long-secret-77", "new_password2":
                                                    "a-Long-secret-77"})
    assert done.status_code == 302 and done.url == reverse("login")
    assert client.post(reverse("login"), {"username": "rad1", "password": "a-Long-secret-77"}).status_code == 302
    client.logout()
    again = client.get(link_path(invitation.link), follow=True)
    assert b"This link no longer works" in again.content  # spent once the password is set
    assert [e.action for e in AuditEvent.objects.filter(target="rad1")] == ["reader.invited"]


@pytest.mark.parametrize("username, message", [
    ("", "cannot be blank"), ("has space", "Enter a valid username"), ("x" * 151, "at most 150"),
    ("COORD", "is taken"),
])
def test_bad_invitations_are_refused_and_leave_nothing(coord, username, message):
    before = User.objects.count()
    with pytest.raises(ReaderAccountError, match=message):
        invite_reader(username=username, by=coord, base_url="http://testserver/")
    assert User.objects.count() == before and not AuditEvent.objects.exists()


def test_deactivating_ends_sessions_tokens_and_log_ins_and_keeps_the_account(coord, client):
    from knox.models import AuthToken

    reader = make_user("rad2", READER)
    client.force_login(reader)
    assert client.get(reverse("worklist")).status_code == 200
    token = AuthToken.objects.create(reader)[1]
    assert set_reader_active(reader, False, by=coord) is True
    assert set_reader_active(reader, False, by=coord) is False  # nothing to change: no second event
    assert client.get(reverse("worklist")).status_code == 302  # the open session no longer counts
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get("/api/v1/me").status_code == 401
    assert client.post(reverse("login"), {"username": "rad2", "password": "pw-rad2"}).status_code == 200
    set_reader_active(reader, True, by=coord)
    assert client.post(reverse("login"), {"username": "rad2", "password": "pw-rad2"}).status_code == 302
    assert [e.action for e in AuditEvent.objects.filter(target="rad2").order_by("id")] == [
        "reader.deactivated", "reader.reactivated"]


def test_only_plain_reader_accounts_are_managed(coord):
    other_coordinator = make_user("coord2", COORDINATOR)
    both = make_user("both", READER, ANALYST)
    admin = User.objects.create_superuser("root", password="pw-root")
    for user in (other_coordinator, both, admin):
        with pytest.raises(ReaderAccountError, match="not a reader account"):
            set_reader_active(user, False, by=coord)
        user.refresh_from_db()
        assert user.is_active


def test_the_readers_page_invites_and_deactivates(coord, client):
    client.force_login(coord)
    listing = client.get(reverse("reader-list"))
    assert listing.status_code == 200 and b"Invite a reader" in listing.content
    reply = client.post(reverse("reader-list"), {"username": "rad3", "email": "", "years_experience": "3"})
    assert reply.status_code == 200 and "no-store" in reply["Cache-Control"]
    link = re.search(rb'id="invitation-link"[^>]*value="([^"]+)"', reply.content).group(1).decode()
    assert "/accounts/set-password/" in link and not mail.outbox
    taken = client.post(reverse("reader-list"), {"username": "rad3"})
    assert b"is taken" in taken.content and User.objects.filter(username="rad3").count() == 1
    rad3 = User.objects.get(username="rad3")
    client.post(reverse("reader-active", args=[rad3.pk]), {"active": "0"})
    rad3.refresh_from_db()
    assert not rad3.is_active
    assert b"deactivated" in client.get(reverse("reader-list")).content
    refused = client.post(reverse("reader-reinvite", args=[rad3.pk]), follow=True)
    assert b"reactivate the account first" in refused.content


def test_readers_pages_need_the_permission(db, client):
    ensure_role_groups()
    for role in (READER, ANALYST):
        client.force_login(make_user(f"someone-{role}", role))
        assert client.get(reverse("reader-list")).status_code == 403
        assert client.post(reverse("reader-list"), {"username": "sneaky"}).status_code == 403
    assert not User.objects.filter(username="sneaky").exists()


def test_the_api_invites_lists_and_deactivates(coord):
    api = APIClient()
    api.force_authenticate(coord)
    created = api.post("/api/v1/readers/", {"username": "rad4", "email": "rad4@example.org",
                                            "specialty": "neuro", "years_experience": 12}, format="json")
    assert created.status_code == 201 and created["Cache-Control"] == "no-store"
    assert created.data["emailed"] and "/accounts/set-password/" in created.data["link"]
    assert created.data["reader"]["specialty"] == "neuro" and created.data["reader"]["password_set"] is False
    listing = api.get("/api/v1/readers/").data
    assert [r["username"] for r in listing["results"]] == ["rad4"]
    assert "link" not in listing["results"][0]
    assert api.post("/api/v1/readers/", {"username": "rad4"}, format="json").status_code == 400
    again = api.post("/api/v1/readers/rad4/invite")
    assert again.status_code == 200 and "/accounts/set-password/" in again.data["link"] and len(mail.outbox) == 2
    off = api.post("/api/v1/readers/rad4/deactivate")
    assert off.status_code == 200 and off.data["is_active"] is False
    assert api.post("/api/v1/readers/rad4/invite").status_code == 400
    assert api.post("/api/v1/readers/rad4/reactivate").data["is_active"] is True
    assert api.post("/api/v1/readers/coord/deactivate").status_code == 404  # not a reader account


def test_the_api_refuses_readers_and_analysts(db):
    ensure_role_groups()
    for role in (READER, ANALYST):
        api = APIClient()
        api.force_authenticate(make_user(f"api-{role}", role))
        assert api.get("/api/v1/readers/").status_code == 403
        assert api.post("/api/v1/readers/", {"username": "sneaky"}, format="json").status_code == 403
