"""Background work on studies: preparation (drawing cases, rendering files, leak audit) and the leak audit."""

from django_tasks import task

from readerstudy.jobs.progress import run_job

from .leak_audit import run_leak_audit
from .lifecycle import prepare_study
from .models import Study


def _prepare(job, reporter) -> dict:
    return prepare_study(Study.objects.get(pk=job.params["study_id"]), reporter)


@task()
def prepare_study_task(job_id: int) -> None:
    run_job(job_id, _prepare)


def _audit(job, reporter) -> dict:
    audit = run_leak_audit(Study.objects.get(pk=job.params["study_id"]), progress=reporter)
    return {"audit_ok": audit["ok"], "audit_problems": audit["problems"][:20],
            "audit_warnings": audit["warnings"][:20], "files": audit["files"]}


@task()
def audit_study_task(job_id: int) -> None:
    run_job(job_id, _audit)
