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
