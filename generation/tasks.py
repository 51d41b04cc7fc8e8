from django_tasks import task

from readerstudy.jobs.models import Job
from readerstudy.jobs.progress import run_job

from .generate import run_generation


@task()
def generate_job(job_id: int) -> None:
    """Run (or continue) a generation job in the background."""
    run_job(job_id, run_generation)


def enqueue_generation(job: Job) -> None:
    result = generate_job.enqueue(job.pk)
    Job.objects.filter(pk=job.pk).update(task_id=str(result.id))


def retry_generation(job: Job) -> bool:
    """Queue a failed or cancelled generation job again (it makes only the missing samples)."""
    from django.db import transaction

    from readerstudy.jobs.progress import retry_job

    if not job.can_retry or not retry_job(job):
        return False
    transaction.on_commit(lambda: enqueue_generation(job))
    return True
