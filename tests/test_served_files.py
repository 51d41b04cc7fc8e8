"""Served files answered from the view's remembered decision (reading/served_files.py)."""

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from readerstudy.reading import served_files
from readerstudy.studies.lifecycle import close_study
from readerstudy.studies.models import AssignedCase

from .studies import make_pool, open_study_for, readers

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_decisions():
    served_files.forget_all()
    yield
    served_files.forget_all()


@pytest.fixture
def volume_study():
    make_pool(real={("CT", "3d"): 2}, synthetic={("CT", "3d"): 2}, depth=6)
    team = readers(2)
    study = open_study_for(team, {("CT", "3d"): 4}, seed=3)
    return study, team


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def first_case(user) -> AssignedCase:
    return AssignedCase.objects.get(assignment__reader=user, position=1, panel=0)


def headers(response) -> dict:
    return {k: v for k, v in response.headers.items()}


@override_settings(SERVED_FILE_AUTHORISATION_SECONDS=60)
def test_a_cases_next_files_need_no_query_and_are_what_the_view_sends(volume_study, django_assert_num_queries):
    study, (reader, _) = volume_study
    case = first_case(reader)
    client = logged_in(reader)
    urls = [reverse("read-slice", args=[case.token, n]) for n in (1, 2, 6)]
    urls += [reverse("read-reformat", args=[case.token, "coronal", 3]),
             reverse("read-reformat", args=[case.token, "sagittal", 1])]
    with override_settings(SERVED_FILE_AUTHORISATION_SECONDS=0):
        by_view = {url: client.get(url) for url in urls}  # every request through the view
    assert not served_files._decisions
    assert client.get(urls[0]).status_code == 200  # authorised by the view, and remembered
    with django_assert_num_queries(0):
        remembered = {url: client.get(url) for url in urls}
    for url in urls:
        assert by_view[url].status_code == remembered[url].status_code == 200, url
        assert remembered[url].content == by_view[url].content, url
        assert headers(remembered[url]) == headers(by_view[url]), url
    # A slice the case does not have goes on to the view, which says so.
    assert client.get(reverse("read-slice", args=[case.token, 7])).status_code == 404


@override_settings(SERVED_FILE_AUTHORISATION_SECONDS=60)
def test_a_decision_holds_for_its_own_session_and_case_only(volume_study):
    study, (reader, other) = volume_study
    mine = first_case(reader)
    assert logged_in(reader).get(reverse("read-slice", args=[mine.token, 1])).status_code == 200
    # Another reader, even with the token, and the same reader in another session go to the view.
    assert logged_in(other).get(reverse("read-slice", args=[mine.token, 2])).status_code == 404
    assert Client().get(reverse("read-slice", args=[mine.token, 2])).status_code == 302
    fresh = logged_in(reader)
    third = AssignedCase.objects.get(assignment__reader=reader, position=3, panel=0)
    assert fresh.get(reverse("read-slice", args=[third.token, 1])).status_code == 404  # not reached yet
    # A POST is never answered from a decision.
    client = logged_in(reader)
    client.get(reverse("read-slice", args=[mine.token, 1]))
    assert client.post(reverse("read-slice", args=[mine.token, 1])).status_code in (403, 405)


def test_a_decision_lapses_after_its_lifetime(volume_study, monkeypatch):
    study, (reader, _) = volume_study
    case = first_case(reader)
    client = logged_in(reader)
    url = reverse("read-slice", args=[case.token, 1])
    now = [1000.0]
    monkeypatch.setattr(served_files.time, "monotonic", lambda: now[0])
    with override_settings(SERVED_FILE_AUTHORISATION_SECONDS=2):
        assert client.get(url).status_code == 200
        close_study(study)
        now[0] += 1.5
        assert client.get(url).status_code == 200  # still within the 2 s the decision is kept
        now[0] += 1.0
        assert client.get(url).status_code == 404  # the view again, which sees the closed study


def test_nothing_is_remembered_when_turned_off(volume_study):
    study, (reader, _) = volume_study
    client = logged_in(reader)
    assert client.get(reverse("read-slice", args=[first_case(reader).token, 1])).status_code == 200
    assert not served_files._decisions
