"""Readers answer cases: autosave, idempotency, revisions, ordering, sessions and permissions."""

import csv
import io
import json
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from readerstudy.accounts.roles import ANALYST
from readerstudy.reading import worklist
from readerstudy.reading.models import Read, ReadRevision
from readerstudy.studies.lifecycle import close_study
from readerstudy.studies.models import AssignedCase

from .studies import make_pool, make_user, open_study_for, readers

pytestmark = pytest.mark.django_db
FULL = {"label": "fake", "confidence": 4, "realism": 2, "anatomy": 3}


@pytest.fixture
def pool():
    return make_pool(real={("CT", "2d"): 8, ("MR", "3d"): 2}, synthetic={("CT", "2d"): 8, ("MR", "3d"): 2})


@pytest.fixture
def team(pool):
    return readers(2)


def study_with(team, **reading):
    return open_study_for(team, {("CT", "2d"): 6}, reading=reading)


def case(reader, position, study=None):
    cases = AssignedCase.objects.select_related("case__item").filter(assignment__reader=reader, position=position)
    return cases.get(assignment__study=study) if study else cases.get()


def post(client, token, body):
    response = client.post(reverse("read-answer", args=[token]), json.dumps(body), content_type="application/json")
    return response.status_code, response.json()


def test_autosave_then_submit_then_resume_where_stopped(client, team):
    study = study_with(team)
    client.force_login(team[0])
    response = client.get(reverse("read-study", args=[study.slug]))
    first = case(team[0], 1)
    assert response.url == reverse("read-case", args=[first.token])

    status, body = post(client, first.token, {"label": "real", "idempotency_key": "autosave-1", "duration_ms": 800})
    assert status == 200 and body["answer"]["label"] == "real" and not body["answer"]["submitted"]
    assert body["next"] is None

    status, body = post(client, first.token, {"label": "real", "idempotency_key": "submit-01", "submit": True})
    assert status == 400 and "missing confidence, realism, anatomy" in body["error"]
    status, body = post(client, first.token, {**FULL, "submit": True, "idempotency_key": "submit-02",
                                              "duration_ms": 5200, "window_changes": 3, "slices_visited": [1]})
    second = case(team[0], 2)
    assert status == 200 and body["answer"]["submitted"]
    assert body["next"] == reverse("read-case", args=[second.token])
    read = Read.objects.get(assigned_case=first)
    assert (read.label, read.confidence, read.realism, read.anatomy) == ("fake", 4, 2, 3)
    assert (read.duration_ms, read.window_changes, read.slices_visited) == (5200, 3, [1])
    assert read.submitted_at is not None

    # A reload (new page view) sends the reader to case 2, and its page shows their saved draft.
    post(client, second.token, {"label": "unsure", "idempotency_key": "autosave-22"})
    assert client.get(reverse("read-study", args=[study.slug])).url == reverse("read-case", args=[second.token])
    state = client.get(reverse("read-state", args=[second.token])).json()
    assert state["answer"]["label"] == "unsure" and state["case"]["done"] == 1


def test_replayed_requests_change_nothing_and_every_change_keeps_a_revision(client, team):
    study_with(team)
    client.force_login(team[0])
    token = case(team[0], 1).token
    body = {**FULL, "submit": True, "idempotency_key": "same-key-123", "duration_ms": 100}
    replies = [post(client, token, body) for _ in range(3)]
    assert [r[1]["replayed"] for r in replies] == [False, True, True]
    read = Read.objects.get(assigned_case__token=token)
    assert read.revision == 1 and not ReadRevision.objects.exists()
    # Changing a finished answer (going back is allowed here) keeps the old one.
    post(client, token, {**FULL, "label": "real", "idempotency_key": "change-1234"})
    post(client, token, {**FULL, "label": "unsure", "idempotency_key": "change-5678"})
    read.refresh_from_db()
    assert read.label == "unsure" and read.revision == 3 and read.submitted_at
    snapshots = list(ReadRevision.objects.filter(read=read).order_by("revision").values_list("snapshot", flat=True))
    assert [s["label"] for s in snapshots] == ["fake", "real"]
    status, reply = post(client, token, {"label": "", "idempotency_key": "clear-12345"})
    assert status == 400 and "cannot clear" in reply["error"]


def test_telemetry_is_cumulative_so_out_of_order_retries_do_not_lose_time(client, team):
    study_with(team)
    client.force_login(team[0])
    token = case(team[0], 1).token
    post(client, token, {"idempotency_key": "t-000002", "duration_ms": 9000, "slices_visited": [1], "window_changes": 4})
    post(client, token, {"idempotency_key": "t-000001", "duration_ms": 3000, "slices_visited": [2], "window_changes": 1})
    read = Read.objects.get(assigned_case__token=token)
    assert (read.duration_ms, read.slices_visited, read.window_changes) == (9000, [1, 2], 4)


def test_going_back_forbidden_means_finished_answers_are_final(client, team):
    study = study_with(team, allow_back=False)
    client.force_login(team[0])
    first, second = case(team[0], 1), case(team[0], 2)
    post(client, first.token, {**FULL, "submit": True, "idempotency_key": "final-0001"})
    status, body = post(client, first.token, {**FULL, "label": "real", "idempotency_key": "final-0002"})
    assert status == 409 and "cannot be changed" in body["error"]
    assert Read.objects.get(assigned_case=first).label == "fake"
    # The old case's page now sends the reader on to the current case.
    response = client.get(reverse("read-case", args=[first.token]))
    assert response.url == reverse("read-study", args=[study.slug])
    assert client.get(response.url).url == reverse("read-case", args=[second.token])
    assert client.get(reverse("read-state", args=[second.token])).json()["navigation"]["previous"] is None


def test_cases_are_read_in_order(client, team):
    study_with(team)
    client.force_login(team[0])
    third = case(team[0], 3)
    status, body = post(client, third.token, {**FULL, "idempotency_key": "ahead-0001"})
    assert status == 409 and "in order" in body["error"]
    assert client.get(reverse("read-case", args=[third.token])).status_code == 302
    assert not Read.objects.exists()


def test_calibration_cases_give_feedback_and_regular_cases_do_not(client, team):
    open_study_for(team, {("CT", "2d"): 4}, reading={"calibration_cases": 2})
    client.force_login(team[0])
    for position in (1, 2):
        c = case(team[0], position)
        assert c.case.role == "calibration"
        _, body = post(client, c.token, {**FULL, "submit": True, "idempotency_key": f"cal-{position:05d}"})
        assert body["feedback"] == {"truth": c.case.item.origin, "your_label": "fake"}
    _, body = post(client, case(team[0], 3).token, {**FULL, "submit": True, "idempotency_key": "regular-001"})
    assert body["feedback"] is None


def test_sessions_wait_for_the_washout_period(client, team, monkeypatch):
    study = open_study_for(team, {("CT", "2d"): 4}, reading={"sessions": 2, "washout_hours": 48})
    client.force_login(team[0])
    for position in (1, 2):
        post(client, case(team[0], position).token, {**FULL, "submit": True, "idempotency_key": f"s1-{position:06d}"})
    third = case(team[0], 3)
    assert third.session == 2
    assert client.get(reverse("read-study", args=[study.slug])).url == reverse("read-break", args=[study.slug])
    assert "washout period" in client.get(reverse("worklist")).content.decode()
    status, body = post(client, third.token, {**FULL, "idempotency_key": "early-0001"})
    assert status == 409
    # 49 hours later (finishing times cannot be moved: the answer guard refuses it).
    later = timezone.now() + timedelta(hours=49)
    monkeypatch.setattr(worklist.timezone, "now", lambda: later)
    assert client.get(reverse("read-study", args=[study.slug])).url == reverse("read-case", args=[third.token])


def test_a_closed_study_keeps_answers_and_refuses_changes(client, team):
    study = study_with(team)
    client.force_login(team[0])
    token = case(team[0], 1).token
    post(client, token, {"label": "real", "idempotency_key": "before-close"})
    close_study(study)
    status, body = post(client, token, {"label": "fake", "idempotency_key": "after-close"})
    assert status == 409 and "closed" in body["error"]
    assert Read.objects.get(assigned_case__token=token).label == "real"
    assert "closed" in client.get(reverse("worklist")).content.decode()


def test_bad_answers_get_clear_messages(client, team):
    study_with(team)
    client.force_login(team[0])
    token = case(team[0], 1).token
    for body, message in [
        ({"label": "maybe", "idempotency_key": "bad-000001"}, "label must be one of real, fake, unsure"),
        ({"realism": 9, "idempotency_key": "bad-000002"}, "realism must be one of [1, 2, 3, 4]"),
        ({"slice_consistency": 2, "idempotency_key": "bad-000003"}, "slice_consistency is not asked"),
        ({"label": "real"}, "idempotency_key must be a string"),
        ({"label": "real", "idempotency_key": "bad-000004", "origin": "x"}, "unknown fields: origin"),
        ({"duration_ms": -5, "idempotency_key": "bad-000005"}, "duration_ms must be a non-negative"),
    ]:
        status, reply = post(client, token, body)
        assert status == 400 and message in reply["error"], (body, reply)
    response = client.post(reverse("read-answer", args=[token]), "not json", content_type="application/json")
    assert response.status_code == 400 and response.json()["error"] == "the body must be JSON"
    assert not Read.objects.exists()


def test_readers_reach_only_their_own_cases(client, team, pool):
    study = study_with(team)
    other_study = open_study_for([team[1]], {("CT", "2d"): 2}, name="Other")
    mine, theirs = case(team[0], 1), case(team[1], 1, study)
    post_as_owner = (theirs.token, {**FULL, "idempotency_key": "theirs-0001"})
    client.force_login(team[1])
    post(client, *post_as_owner)

    client.force_login(team[0])
    for name in ("read-case", "read-state", "read-answer"):
        assert client.get(reverse(name, args=[theirs.token])).status_code in (404, 405)
    assert client.get(reverse("read-slice", args=[theirs.token, 1])).status_code == 404
    status, _ = post(client, theirs.token, {"label": "real", "idempotency_key": "steal-00001"})
    assert status == 404
    assert Read.objects.get(assigned_case=theirs).label == "fake"
    assert client.get(reverse("read-study", args=[other_study.slug])).status_code == 404
    assert client.get(reverse("read-slice", args=[mine.token, 1])).status_code == 200
    assert client.get(reverse("read-slice", args=[mine.token, 2])).status_code == 404

    for url in (reverse("pool-list"), reverse("study-list"), reverse("study-detail", args=[study.slug]),
                reverse("study-progress", args=[study.slug]), reverse("job-list"), reverse("generator-list"),
                reverse("pool-preview", args=[mine.case.item_id])):
        assert client.get(url).status_code == 403, url
    admin = client.get("/admin/")
    assert admin.status_code == 302 and "/admin/login/" in admin.url
    post_action = client.post(reverse("study-action", args=[study.slug, "close"]))
    assert post_action.status_code == 403

    client.logout()
    assert client.get(reverse("read-case", args=[mine.token])).status_code == 302
    assert client.get(reverse("read-slice", args=[mine.token, 1])).status_code == 302


def test_draft_studies_are_invisible_to_readers(client, pool):
    from readerstudy.studies.lifecycle import create_study, prepare_study
    from readerstudy.studies.sampling import assign_readers

    (reader,) = readers(1)
    study = create_study(name="Draft", config={"strata": [{"modality": "CT", "dimensionality": "2d", "cases": 2}]})
    prepare_study(study)
    assign_readers(study, [reader])
    client.force_login(reader)
    assert "Draft" not in client.get(reverse("worklist")).content.decode()
    assert client.get(reverse("read-case", args=[case(reader, 1).token])).status_code == 404


def test_analysts_see_studies_but_cannot_change_them(client, team):
    study = study_with(team)
    client.force_login(make_user("ana", ANALYST))
    assert client.get(reverse("study-detail", args=[study.slug])).status_code == 200
    assert client.get(reverse("study-progress", args=[study.slug])).status_code == 200
    assert client.post(reverse("study-action", args=[study.slug, "close"])).status_code == 403
    assert client.get(reverse("study-create")).status_code == 403


def test_the_assignment_is_marked_completed_with_the_last_answer(client, team):
    study_with(team)
    client.force_login(team[0])
    assignment = team[0].assignments.get()
    for position in range(1, 7):
        post(client, case(team[0], position).token, {**FULL, "submit": True, "idempotency_key": f"done-{position:05d}"})
        assignment.refresh_from_db()
        assert (assignment.completed_at is not None) == (position == 6)


def test_a_session_break_shows_when_the_next_session_opens(client, team):
    study = open_study_for(team, {("CT", "2d"): 4}, reading={"sessions": 2, "washout_hours": 48})
    client.force_login(team[0])
    assert client.get(reverse("read-break", args=[study.slug])).url == reverse("read-study", args=[study.slug])
    for position in (1, 2):
        post(client, case(team[0], position).token, {**FULL, "submit": True, "idempotency_key": f"b1-{position:06d}"})
    response = client.get(reverse("read-study", args=[study.slug]))
    assert response.url == reverse("read-break", args=[study.slug])
    page = client.get(response.url).content.decode()
    assert "Session 1 of 2 is done" in page and "Session 2 opens in" in page
    opens = Read.objects.filter(assigned_case__assignment__reader=team[0]).latest("submitted_at").submitted_at
    assert f'data-until-ms="{int((opens + timedelta(hours=48)).timestamp() * 1000)}"' in page
    assert "js/countdown.js" in page and "<script>" not in page  # no inline script (CSP)


def test_readers_may_go_back_to_answered_cases_from_their_case_list(client, team):
    study = study_with(team)
    client.force_login(team[0])
    post(client, case(team[0], 1).token, {**FULL, "submit": True, "idempotency_key": "list-00001"})
    page = client.get(reverse("read-cases", args=[study.slug])).content.decode()
    assert reverse("read-case", args=[case(team[0], 1).token]) in page  # answered: may go back
    assert reverse("read-case", args=[case(team[0], 2).token]) in page  # where the reader is
    assert reverse("read-case", args=[case(team[0], 3).token]) not in page  # not reached yet
    assert "Case 3" in page and "not yet" in page
    viewer = client.get(reverse("read-case", args=[case(team[0], 2).token])).content.decode()
    assert reverse("read-cases", args=[study.slug]) in viewer
    strict = open_study_for(team, {("CT", "2d"): 2}, reading={"allow_back": False}, name="Strict", seed=9)
    assert client.get(reverse("read-cases", args=[strict.slug])).url == reverse("read-study", args=[strict.slug])


def test_readers_mark_where_a_case_looks_synthetic_and_analysts_see_it(client, team):
    from readerstudy.accounts.roles import COORDINATOR

    study = open_study_for(team, {("CT", "2d"): 4}, questions={"confidence": False, "template": "none", "marks": True})
    client.force_login(team[0])
    token = case(team[0], 1).token
    spots = [{"x": 0.25, "y": 0.5, "slice": 1}, {"x": 0.7, "y": 0.2, "w": 0.1, "h": 0.15, "slice": 1}]
    status, body = post(client, token, {"label": "fake", "marks": spots, "comment": " odd texture ",
                                        "submit": True, "idempotency_key": "mark-00001"})
    assert status == 200 and body["answer"]["marks"] == spots and body["answer"]["comment"] == "odd texture"
    for bad, message in [({"marks": [{"x": 1.5, "y": 0, "slice": 1}]}, "fractions of the image"),
                         ({"marks": [{"x": 0.1, "y": 0.1}]}, "needs x, y"),
                         ({"marks": [{"x": 0.1, "y": 0.1, "slice": 1}] * 21}, "at most 20"),
                         ({"comment": 5}, "comment must be text")]:
        status, body = post(client, case(team[0], 2).token, {"label": "real", "idempotency_key": f"bad-{len(message):05d}",
                                                             **bad})
        assert status == 400 and message in body["error"], (bad, body)
    # Changing the marks keeps the previous answer as a revision.
    post(client, token, {"label": "fake", "marks": spots[:1], "comment": "odd texture", "idempotency_key": "mark-00002"})
    read = Read.objects.get(assigned_case__token=token)
    assert read.answers["marks"] == spots[:1]
    assert read.revisions.get(revision=1).snapshot["answers"]["marks"] == spots

    # The export has the marks; coordinators and analysts see a heat map; readers do not.
    coordinator = make_user("coord", COORDINATOR)
    client.force_login(coordinator)
    csv_text = b"".join(client.get(reverse("analysis-export", args=[study.slug, "answers.csv"])).streaming_content)
    rows = list(csv.DictReader(io.StringIO(csv_text.decode())))
    assert json.loads(rows[0]["marks"]) == spots[:1] and rows[0]["comment"] == "odd texture"
    page = client.get(reverse("analysis-marks", args=[study.slug])).content.decode()
    assert f"Case {read.assigned_case.case_id}" in page and "odd texture" in page and "1 mark on case" in page
    png = client.get(reverse("analysis-marks-heatmap", args=[study.slug, read.assigned_case.case_id]))
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    client.force_login(team[1])
    assert client.get(reverse("analysis-marks", args=[study.slug])).status_code == 403


def test_marks_are_refused_where_the_study_does_not_ask_for_them(client, team):
    study_with(team)
    client.force_login(team[0])
    status, body = post(client, case(team[0], 1).token, {"label": "real", "marks": [{"x": 0.1, "y": 0.1, "slice": 1}],
                                                         "idempotency_key": "nomark-001"})
    assert status == 400 and "does not ask where a case looks synthetic" in body["error"]


def next_case_template(client, token):
    """The next case the page carries for showing it in place: (its url, its viewer data), or None."""
    page = client.get(reverse("read-case", args=[token])).content.decode()
    found = re.search(r'<template id="next-case" data-url="([^"]+)">(.*?)</template>', page, re.S)
    if not found:
        return None
    data = re.search(r'<script id="case-data" type="application/json">(.*?)</script>', found.group(2), re.S)
    return found.group(1), json.loads(data.group(1))


def test_the_page_carries_the_next_case_of_its_session_as_it_will_be_once_this_one_is_finished(client, team):
    open_study_for(team, {("CT", "2d"): 4}, reading={"sessions": 2, "washout_hours": 48})
    client.force_login(team[0])
    first, second, third = (case(team[0], p) for p in (1, 2, 3))
    url, data = next_case_template(client, first.token)
    assert url == reverse("read-case", args=[second.token])
    # As the state of case 2 will read once case 1 is finished, except that the files of the case
    # after it are not offered before then (the server would not serve them yet).
    post(client, first.token, {**FULL, "submit": True, "idempotency_key": "next-00001"})
    state = client.get(reverse("read-state", args=[second.token])).json()
    assert data["case"] == state["case"] and data["answer"] == state["answer"] and data["questions"] == state["questions"]
    assert data["navigation"] == {**state["navigation"], "prefetch": []}
    assert data["case"]["done"] == 1 and data["case"]["position"] == 2
    # Nothing of any other case: the tokens in the template are case 2's (and case 1's, to go back).
    tokens = set(AssignedCase.objects.values_list("token", flat=True))
    assert {t for t in tokens if t in json.dumps(data)} == {first.token, second.token}
    # Case 3 opens a new session with a washout: its page is not carried, nor is any after the last case.
    assert next_case_template(client, second.token) is None
    post(client, second.token, {**FULL, "submit": True, "idempotency_key": "next-00002"})
    assert client.get(reverse("read-case", args=[third.token])).status_code == 302  # washout


def test_the_last_case_carries_no_next_case(client, team):
    open_study_for(team, {("CT", "2d"): 2})
    client.force_login(team[0])
    first, second = case(team[0], 1), case(team[0], 2)
    assert next_case_template(client, first.token)[0] == reverse("read-case", args=[second.token])
    post(client, first.token, {**FULL, "submit": True, "idempotency_key": "last-00001"})
    assert next_case_template(client, second.token) is None
