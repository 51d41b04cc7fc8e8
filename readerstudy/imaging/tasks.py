"""Background import of uploaded files."""

import shutil
from pathlib import Path

from django.conf import settings
from django_tasks import task

from readerstudy.jobs.models import Job
from readerstudy.jobs.progress import run_job

from .importing import ImportOptions, import_path
from .models import Dataset


def upload_dir(job: Job) -> Path:
    return Path(settings.UPLOAD_ROOT) / f"job-{job.pk}"


def _import_upload(job: Job, reporter) -> dict:
    p = job.params
    options = ImportOptions(
        modality=p["modality"], dataset=Dataset.objects.get(pk=p["dataset_id"]), body_part=p.get("body_part", ""),
        layout=p.get("layout", "auto"), slices=p.get("slices"), created_by=job.created_by, job=job,
    )
    try:
        return import_path(upload_dir(job), options, reporter).as_dict()
    finally:
        shutil.rmtree(upload_dir(job), ignore_errors=True)


@task()
def import_upload(job_id: int) -> None:
    """Import the files a coordinator uploaded for this job."""
    run_job(job_id, _import_upload)
