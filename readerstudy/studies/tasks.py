"""Background work on studies (jobs registered in StudiesConfig): preparation (drawing cases, rendering
files, leak audit) and the leak audit alone."""

from .leak_audit import run_leak_audit
from .lifecycle import prepare_study
from .models import Study


def prepare(job, reporter) -> dict:
    return prepare_study(Study.objects.get(pk=job.params["study_id"]), reporter)


def _refusal(job, check) -> str | None:
    study = Study.objects.filter(pk=job.params["study_id"]).first()
    return "the study has been deleted" if study is None else check(study)


def prepare_retry_refusal(job) -> str | None:
    return _refusal(job, lambda study: None if study.status == Study.Status.DRAFT
                    else f"the study is {study.get_status_display().lower()}")


def audit(job, reporter) -> dict:
    result = run_leak_audit(Study.objects.get(pk=job.params["study_id"]), progress=reporter)
    return {"audit_ok": result["ok"], "audit_problems": result["problems"][:20],
            "audit_warnings": result["warnings"][:20], "files": result["files"]}


def audit_retry_refusal(job) -> str | None:
    return _refusal(job, lambda study: None if study.cases.exists() else "the study has no cases")
