"""Real worker processes killed in the middle of a job: `db_worker` (and an RQ worker on the local Redis)
is SIGKILLed during a generation job and during an import, or frozen (SIGSTOP) until another worker has
redone its job; after `recover_jobs` and a retry no item is duplicated or lost and the job's state is the
last attempt's."""

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from PIL import Image

from generation.generate import create_generation_job
from readerstudy.imaging import storage
from readerstudy.imaging.models import PoolItem, Rendition
from readerstudy.imaging.tasks import create_upload_job, upload_dir
from readerstudy.jobs.models import Job
from readerstudy.jobs.progress import recover_stale_jobs
from readerstudy.jobs.queue import retry_job

from .services import REDIS_URL, available
from .test_generation import TINY_2D, small_pool, tiny_model  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parent.parent
DB_BACKEND = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
RQ_BACKEND = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default"]}}


def database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    return f"postgres://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


class Worker:
    """A task worker process on the test database, killed or frozen at will."""

    def __init__(self, settings, backend: str = "database"):
        self.backend = backend
        self.env = {
            **os.environ, "DJANGO_SETTINGS_MODULE": "tests.worker_settings", "TEST_WORKER_BACKEND": backend,
            "DATABASE_URL": database_url(), "REDIS_URL": REDIS_URL,
            "READERSTUDY_POOL_ROOT": str(settings.POOL_ROOT), "READERSTUDY_UPLOAD_ROOT": str(settings.UPLOAD_ROOT),
            "READERSTUDY_JOB_HEARTBEAT_SECONDS": "0.5",
        }
        if backend == "rq":
            command = ["rqworker", "--job-class", "django_tasks_rq.Job", "default"]
        else:
            command = ["db_worker", "--interval", "0.1", "--no-startup-delay", "--no-reload"]
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", *command], cwd=ROOT, env=self.env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=open(settings.POOL_ROOT.parent / f"worker-{time.time_ns()}.log", "w"),
        )

    def signal(self, sig):
        os.killpg(self.process.pid, sig)

    def kill(self):
        if self.process.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGKILL)
            self.process.wait(timeout=30)


@pytest.fixture
def workers(settings):
    started = []

    def start(backend="database"):
        settings.POOL_ROOT.mkdir(parents=True, exist_ok=True)
        started.append(Worker(settings, backend))
        return started[-1]

    yield start
    for worker in started:
        worker.kill()


def wait_for(predicate, timeout=180, what="the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def job_state(job) -> Job:
    job.refresh_from_db()
    return job


def database_is_free() -> bool:
    """Nobody else holds a write lock (SQLite) or has a statement or transaction open (PostgreSQL)."""
    if connection.vendor == "sqlite":
        import sqlite3

        probe = sqlite3.connect(connection.settings_dict["NAME"], timeout=0.2)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.rollback()
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            probe.close()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND pid <> pg_backend_pid() AND state <> 'idle'")
        return cursor.fetchone()[0] == 0


def freeze_outside_the_database(worker):
    """SIGSTOP the worker at a moment it holds no lock, so others can go on without it."""
    for _ in range(500):
        worker.signal(signal.SIGSTOP)
        time.sleep(0.05)
        if database_is_free():
            return
        worker.signal(signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError("the worker always held the database")


def assert_pool_consistent(killed: bool = False):
    """Every row has its files, and every file its row: a refused attempt leaves nothing behind; what a
    killed one left (a file written, its row never committed) is exactly what `gc_pool` collects."""
    if killed:
        from readerstudy.imaging.garbage import delete_garbage, find_garbage

        garbage = find_garbage(min_age=0)
        assert not garbage.missing
        delete_garbage(garbage)
    masters = {p.name for p in storage.masters_dir().iterdir() if not p.name.startswith(".partial-")}
    renditions = {p.name for p in (storage.renditions_dir().iterdir() if storage.renditions_dir().exists() else [])
                  if not p.name.startswith(".partial-")}
    assert masters == set(PoolItem.objects.values_list("master_file", flat=True))
    assert renditions == set(Rendition.objects.values_list("directory", flat=True))


N = 24


def generation_job(model):
    job = create_generation_job(model, "MR", N, seed=100, steps=40, enqueue=True)  # queued on commit
    assert job_state(job).task_id
    return job


def seeds_of(job) -> list[int]:
    return sorted(job.generated_items.values_list("seed", flat=True))


def kill_after_the_first_item_and_retry(job, items, total, workers, backend="database") -> int:
    """A worker SIGKILLed once `job` has made its first of `total` items; `recover_jobs`, a retry and a new
    worker finish the job. Returns how many items the killed attempt had committed."""
    first = workers(backend)
    wait_for(items.exists, what="the first item")
    first.kill()
    made = items.count()
    assert job_state(job).status == Job.Status.RUNNING and 0 < made < total
    assert recover_stale_jobs(stale_after_seconds=0) == [job.pk]
    retry_job(job)
    workers(backend)
    wait_for(lambda: job_state(job).is_finished, what="the retried job")
    assert job.status == Job.Status.SUCCEEDED, job.error
    return made


def kill_mid_generation_and_retry(model, workers, backend):
    job = generation_job(model)
    kill_after_the_first_item_and_retry(job, job.generated_items, N, workers, backend)
    assert job.attempts == 2 and seeds_of(job) == list(range(100, 100 + N))
    assert sorted(job.result["items"]) == sorted(job.generated_items.values_list("pk", flat=True))
    assert_pool_consistent(killed=True)


@pytest.mark.django_db(transaction=True)
def test_a_db_worker_killed_mid_generation_is_recovered_and_retried(tiny_model, workers, settings):  # noqa: F811
    settings.TASKS = DB_BACKEND
    kill_mid_generation_and_retry(tiny_model, workers, "database")


@pytest.mark.skipif(not available("redis", REDIS_URL), reason=f"SKIPPED LOUDLY: no Redis at {REDIS_URL}")
@pytest.mark.django_db(transaction=True)
def test_an_rq_worker_killed_mid_generation_is_recovered_and_retried(tiny_model, workers, settings,  # noqa: F811
                                                                      monkeypatch):
    import django_rq
    import django_rq.settings

    monkeypatch.setattr(django_rq.settings, "QUEUES", {"default": {"URL": REDIS_URL}})
    settings.TASKS = RQ_BACKEND
    django_rq.get_queue("default").empty()
    try:
        kill_mid_generation_and_retry(tiny_model, workers, "rq")
    finally:
        django_rq.get_queue("default").empty()


@pytest.mark.django_db(transaction=True)
def test_a_frozen_worker_that_wakes_after_a_retry_commits_nothing(tiny_model, workers, settings):  # noqa: F811
    from django_tasks_db.models import DBTaskResult

    settings.TASKS = DB_BACKEND
    job = generation_job(tiny_model)
    first_task = job.task_id
    first = workers()
    wait_for(lambda: job.generated_items.exists(), what="the first sample")
    freeze_outside_the_database(first)
    assert recover_stale_jobs(stale_after_seconds=0) == [job.pk]
    retry_job(job)
    workers()
    wait_for(lambda: job_state(job).is_finished, what="the retried job")
    assert job.status == Job.Status.SUCCEEDED and job.attempts == 2
    result = dict(job.result)
    first.signal(signal.SIGCONT)  # the old attempt wakes up mid-chunk
    wait_for(lambda: DBTaskResult.objects.get(id=first_task).status in ("SUCCESSFUL", "FAILED"),
             what="the old attempt to stop")
    job = job_state(job)
    assert job.status == Job.Status.SUCCEEDED and job.attempts == 2 and job.result == result
    assert seeds_of(job) == list(range(100, 100 + N))
    assert_pool_consistent()


def png_upload(i: int) -> SimpleUploadedFile:
    rng = np.random.default_rng(i)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(buffer, format="PNG")
    return SimpleUploadedFile(f"xr-{i:03d}.png", buffer.getvalue(), content_type="image/png")


@pytest.mark.django_db(transaction=True)
def test_a_db_worker_killed_mid_import_is_recovered_and_retried(real_dataset, workers, settings):
    settings.TASKS = DB_BACKEND
    files = 120
    job = create_upload_job({"uploads": [png_upload(i) for i in range(files)], "dataset": real_dataset,
                             "modality": "XR", "body_part": "", "layout": "auto", "slices": None})
    imported = kill_after_the_first_item_and_retry(job, PoolItem.objects.all(), files, workers)
    statuses = [o["status"] for o in job.result["outcomes"]]
    assert len(statuses) == files and statuses.count("failed") == 0
    assert statuses.count("skipped") >= imported  # imported by the killed attempt, not twice
    assert PoolItem.objects.count() == files
    assert len(set(PoolItem.objects.values_list("source_sha256", flat=True))) == files
    assert not upload_dir(job).exists()
    assert_pool_consistent(killed=True)
