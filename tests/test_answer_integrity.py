"""A study's status changes only along its transition table, answer saves re-check it under the row lock,
stale edits from another tab or device are refused with the newer answer, and telemetry of a finished case
accumulates apart from what it took to finish it."""

import csv
import io
import json

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

from readerstudy.accounts.roles import COORDINATOR
from readerstudy.audit.models import AuditEvent
from readerstudy.reading import answers as answers_module
from readerstudy.reading.models import Read
from readerstudy.studies import lifecycle
from readerstudy.studies.config import StudyConfigError
from readerstudy.studies.models import AssignedCase, Study

from .studies import make_pool, open_study_for, readers

pytestmark = pytest.mark.django_db
FULL = {"label": "fake", "confidence": 3, "realism": 2, "anatomy": 3}


@pytest.fixture
def study():
    make_pool(real={("CT", "2d"): 2}, synthetic={("CT", "2d"): 2})
    return open_study_for(readers(1), {("CT", "2d"): 4}, reading={"allow_back": True})


def first_case(study) -> AssignedCase:
    return AssignedCase.objects.get(assignment__study=study, position=1)


def post(client, case, **body):
    client.force_login(case.assignment.reader)
    body.setdefault("idempotency_key", f"key-{json.dumps(body, sort_keys=True)}"[:64])
    return client.post(reverse("read-answer", args=[case.token]), json.dumps(body), content_type="application/json")


def coordinator():
    user = User.objects.create_user("coord", password="x")
    user.groups.add(Group.objects.get(name=COORDINATOR))
    return user


def test_a_closed_study_reopens_only_by_the_explicit_audited_action(client, study):
    lifecycle.close_study(study)
    with pytest.raises(StudyConfigError, match="reopening it is a separate"):
        lifecycle.open_study(study)
    with pytest.raises(StudyConfigError, match="say why"):
        lifecycle.reopen_study(study, reason="oops", confirm=True)
    with pytest.raises(StudyConfigError, match="confirm"):
        lifecycle.reopen_study(study, reason="two readers were missing", confirm=False)
    assert Study.objects.get(pk=study.pk).status == Study.Status.CLOSED
    client.force_login(coordinator())
    page = client.get(reverse("study-detail", args=[study.slug]))
    assert b"Reopen for reading" in page.content and b'id="open-study"' not in page.content
    client.post(reverse("study-action", args=[study.slug, "open"]))
    assert Study.objects.get(pk=study.pk).status == Study.Status.CLOSED  # the plain open does not reopen
    client.post(reverse("study-action", args=[study.slug, "reopen"]),
                {"reason": "two readers were missing", "confirm": "yes"})
    study.refresh_from_db()
    assert study.status == Study.Status.OPEN
    event = AuditEvent.objects.filter(action="study.reopened").get()
    assert event.details["reason"] == "two readers were missing" and event.details["closed_at"]


def test_the_api_reopens_with_a_reason_and_a_confirmation(client, study):
    lifecycle.close_study(study)
    client.force_login(coordinator())
    url = f"/api/v1/studies/{study.slug}/reopen"
    refused = client.post(url, {"reason": "two readers were missing"}, content_type="application/json")
    assert refused.status_code == 400
    done = client.post(url, {"reason": "two readers were missing", "confirm": True}, content_type="application/json")
    assert done.status_code == 200 and done.json()["status"] == "open"


def test_a_transition_from_a_stale_copy_is_refused(study):
    stale = Study.objects.get(pk=study.pk)
    lifecycle.close_study(study)
    with pytest.raises(StudyConfigError, match="closed now"):
        lifecycle.close_study(stale)  # another tab closed it first
    assert AuditEvent.objects.filter(action="study.closed").count() == 1


def test_a_save_re_checks_the_status_inside_its_transaction(client, study, monkeypatch):
    case = first_case(study)
    # The check before the transaction saw an open study; it was closed before the row lock was taken.
    monkeypatch.setattr(answers_module, "readable", lambda assignment: True)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.CLOSED)
    response = post(client, case, **FULL)
    assert response.status_code == 409 and "closed" in response.json()["error"]
    assert not Read.objects.filter(label="fake").exists()


def test_an_edit_of_an_older_revision_is_refused_with_the_newer_answer(client, study):
    case = first_case(study)
    assert post(client, case, label="real", base_revision=0).json()["answer"]["revision"] == 1
    stale = post(client, case, label="fake", base_revision=0)  # another tab, still showing revision 0
    assert stale.status_code == 409
    body = stale.json()
    assert body["field"] == "base_revision" and body["answer"]["label"] == "real" and body["answer"]["revision"] == 1
    # Telemetry alone from the stale tab is merged: it changes no answer.
    assert post(client, case, label="real", base_revision=0, duration_ms=4000).status_code == 200
    assert post(client, case, label="fake", base_revision=1).status_code == 200
    read = Read.objects.get(assigned_case=case)
    assert read.label == "fake" and read.revision == 2 and read.duration_ms == 4000
    assert post(client, case, label="unsure").status_code == 200  # no base_revision (API clients): last wins
    assert post(client, case, label="real", base_revision=-1).status_code == 400


def test_revisiting_a_finished_case_keeps_the_telemetry_it_was_finished_with(client, study):
    case = first_case(study)
    assert post(client, case, **FULL, submit=True, duration_ms=5000, window_changes=2,
                slices_visited=[1]).status_code == 200
    revisit = post(client, case, **FULL, submit=True, duration_ms=9000, window_changes=7, slices_visited=[1])
    assert revisit.status_code == 200
    assert revisit.json()["answer"]["duration_ms"] == 9000  # the page counts on from every visit's total
    read = Read.objects.get(assigned_case=case)
    assert (read.duration_ms, read.window_changes, read.revision) == (5000, 2, 1)
    assert read.telemetry_after_submit == {"duration_ms": 9000, "window_changes": 7, "slices_visited": [1]}
    # A retry of an earlier save arriving late takes nothing away.
    post(client, case, **FULL, submit=True, duration_ms=6000, window_changes=3, slices_visited=[1])
    read.refresh_from_db()
    assert read.telemetry_after_submit["duration_ms"] == 9000 and read.duration_ms == 5000
    client.force_login(User.objects.create_superuser("ana", password="x"))
    rows = list(csv.DictReader(io.StringIO(b"".join(client.get(
        reverse("analysis-export", args=[study.slug, "answers.csv"])).streaming_content).decode())))
    row = [r for r in rows if r["case"] == str(case.case_id)][0]
    assert (row["duration_ms"], row["duration_with_revisits_ms"], row["window_changes_with_revisits"]) == (
        "5000", "9000", "7")


def test_the_admin_shows_answers_studies_and_jobs_but_changes_none_of_them(client, study):
    from readerstudy.imaging.models import PoolItem
    from readerstudy.jobs.models import Job

    case = first_case(study)
    post(client, case, **FULL, submit=True)
    read = Read.objects.get(assigned_case=case)
    job = Job.objects.create(kind=Job.Kind.IMPORT, title="an import", status=Job.Status.FAILED)
    client.force_login(User.objects.create_superuser("root", password="x"))
    events = AuditEvent.objects.count()
    for model, obj, change in (("reading/read", read, {"label": "real"}),
                               ("studies/study", study, {"status": "draft", "name": "renamed"}),
                               ("jobs/job", job, {"status": "succeeded"})):
        url = f"/admin/{model}/{obj.pk}/change/"
        assert client.get(url).status_code == 200, url  # shown...
        assert client.post(url, change).status_code == 403, url  # ...never changed here
        assert client.post(f"/admin/{model}/{obj.pk}/delete/", {"post": "yes"}).status_code == 403, url
    assert client.get("/admin/reading/read/add/").status_code == 403
    read.refresh_from_db()
    study.refresh_from_db()
    assert read.label == "fake" and read.revision == 1 and study.status == Study.Status.OPEN
    assert Job.objects.get(pk=job.pk).status == Job.Status.FAILED and AuditEvent.objects.count() == events
    # A pool item's truth and provenance are read-only; its body part may be corrected.
    item = PoolItem.objects.filter(origin="synthetic").first()
    page = client.get(f"/admin/imaging/poolitem/{item.pk}/change/")
    form = page.context["adminform"].form
    assert list(form.fields) == ["body_part"]


GUARD = "an answer changes only through reading.answers.save_answer"


def refused(change) -> None:
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError, match=GUARD), transaction.atomic():
        change()


def test_the_database_refuses_answer_changes_that_bypass_the_door(client, study):
    """Whatever the door (a shell, a script, QuerySet.update, raw SQL), an answer keeps its history."""
    case = first_case(study)
    assert post(client, case, **FULL, duration_ms=5000, submit=True).status_code == 200
    read = Read.objects.get(assigned_case=case)
    rows = Read.objects.filter(pk=read.pk)
    refused(lambda: rows.update(label="real"))
    refused(lambda: rows.update(label="real", revision=read.revision + 1))  # no revision kept
    refused(lambda: rows.update(revision=0))
    refused(lambda: rows.update(submitted_at=None))
    refused(lambda: rows.update(duration_ms=1))
    refused(lambda: rows.update(answers={"note": "added later"}))

    def through_save():
        read.label, read.revision = "real", read.revision + 1
        read.save()
    refused(through_save)

    def raw_sql():
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("UPDATE reading_read SET confidence = 1 WHERE id = %s", [read.pk])
    refused(raw_sql)
    read = Read.objects.get(pk=read.pk)
    assert (read.label, read.confidence, read.revision, read.duration_ms) == ("fake", 3, 1, 5000)

    # What the door itself writes still goes through: a change (with its revision and audit event),
    # telemetry of a later visit, and replays.
    rows.update(telemetry_after_submit={"duration_ms": 9000})
    assert post(client, case, **{**FULL, "label": "real"}, base_revision=read.revision,
                submit=True).status_code == 200
    read = Read.objects.get(pk=read.pk)
    assert (read.label, read.revision, read.duration_ms) == ("real", 2, 5000)
    assert list(read.revisions.values_list("revision", flat=True)) == [1]
    assert AuditEvent.objects.filter(action="answer.changed", target=f"read {read.pk}").count() == 1


def test_a_save_reads_the_case_once_and_writes_its_history_without_extra_look_ups(client, study):
    """Saves are the hottest write: the case, its study and reader are read once per save (a regression
    guard on the query count; bench/save_path_bench.py measures the time)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    case = first_case(study)
    client.force_login(case.assignment.reader)
    counts = []
    for body in ({**FULL, "submit": False}, {**FULL, "submit": True}, {**FULL, "label": "real", "submit": True}):
        body["idempotency_key"] = f"query-count-{len(counts)}"
        with CaptureQueriesContext(connection) as queries:
            assert client.post(reverse("read-answer", args=[case.token]), json.dumps(body),
                               content_type="application/json").status_code == 200
        counts.append([q["sql"].split()[0] for q in queries.captured_queries if not q["sql"].startswith(
            ("SAVEPOINT", "RELEASE SAVEPOINT"))])  # the test's own transaction turns atomic blocks into savepoints
    # Session, user, the case (with study, item and its answer), the reader's position, the answer locked,
    # the study's status inside the transaction; then the writes: the new answer (first save), the kept
    # revision and the audit event (an edit of a finished case), the update.
    assert counts == [["SELECT"] * 5 + ["INSERT", "SELECT", "UPDATE"], ["SELECT"] * 6 + ["UPDATE"],
                      ["SELECT"] * 6 + ["INSERT", "INSERT", "UPDATE"]]
