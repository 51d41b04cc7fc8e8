"""The one door to background work: create, queue, cancel and retry a job of any kind.

Apps register their kinds (`register`, from their AppConfig.ready) with the
dotted path of the work function, `work(job, reporter) -> result dict`, and of
an optional check saying why a job cannot be retried now. Pages, the API,
commands and tasks all go through `create_job`, `cancel_job` and `retry_job`;
one task (`jobs.tasks.run_job_task`) runs every kind, so the jobs app never
imports the apps whose work it runs.

A job is queued on commit of the transaction that created it, robustly: when
the task backend is unreachable (Redis down) the request still succeeds, the
job stays QUEUED with no task id, and `requeue_unqueued` (the `recover_jobs`
command) queues it once the backend is back.
"""

import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from .models import Job

log = logging.getLogger(__name__)


class JobError(Exception):
    """A request about a job that cannot be met (unknown kind, not retryable now); the message says why."""


@dataclass(frozen=True)
class JobKind:
    work: str  # dotted path of work(job, reporter) -> result dict
    retry_refusal: str | None = None  # dotted path of (job) -> why it cannot be retried now, or None
    retryable: bool = True
    queue: str = "default"


_KINDS: dict[str, JobKind] = {}


def register(kind: str, work: str, retry_refusal: str | None = None, retryable: bool = True,
             queue: str = "default") -> None:
    """Declare how jobs of `kind` (a Job.Kind) run and whether they can be retried."""
    if kind not in Job.Kind.values:
        raise ValueError(f"unknown job kind {kind!r}")
    _KINDS[kind] = JobKind(work, retry_refusal, retryable, queue)


def kind_of(job_or_kind) -> JobKind:
    kind = getattr(job_or_kind, "kind", job_or_kind)
    try:
        return _KINDS[kind]
    except KeyError:
        raise JobError(f"no work is registered for jobs of kind {str(kind)!r}") from None


def work_of(job: Job):
    """The work function of the job's kind."""
    return import_string(kind_of(job).work)


def create_job(kind: str, params: dict, user=None, title: str = "", enqueue: bool = True,
               single_flight_key: str = "") -> Job:
    """A job row; with `enqueue`, queued for a worker once the surrounding transaction commits.

    With a `single_flight_key`, a queued or running job that holds the key is returned instead of a
    new one (the database's partial unique index decides between processes asking at once).
    """
    kind_of(kind)
    if single_flight_key and (active := _active_holder(single_flight_key)):
        return active
    try:
        with transaction.atomic():
            job = Job.objects.create(kind=kind, params=params, created_by=user, single_flight_key=single_flight_key,
                                     title=(title or Job.Kind(kind).label)[:200])
            if enqueue:
                _enqueue_on_commit(job)
    except IntegrityError:
        if single_flight_key and (active := _active_holder(single_flight_key)):
            return active
        raise
    return job


def _active_holder(single_flight_key: str) -> Job | None:
    return Job.objects.filter(single_flight_key=single_flight_key,
                              status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).first()


def _enqueue_on_commit(job: Job) -> None:
    job_id = job.pk
    transaction.on_commit(lambda: enqueue_job(job_id), robust=True)


def enqueue_job(job_id: int) -> bool:
    """Hand a queued job to the task backend and store the task id; False if the backend refused."""
    from .tasks import run_job_task

    job = Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).first()
    if job is None:
        return False
    try:
        result = run_job_task.using(queue_name=kind_of(job).queue).enqueue(job.pk)
    except Exception:
        log.exception("job %s: the task backend did not take it; `recover_jobs` will queue it again", job.pk)
        return False
    Job.objects.filter(pk=job.pk, task_id="").update(task_id=str(result.id))
    return True


def cancel_job(job: Job) -> bool:
    """Stop a job: a queued one at once, a running one at its next check. False if it has already finished."""
    if Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
        status=Job.Status.CANCELLED, cancel_requested=True, finished_at=timezone.now(),
        message="Cancelled before it started.",
    ):
        return True
    return bool(Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(cancel_requested=True))


def retry_refusal(job: Job) -> str | None:
    """Why `job` cannot be retried now, or None if it can."""
    if job.status not in (Job.Status.FAILED, Job.Status.CANCELLED):
        return "only failed or cancelled jobs can be retried"
    try:
        kind = kind_of(job)
    except JobError as exc:
        return str(exc)
    if not kind.retryable:
        return f"{job.get_kind_display().lower()} jobs cannot be retried; start a new one"
    if job.single_flight_key and _active_holder(job.single_flight_key):
        return "another job is already doing this work"
    return import_string(kind.retry_refusal)(job) if kind.retry_refusal else None


def retry_job(job: Job) -> Job:
    """Queue a failed or cancelled job again; its work decides what is left to do. Raises JobError if not."""
    job.refresh_from_db()
    if reason := retry_refusal(job):
        raise JobError(reason)
    with transaction.atomic():
        if not Job.objects.filter(pk=job.pk, status__in=[Job.Status.FAILED, Job.Status.CANCELLED]).update(
            status=Job.Status.QUEUED, error="", message="Queued again.", cancel_requested=False,
            finished_at=None, task_id="", queued_at=timezone.now(),
        ):
            raise JobError("the job changed meanwhile; reload it")
        _enqueue_on_commit(job)
    job.refresh_from_db()
    return job


def requeue_unqueued(older_than_seconds: float = 60) -> list[int]:
    """Queue again the jobs whose enqueue failed (QUEUED, no task id, for a while). Returns their ids."""
    cutoff = timezone.now() - timezone.timedelta(seconds=older_than_seconds)
    ids = list(Job.objects.filter(status=Job.Status.QUEUED, task_id="", queued_at__lt=cutoff)
               .values_list("pk", flat=True))
    return [pk for pk in ids if enqueue_job(pk)]
