"""Running a job: state transitions, attempts, heartbeats, throttled progress writes, cancellation.

Domain functions report through a small protocol: `start(total)`,
`advance(n, message)`, `check_cancelled()`. JobReporter writes it to a Job row;
TerminalProgress draws it on the command line; NullProgress discards it.

Each run of a job is an *attempt* (`Job.attempts` when it was claimed). Every
write a worker makes about its job, and every pool item it commits
(`assert_attempt`), is conditional on the job still being RUNNING under that
attempt: once `recover_stale_jobs` has declared the worker gone, or a retry has
handed the job to another worker, the old worker can neither overwrite the
job's state nor add items, however late it wakes up.
"""

import logging
import sys
import threading
import time

from django.conf import settings
from django.db import DatabaseError, connection, connections, models, transaction
from django.utils import timezone

from .models import Job

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised inside a job's work when a person asked for it to stop."""


class JobLost(Exception):
    """Raised inside a job's work when this attempt no longer owns the job (declared stale, retried)."""

    def __init__(self, job_id: int, attempt: int):
        super().__init__(f"job {job_id}: attempt {attempt} no longer runs it")


class NullProgress:
    """The progress protocol, discarding everything (domain functions called without a job)."""

    def start(self, total: int) -> None:
        pass

    def advance(self, n: int = 1, message: str = "") -> None:
        pass

    def check_cancelled(self) -> None:
        pass


def _owned(job_id: int, attempt: int):
    return Job.objects.filter(pk=job_id, status=Job.Status.RUNNING, attempts=attempt)


def assert_attempt(job: Job | None) -> None:
    """Inside a transaction about to commit work of `job`: raise JobLost unless this attempt still owns it.

    The job row stays locked until the transaction commits (PostgreSQL; SQLite's
    write lock serialises anyway), so recovery cannot slip in between the check
    and the commit. A job not being run by `run_job` (None, or no attempt
    claimed in this process) is not checked.
    """
    attempt = getattr(job, "running_attempt", None)
    if job is None or attempt is None:
        return
    if not _owned(job.pk, attempt).select_for_update().exists():
        raise JobLost(job.pk, attempt)


class Heartbeat(threading.Thread):
    """Writes `heartbeat_at` every `interval` seconds while the work runs, whatever its progress.

    A slow step (one 3D sampling chunk can take minutes) must not look like a dead
    worker. The thread stops, and marks itself `lost`, once the job is no longer
    this attempt's.
    """

    def __init__(self, job_id: int, attempt: int, interval: float):
        super().__init__(name=f"job-{job_id}-heartbeat", daemon=True)
        self.job_id, self.attempt, self.interval = job_id, attempt, interval
        self.lost = False
        self._stopped = threading.Event()

    def run(self):
        try:
            while not self._stopped.wait(self.interval):
                try:
                    if not _owned(self.job_id, self.attempt).update(heartbeat_at=timezone.now()):
                        self.lost = True
                        return
                except DatabaseError as exc:  # a busy database: try again at the next beat
                    log.warning("job %s: heartbeat not written (%s)", self.job_id, exc)
        finally:
            connections.close_all()  # this thread's own connections

    def stop(self):
        self._stopped.set()
        self.join(timeout=5)


class JobReporter:
    """Progress sink for domain code; writes to the Job row at most every `interval` seconds.

    Domain functions take any object with `start(total)`, `advance(n, message)` and
    `check_cancelled()`, so the command line (tqdm) and background jobs share them.
    Every write is conditional on the attempt; a lost job raises JobLost in the work.
    """

    def __init__(self, job: Job, attempt: int, interval: float = 0.5, echo=None, heartbeat: Heartbeat | None = None):
        self.job, self.attempt = job, attempt
        self.interval = interval
        self.echo = echo  # optional second sink, e.g. a terminal progress bar
        self.heartbeat = heartbeat
        self._last_write = 0.0

    def start(self, total: int) -> None:
        self.job.progress_total = total
        self.job.progress_done = 0
        self._write(force=True)
        if self.echo:
            self.echo.start(total)

    def advance(self, n: int = 1, message: str = "") -> None:
        self.job.progress_done += n
        if message:
            self.job.message = message[:500]
        self._write(force=self.job.progress_done >= self.job.progress_total)
        if self.echo:
            self.echo.advance(n, message)

    def check_cancelled(self) -> None:
        state = Job.objects.filter(pk=self.job.pk).values_list("status", "attempts", "cancel_requested").first()
        if self._lost() or state is None or state[:2] != (Job.Status.RUNNING, self.attempt):
            raise JobLost(self.job.pk, self.attempt)
        if state[2]:
            raise JobCancelled()

    def _lost(self) -> bool:
        return bool(self.heartbeat and self.heartbeat.lost)

    def _write(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_write >= self.interval:
            written = _owned(self.job.pk, self.attempt).update(
                progress_done=self.job.progress_done,
                progress_total=self.job.progress_total,
                message=self.job.message,
                heartbeat_at=timezone.now(),
            )
            if not written or self._lost():
                raise JobLost(self.job.pk, self.attempt)
            self._last_write = now


def _claim(job_id: int) -> Job | None:
    """Move a queued job to RUNNING under a new attempt; None if it is not queued (finished, or running)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status != Job.Status.QUEUED:
            return None
        job.status = Job.Status.RUNNING
        job.started_at = job.heartbeat_at = timezone.now()
        job.attempts += 1
        job.save(update_fields=["status", "started_at", "heartbeat_at", "attempts"])
    job.running_attempt = job.attempts
    return job


def run_job(job_id: int, work, echo=None) -> Job | None:
    """Run `work(job, reporter) -> result dict` for a queued job, recording the outcome.

    A job that is not queued is left alone, so a task delivered twice does no work
    twice. The outcome is written only if this attempt still owns the job; an
    attempt that lost it (recovered as stale while it was stuck) writes nothing.
    """
    job = _claim(job_id)
    if job is None:
        return Job.objects.filter(pk=job_id).first()
    attempt = job.running_attempt
    heartbeat = None
    if not connection.in_atomic_block:  # inside a transaction (tests) nobody else could see a beat
        heartbeat = Heartbeat(job.pk, attempt, settings.JOB_HEARTBEAT_SECONDS)
        heartbeat.start()
    reporter = JobReporter(job, attempt, echo=echo, heartbeat=heartbeat)
    outcome = {}
    try:
        result = work(job, reporter)
    except JobLost:
        log.warning("job %s: attempt %s stopped; another attempt owns the job now", job.pk, attempt)
        return Job.objects.get(pk=job.pk)
    except JobCancelled:
        outcome = {"status": Job.Status.CANCELLED, "message": "Cancelled on request.",
                   "result": getattr(reporter, "partial_result", {}) or job.result}
    except Exception as exc:  # recorded for the person who started the job
        log.exception("job %s failed", job.pk)
        outcome = {"status": Job.Status.FAILED, "error": f"{type(exc).__name__}: {exc}"}
    else:
        outcome = {"status": Job.Status.SUCCEEDED, "result": result or {}}
    finally:
        if heartbeat:
            heartbeat.stop()
    if not _owned(job.pk, attempt).update(finished_at=timezone.now(), **outcome):
        log.warning("job %s: attempt %s finished after the job was taken from it; outcome not written",
                    job.pk, attempt)
    return Job.objects.get(pk=job.pk)


def recover_stale_jobs(stale_after_seconds: int = 600) -> list[int]:
    """Mark jobs left `running` by a worker that died (no heartbeat for a while) as failed, so they can
    be retried; generation retries make only the missing samples. Returns the ids."""
    cutoff = timezone.now() - timezone.timedelta(seconds=stale_after_seconds)
    stale = Job.objects.filter(status=Job.Status.RUNNING).filter(
        models.Q(heartbeat_at__lt=cutoff) | models.Q(heartbeat_at__isnull=True)
    )
    with transaction.atomic():  # rows locked: a worker's beat or finish waits, then finds the job not its own
        ids = list(stale.select_for_update().values_list("pk", flat=True))
        Job.objects.filter(pk__in=ids).update(
            status=Job.Status.FAILED, finished_at=timezone.now(),
            error="The worker stopped while running this job (restart or crash). Retry it to continue.",
        )
    return ids


class TerminalProgress:
    """A tqdm progress bar (with ETA) on stderr; `postfix` shows the latest message's tail."""

    def __init__(self, enabled: bool = True, unit: str = "it", postfix_words: int = 0):
        self.bar, self.enabled, self.unit, self.postfix_words = None, enabled, unit, postfix_words

    def start(self, total):
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit=self.unit, file=sys.stderr, disable=not self.enabled, dynamic_ncols=True)

    def advance(self, n=1, message=""):
        self.bar.update(n)
        if message and self.postfix_words:
            self.bar.set_postfix_str(" ".join(message.split()[-self.postfix_words :]), refresh=False)

    def check_cancelled(self):
        pass

    def close(self):
        if self.bar:
            self.bar.close()
