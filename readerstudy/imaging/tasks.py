"""Background import of uploaded files: staging the files, the import job's work, and when it can be retried."""

import re
import secrets
import shutil
from pathlib import Path

from django.conf import settings
from django.core.files.move import file_move_safe
from django.db import transaction

from readerstudy.jobs.models import Job
from readerstudy.jobs.queue import create_job

from .importing import ImportOptions, import_path
from .models import Dataset, Origin


def upload_dir(job: Job) -> Path:
    """Where the job's uploaded files wait for their import (kept until it succeeds, for a retry)."""
    return Path(settings.UPLOAD_ROOT) / job.params.get("upload_dir", f"job-{job.pk}")


def import_upload(job: Job, reporter) -> dict:
    """The import job's work: import the staged files; they are removed once the import succeeded."""
    p = job.params
    options = ImportOptions(
        modality=p["modality"], dataset=Dataset.objects.get(pk=p["dataset_id"]), body_part=p.get("body_part", ""),
        layout=p.get("layout", "auto"), slices=p.get("slices"), created_by=job.created_by, job=job,
        uncalibrated_ct=p.get("uncalibrated_ct", False),
    )
    report = import_path(upload_dir(job), options, reporter, root_label="uploaded files").as_dict()
    shutil.rmtree(upload_dir(job), ignore_errors=True)
    return report


def retry_refusal(job: Job) -> str | None:
    """An import can be retried while its uploaded files are still there (sources already imported are skipped)."""
    return None if upload_dir(job).is_dir() else "its uploaded files are gone; upload them again"


def _safe_name(index: int, name: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name.rsplit("/", 1)[-1]).strip("._") or "file"
    return f"{index:05d}_{base[:100]}"


def stage_uploads(uploads) -> Path:
    """Put uploaded files into a new staging folder, outside any transaction: large temporary uploads are
    moved (one rename on the same file system, see FILE_UPLOAD_TEMP_DIR), small ones written."""
    target = Path(settings.UPLOAD_ROOT) / f"staged-{secrets.token_hex(8)}"
    target.mkdir(parents=True)
    try:
        for i, upload in enumerate(uploads):
            dest = target / _safe_name(i, upload.name)
            if hasattr(upload, "temporary_file_path"):
                upload.file.flush()
                file_move_safe(upload.temporary_file_path(), str(dest))
            else:
                with open(dest, "wb") as fh:
                    for chunk in upload.chunks():
                        fh.write(chunk)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target


def create_upload_job(data: dict, user=None) -> Job:
    """Stage uploaded files (UploadForm's cleaned data) and queue their import; all or nothing.

    The files are staged before the transaction, which then writes only rows, so a
    multi-gigabyte upload never holds the database's write lock.
    """
    staged = stage_uploads(data["uploads"])
    try:
        with transaction.atomic():
            dataset = data["dataset"] or Dataset.objects.create(
                name=data["new_dataset"].strip(), origin=Origin.REAL,
                licence=data["licence"].strip(), source=data["source"],
            )
            return create_job(
                Job.Kind.IMPORT, user=user,
                title=f"Upload of {len(data['uploads'])} file(s) into {dataset.name}",
                params={
                    "modality": data["modality"], "dataset_id": dataset.pk, "body_part": data["body_part"],
                    "layout": data["layout"], "slices": data["slices"],
                    "uncalibrated_ct": bool(data.get("uncalibrated_ct")), "upload_dir": staged.name,
                },
            )
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
