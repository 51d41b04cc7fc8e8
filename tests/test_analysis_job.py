"""A large study's analysis runs as a background job, once per state of its answers (single flight), while
the dashboard, the JSON view and the API say it is being computed; then every one of them shows the result."""

import json
from unittest import mock

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from readerstudy.jobs import queue
from readerstudy.jobs.models import Job
from readerstudy.stats.analysis import ANALYSIS_STEPS
from readerstudy.studies.models import AssignedCase

from .test_analysis import answered  # noqa: F401  (fixture: 3 readers answered 16 cases through the endpoints)

pytestmark = pytest.mark.django_db


def test_a_large_analysis_is_computed_once_by_a_job_and_then_shown(client, answered, settings,  # noqa: F811
                                                                    django_capture_on_commit_callbacks):
    settings.ANALYSIS_INLINE_ANSWERS = 10  # the fixture's 36 regular answers count as a large study here
    study, given = answered
    dashboard, as_json = reverse("analysis", args=[study.slug]), reverse("analysis-json", args=[study.slug])
    with django_capture_on_commit_callbacks() as queued:
        first = client.get(dashboard)
        second = client.get(dashboard)
        api = client.get(f"/api/v1/studies/{study.slug}/analysis/")
        pending = client.get(as_json)
    assert first.status_code == 200 and "analysis-computing" in first.content.decode() and first["Refresh"] == "2"
    assert "analysis-computing" in second.content.decode()
    job = Job.objects.get(kind=Job.Kind.ANALYSIS)  # one job for everyone who asked
    assert len(queued) == 1 and job.status == Job.Status.QUEUED and job.params["study_slug"] == study.slug
    assert pending.status_code == api.status_code == 202 and pending["Retry-After"] == "2"
    assert pending.json()["job"] == api.json()["job"] == job.pk

    queued[0]()  # the worker takes it (immediate task backend)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.result["answers"] == len(given)
    assert (job.progress_done, job.progress_total) == (ANALYSIS_STEPS, ANALYSIS_STEPS)
    page = client.get(dashboard)
    assert page.status_code == 200 and "analysis-computing" not in page.content.decode() and "Refresh" not in page
    assert page.context["analysis"]["counts"]["answers"] == 36
    data = client.get(as_json)
    assert data.status_code == 200 and data.json() == page.context["analysis"]
    chart = client.get(reverse("analysis-chart", args=[study.slug, "roc"]) + f"?state={page.context['state']}")
    assert chart.status_code == 200 and chart["Content-Type"] == "image/png"

    # A new answer is a new state: its analysis is another job; the page's charts still draw the result shown.
    reader = AssignedCase.objects.filter(case__role="regular").select_related("assignment__reader").first()
    client.force_login(reader.assignment.reader)
    body = {"label": "unsure", "confidence": 2, "realism": 1, "anatomy": 1, "submit": True,
            "idempotency_key": "changed-00001"}
    assert client.post(reverse("read-answer", args=[reader.token]), json.dumps(body),
                       content_type="application/json").status_code == 200
    client.force_login(page.context["user"])
    with django_capture_on_commit_callbacks():
        assert "analysis-computing" in client.get(dashboard).content.decode()
        again = client.get(reverse("analysis-chart", args=[study.slug, "roc"]) + f"?state={page.context['state']}")
    assert again.status_code == 200 and Job.objects.filter(kind=Job.Kind.ANALYSIS).count() == 2
    # A state key of no analysis (or of another study) is not drawn: the current state's job is reported.
    assert client.get(reverse("analysis-chart", args=[study.slug, "roc"]) + "?state=analysis-0").status_code == 202


def test_two_processes_asking_at_once_share_one_job(db):
    key = "analysis-" + "a" * 64
    holder = queue.create_job(Job.Kind.ANALYSIS, {"study_id": 1}, single_flight_key=key, enqueue=False)
    Job.objects.filter(pk=holder.pk).update(status=Job.Status.RUNNING)
    # The other process looked before this one's row was written, so only the database can tell.
    real = queue._active_holder
    looks = iter([None])
    with mock.patch.object(queue, "_active_holder", side_effect=lambda k: next(looks, None) or real(k)):
        joined = queue.create_job(Job.Kind.ANALYSIS, {"study_id": 1}, single_flight_key=key, enqueue=False)
    assert joined.pk == holder.pk and Job.objects.count() == 1
    with pytest.raises(IntegrityError), transaction.atomic():  # the partial unique index itself
        Job.objects.create(kind=Job.Kind.ANALYSIS, title="twin", single_flight_key=key)
    # Once it has finished the key is free: a later state's question starts a new job.
    Job.objects.filter(pk=holder.pk).update(status=Job.Status.SUCCEEDED)
    assert queue.create_job(Job.Kind.ANALYSIS, {}, single_flight_key=key, enqueue=False).pk != holder.pk
    assert "cannot be retried" in queue.retry_refusal(Job.objects.create(kind=Job.Kind.ANALYSIS, title="x",
                                                                           status=Job.Status.FAILED))


def test_an_analysis_that_failed_is_reported_not_started_again_on_every_reload(client, answered, settings,  # noqa: F811
                                                                              monkeypatch,
                                                                              django_capture_on_commit_callbacks):
    from readerstudy.stats import analysis

    settings.ANALYSIS_INLINE_ANSWERS = 10
    study, _ = answered
    dashboard = reverse("analysis", args=[study.slug])

    def broken(*args, **kwargs):
        raise ArithmeticError("a figure could not be computed")

    monkeypatch.setattr(analysis, "analyse", broken)
    with django_capture_on_commit_callbacks(execute=True):
        client.get(dashboard)  # starts the job, which fails
    job = Job.objects.get(kind=Job.Kind.ANALYSIS)
    assert job.status == Job.Status.FAILED
    with django_capture_on_commit_callbacks(execute=True):
        page = client.get(dashboard)
        data = client.get(reverse("analysis-json", args=[study.slug]))
    assert "a figure could not be computed" in page.content.decode() and "Refresh" not in page
    assert data.status_code == 500 and data.json()["status"] == "failed"
    assert Job.objects.filter(kind=Job.Kind.ANALYSIS).count() == 1  # not started again for the same answers


@pytest.mark.parametrize("cache", ["django.core.cache.backends.dummy.DummyCache",
                                   "django.core.cache.backends.locmem.LocMemCache"])
def test_without_a_cache_the_workers_share_the_request_computes_it(client, answered, settings, cache):  # noqa: F811
    settings.ANALYSIS_INLINE_ANSWERS = 10
    settings.CACHES = {"default": {"BACKEND": cache}}
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
    study, _ = answered
    page = client.get(reverse("analysis", args=[study.slug]))
    # A worker's result could never reach this process: no job that every reload would start again.
    assert page.status_code == 200 and page.context["analysis"]["counts"]["answers"] == 36
    assert not Job.objects.filter(kind=Job.Kind.ANALYSIS).exists()
