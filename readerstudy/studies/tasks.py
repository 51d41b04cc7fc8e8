"""Background preparation of a study (drawing cases, rendering files, leak audit)."""

from django_tasks import task

from readerstudy.jobs.progress import run_job

from .lifecycle import prepare_study
from .models import Study


def _prepare(job, reporter) -> dict:
    return prepare_study(Study.objects.get(pk=job.params["study_id"]), reporter)


@task()
def prepare_study_task(job_id: int) -> None:
    run_job(job_id, _prepare)
