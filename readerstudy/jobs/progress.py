"""Running a job: state transitions, throttled progress writes, cancellation.

Domain functions report through a small protocol: `start(total)`,
`advance(n, message)`, `check_cancelled()`. JobReporter writes it to a Job row;
TerminalProgress draws it on the command line.
"""

import sys
import time

from django.db import models, transaction
from django.utils import timezone

from .models import Job


class JobCancelled(Exception):
    """Raised inside a job's work when a person asked for it to stop."""


class JobReporter:
    """Progress sink for domain code; writes to the Job row at most every `interval` seconds.

    Domain functions take any object with `start(total)`, `advance(n, message)` and
    `check_cancelled()`, so the command line (tqdm) and background jobs share them.
    """

    def __init__(self, job: Job, interval: float = 0.5, echo=None):
        self.job = job
        self.interval = interval
        self.echo = echo  # optional second sink, e.g. a terminal progress bar
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
        if Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists():
            raise JobCancelled()

    def _write(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_write >= self.interval:
            Job.objects.filter(pk=self.job.pk).update(
                progress_done=self.job.progress_done,
                progress_total=self.job.progress_total,
                message=self.job.message,
                heartbeat_at=timezone.now(),
            )
            self._last_write = now


def run_job(job_id: int, work, echo=None) -> Job:
    """Run `work(job, reporter) -> result dict` for a queued job, recording the outcome.

    A job that is already finished is left alone, so a task delivered twice does
    no work twice.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.is_finished or job.status == Job.Status.RUNNING:
            return job
        job.status = Job.Status.RUNNING
        job.started_at = job.heartbeat_at = timezone.now()
        job.attempts += 1
        job.save(update_fields=["status", "started_at", "heartbeat_at", "attempts"])
    reporter = JobReporter(job, echo=echo)
    try:
        result = work(job, reporter)
    except JobCancelled:
        job.status, job.message = Job.Status.CANCELLED, "Cancelled on request."
        job.result = getattr(reporter, "partial_result", {}) or job.result
    except Exception as exc:  # recorded for the person who started the job
        job.status, job.error = Job.Status.FAILED, f"{type(exc).__name__}: {exc}"
    else:
        job.status, job.result = Job.Status.SUCCEEDED, result or {}
    job.finished_at = timezone.now()
    job.save()
    return job


def recover_stale_jobs(stale_after_seconds: int = 600) -> list[int]:
    """Mark jobs left `running` by a worker that died (no progress for a while) as failed, so they can
    be retried; generation retries make only the missing samples. Returns the ids."""
    cutoff = timezone.now() - timezone.timedelta(seconds=stale_after_seconds)
    stale = Job.objects.filter(status=Job.Status.RUNNING).filter(
        models.Q(heartbeat_at__lt=cutoff) | models.Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
        | models.Q(heartbeat_at__isnull=True, started_at__isnull=True)
    )
    ids = list(stale.values_list("pk", flat=True))
    stale.filter(pk__in=ids).update(
        status=Job.Status.FAILED, finished_at=timezone.now(),
        error="The worker stopped while running this job (restart or crash). Retry it to continue.",
    )
    return ids


def request_cancel(job: Job) -> bool:
    """Ask a running or queued job to stop at its next check; False if it has already finished."""
    return bool(Job.objects.filter(pk=job.pk).exclude(status__in=Job.FINISHED).update(cancel_requested=True))


def retry_job(job: Job) -> bool:
    """Put a failed or cancelled job back in the queue; its work decides what is left to do."""
    updated = Job.objects.filter(pk=job.pk, status__in=[Job.Status.FAILED, Job.Status.CANCELLED]).update(
        status=Job.Status.QUEUED, error="", cancel_requested=False, finished_at=None
    )
    return bool(updated)


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
