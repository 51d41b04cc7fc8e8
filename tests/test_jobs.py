"""The job runner: attempts own their job, heartbeats are a timer, enqueue failures are recovered, and every
kind is created, cancelled and retried through one door (`jobs.queue`). Real worker processes killed
mid-job are in tests/test_job_workers.py."""

import time

import numpy as np
import pytest
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.db import connection
from django.utils import timezone

from readerstudy.accounts.roles import COORDINATOR
from readerstudy.imaging import tasks as imaging_tasks
from readerstudy.imaging.models import Modality, Origin, PoolItem
from readerstudy.imaging.pool import create_pool_item
from readerstudy.jobs import progress, queue
from readerstudy.jobs.models import Job
from readerstudy.jobs.progress import JobLost, recover_stale_jobs, run_job
from readerstudy.jobs.queue import JobError, JobKind, cancel_job, create_job, requeue_unqueued, retry_job

from .conftest import DATA

pytestmark = pytest.mark.django_db


@pytest.fixture
def test_kind(monkeypatch):
    """Jobs of kind TRAIN (which no app registers) run `tests.test_jobs.WORK[...]`."""
    def use(name, **kwargs):
        monkeypatch.setitem(queue._KINDS, Job.Kind.TRAIN, JobKind(work=f"tests.test_jobs.{name}", **kwargs))
    return use


def recovered_meanwhile(job, reporter):
    """The worker looks dead to `recover_jobs` while it works; someone asks it to stop meanwhile."""
    recover_stale_jobs(stale_after_seconds=0)
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)
    return {"summary": "done by the old attempt"}


def test_an_old_attempt_does_not_overwrite_a_recovered_job(test_kind):
    test_kind("recovered_meanwhile")
    job = run_job(create_job(Job.Kind.TRAIN, {}, enqueue=False).pk, recovered_meanwhile)
    assert job.status == Job.Status.FAILED and "worker stopped" in job.error
    assert job.result == {} and job.cancel_requested  # neither the old outcome nor a reset flag


def committed_after_a_retry(job, reporter):
    recover_stale_jobs(stale_after_seconds=0)
    retry_job(job)
    assert progress._claim(job.pk).running_attempt == 2  # another worker has it now
    dataset = PoolItem._meta.get_field("dataset").related_model.objects.get()
    create_pool_item(values=np.random.default_rng(0).random((1, 16, 16)), modality=Modality.MR,
                     origin=Origin.REAL, dataset=dataset, import_job=job)


def test_an_old_attempt_cannot_commit_items_once_another_attempt_runs(test_kind, real_dataset, pool_dirs):
    test_kind("committed_after_a_retry")
    job = run_job(create_job(Job.Kind.TRAIN, {}, enqueue=False).pk, committed_after_a_retry)
    assert not PoolItem.objects.exists()
    assert not list((pool_dirs / "masters").glob("*"))  # its files went with the refused transaction
    assert job.status == Job.Status.RUNNING and job.attempts == 2  # the new attempt's, untouched


def test_progress_of_a_lost_attempt_raises_job_lost(test_kind):
    test_kind("quick")
    job = progress._claim(create_job(Job.Kind.TRAIN, {}, enqueue=False).pk)
    reporter = progress.JobReporter(job, job.running_attempt)
    reporter.start(3)
    recover_stale_jobs(stale_after_seconds=0)
    with pytest.raises(JobLost):
        reporter.advance(3)
    with pytest.raises(JobLost):
        reporter.check_cancelled()


def slow_without_progress(job, reporter):
    first = Job.objects.get(pk=job.pk).heartbeat_at
    time.sleep(0.6)
    return {"first": first.isoformat(), "last": Job.objects.get(pk=job.pk).heartbeat_at.isoformat()}


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_beats_while_a_step_makes_no_progress(test_kind, settings):
    settings.JOB_HEARTBEAT_SECONDS = 0.1
    test_kind("slow_without_progress")
    job = run_job(create_job(Job.Kind.TRAIN, {}, enqueue=False).pk, slow_without_progress)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result["last"] > job.result["first"]
    assert job.attempts == 1


def quick(job, reporter):
    reporter.start(1)
    reporter.advance(1, "did it")
    return {"summary": "quick work done"}


def test_a_job_the_backend_did_not_take_stays_queued_and_is_handed_over_later(
        test_kind, monkeypatch, django_capture_on_commit_callbacks, caplog):
    from readerstudy.jobs import tasks

    test_kind("quick")

    class Unreachable:
        def using(self, **kwargs):
            return self

        def enqueue(self, *args):
            raise ConnectionError("Redis is down")

    monkeypatch.setattr(tasks, "run_job_task", Unreachable())
    with django_capture_on_commit_callbacks(execute=True):
        job = create_job(Job.Kind.TRAIN, {})  # the request that created it does not fail
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED and job.not_handed_over
    assert "did not take it" in caplog.text
    monkeypatch.undo()
    test_kind("quick")
    assert requeue_unqueued(older_than_seconds=60) == []  # too recent: its enqueue may still be under way
    Job.objects.filter(pk=job.pk).update(queued_at=timezone.now() - timezone.timedelta(minutes=2))
    assert requeue_unqueued(older_than_seconds=60) == [job.pk]
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.result["summary"] == "quick work done" and job.task_id


def test_a_queued_job_is_cancelled_at_once_and_never_runs(test_kind):
    test_kind("quick")
    job = create_job(Job.Kind.TRAIN, {}, enqueue=False)
    assert cancel_job(job)
    job = run_job(job.pk, quick)
    assert job.status == Job.Status.CANCELLED and job.attempts == 0 and not job.result
    assert not cancel_job(job)


def test_only_registered_kinds_and_finished_jobs_are_retried(test_kind):
    with pytest.raises(JobError, match="no work is registered"):
        create_job(Job.Kind.TRAIN, {})
    test_kind("quick", retryable=False)
    job = create_job(Job.Kind.TRAIN, {}, enqueue=False)
    with pytest.raises(JobError, match="only failed or cancelled"):
        retry_job(job)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.FAILED)
    with pytest.raises(JobError, match="cannot be retried"):
        retry_job(job)


@pytest.fixture
def coordinator(client):
    user = User.objects.create_user("coord", password="x")
    user.groups.add(Group.objects.get(name=COORDINATOR))
    client.force_login(user)
    return user


def _upload(name: str):
    return SimpleUploadedFile(name, (DATA / name).read_bytes())


def test_a_failed_import_keeps_its_files_and_is_retried_from_the_api(
        client, coordinator, real_dataset, monkeypatch, django_capture_on_commit_callbacks):
    real_import = imaging_tasks.import_path

    def unlucky(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(imaging_tasks, "import_path", unlucky)
    data = {"uploads": [_upload("emri_small.dcm")], "dataset": real_dataset, "modality": "MR", "body_part": "",
            "layout": "auto", "slices": None}
    with django_capture_on_commit_callbacks(execute=True):
        job = imaging_tasks.create_upload_job(data, coordinator)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and "disk full" in job.error
    assert imaging_tasks.upload_dir(job).is_dir() and job.can_retry
    monkeypatch.setattr(imaging_tasks, "import_path", real_import)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/api/v1/jobs/{job.pk}/retry")
    assert response.status_code == 200, response.content
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.attempts == 2 and PoolItem.objects.count() == 1
    assert not imaging_tasks.upload_dir(job).exists()  # removed once imported
    assert not job.can_retry
    again = client.post(f"/api/v1/jobs/{job.pk}/retry")
    assert again.status_code == 409 and "only failed or cancelled" in again.json()["error"]


def test_an_import_whose_files_are_gone_cannot_be_retried(real_dataset):
    job = create_job(Job.Kind.IMPORT, {"upload_dir": "staged-gone"}, enqueue=False)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.FAILED)
    with pytest.raises(JobError, match="uploaded files are gone"):
        retry_job(job)


def test_the_job_page_retries_any_retryable_kind(client, coordinator, test_kind):
    test_kind("quick")
    job = create_job(Job.Kind.TRAIN, {}, enqueue=False)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.CANCELLED)
    page = client.get(f"/jobs/{job.pk}/")
    assert b"Retry" in page.content
    response = client.post(f"/jobs/{job.pk}/retry/", follow=True)
    assert b"queued again" in response.content
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED and job.task_id == ""


@pytest.mark.django_db(transaction=True)
def test_uploads_are_staged_by_moving_them_outside_any_transaction(real_dataset, monkeypatch, settings):
    import os

    moves = []
    real_move = imaging_tasks.file_move_safe

    def watched(src, dst, **kwargs):
        inode = os.stat(src).st_ino
        real_move(src, dst, **kwargs)
        moves.append((connection.in_atomic_block, os.stat(dst).st_ino == inode, os.path.exists(src)))

    monkeypatch.setattr(imaging_tasks, "file_move_safe", watched)
    big = TemporaryUploadedFile("big.dcm", "application/dicom", 0, None)
    big.write((DATA / "emri_small.dcm").read_bytes())
    data = {"uploads": [big], "dataset": real_dataset, "modality": "MR", "body_part": "", "layout": "auto",
            "slices": None}
    job = imaging_tasks.create_upload_job(data)
    # Renamed (same inode, temporary gone), and not while a transaction held the database.
    assert moves == [(False, True, False)]
    big.close()  # Django's clean-up of a moved temporary file is quiet
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and PoolItem.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_failed_job_row_leaves_no_staged_files(real_dataset, monkeypatch, settings):
    def refused(*args, **kwargs):
        raise RuntimeError("database refused the row")

    monkeypatch.setattr(imaging_tasks, "create_job", refused)
    data = {"uploads": [_upload("emri_small.dcm")], "dataset": real_dataset, "modality": "MR", "body_part": "",
            "layout": "auto", "slices": None}
    with pytest.raises(RuntimeError):
        imaging_tasks.create_upload_job(data)
    assert not any(p.name.startswith("staged-") for p in settings.UPLOAD_ROOT.iterdir())


def test_model_work_goes_to_the_model_queue_which_gpu_workers_take(test_kind, settings,
                                                                   django_capture_on_commit_callbacks):
    from django_tasks_db.models import DBTaskResult

    from readerstudy.jobs.queue import kind_of

    # Generation and realism jobs are registered on settings.MODEL_QUEUE (READERSTUDY_MODEL_QUEUE).
    assert kind_of(Job.Kind.GENERATE).queue == kind_of(Job.Kind.REALISM).queue == settings.MODEL_QUEUE
    assert kind_of(Job.Kind.IMPORT).queue == "default"
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "gpu"]}}
    test_kind("quick", queue="gpu")  # as GENERATE is registered with READERSTUDY_MODEL_QUEUE=gpu
    with django_capture_on_commit_callbacks(execute=True):
        job = create_job(Job.Kind.TRAIN, {})
    job.refresh_from_db()
    assert DBTaskResult.objects.get(id=job.task_id).queue_name == "gpu"  # a `db_worker --queue-name gpu` takes it
