"""Background import of uploaded files."""

import re
import shutil
from pathlib import Path

from django.conf import settings
from django_tasks import task

from readerstudy.jobs.models import Job
from readerstudy.jobs.progress import run_job

from .importing import ImportOptions, import_path
from .models import Dataset, Origin


def upload_dir(job: Job) -> Path:
    return Path(settings.UPLOAD_ROOT) / f"job-{job.pk}"


def _import_upload(job: Job, reporter) -> dict:
    p = job.params
    options = ImportOptions(
        modality=p["modality"], dataset=Dataset.objects.get(pk=p["dataset_id"]), body_part=p.get("body_part", ""),
        layout=p.get("layout", "auto"), slices=p.get("slices"), created_by=job.created_by, job=job,
        uncalibrated_ct=p.get("uncalibrated_ct", False),
    )
    try:
        return import_path(upload_dir(job), options, reporter, root_label="uploaded files").as_dict()
    finally:
        shutil.rmtree(upload_dir(job), ignore_errors=True)


@task()
def import_upload(job_id: int) -> None:
    """Import the files a coordinator uploaded for this job."""
    run_job(job_id, _import_upload)


def _safe_name(index: int, name: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name.rsplit("/", 1)[-1]).strip("._") or "file"
    return f"{index:05d}_{base[:100]}"


def create_upload_job(data: dict, user=None) -> Job:
    """Store uploaded files (UploadForm's cleaned data) and queue their import; all or nothing."""
    from django.db import transaction

    with transaction.atomic():
        dataset = data["dataset"] or Dataset.objects.create(
            name=data["new_dataset"].strip(), origin=Origin.REAL,
            licence=data["licence"].strip(), source=data["source"],
        )
        job = Job.objects.create(
            kind=Job.Kind.IMPORT,
            title=f"Upload of {len(data['uploads'])} file(s) into {dataset.name}",
            created_by=user,
            params={
                "modality": data["modality"], "dataset_id": dataset.pk, "body_part": data["body_part"],
                "layout": data["layout"], "slices": data["slices"],
                "uncalibrated_ct": bool(data.get("uncalibrated_ct")),
            },
        )
        target = upload_dir(job)
        target.mkdir(parents=True, exist_ok=True)
        try:
            for i, upload in enumerate(data["uploads"]):
                with open(target / _safe_name(i, upload.name), "wb") as fh:
                    for chunk in upload.chunks():
                        fh.write(chunk)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)  # the job row rolls back with it
            raise
        transaction.on_commit(lambda: _enqueue(job))
    return job


def _enqueue(job: Job) -> None:
    result = import_upload.enqueue(job.pk)
    Job.objects.filter(pk=job.pk).update(task_id=str(result.id))
