"""The one task that runs a job of any kind (the kind's registered work, see `jobs.queue`)."""

from django_tasks import task

from .models import Job
from .progress import run_job
from .queue import work_of


@task()
def run_job_task(job_id: int) -> None:
    """Run (or continue, on retry) the job with this id."""
    job = Job.objects.filter(pk=job_id).first()
    if job is not None:
        run_job(job_id, work_of(job))
