"""A study's life: draft -> prepared (cases drawn, files rendered, audited) -> open -> closed.

Views, commands and background tasks all call these functions.
"""

import secrets

from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from readerstudy.audit.log import record
from readerstudy.imaging.pool import ensure_rendition
from readerstudy.jobs.models import Job
from readerstudy.jobs.progress import NullProgress
from readerstudy.jobs.queue import create_job

from .leak_audit import audit_is_current, run_leak_audit
from .config import StudyConfigError, stratum_key, validate_config
from .models import Study
from .sampling import check_matrix, draw_cases, write_cases


def new_study_seed() -> int:
    return secrets.randbelow(2**53)


def unique_slug(name: str) -> str:
    base = slugify(name)[:40] or "study"
    slug, n = base, 1
    while Study.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def create_study(*, name: str, config: dict, instructions: str = "", created_by=None, seed=None) -> Study:
    """A new draft study with a validated configuration and a stored seed."""
    config = validate_config(config)
    check_matrix(config)
    study = Study.objects.create(
        name=name, slug=unique_slug(name), instructions=instructions, config=config,
        seed=new_study_seed() if seed is None else seed, created_by=created_by,
    )
    record("study.created", created_by, study, study.slug, seed=study.seed)
    return study


def update_study(study: Study, actor=None, **fields) -> list[str]:
    """Change name, instructions or config of a draft study; returns the names of the fields that changed."""
    if study.status != Study.Status.DRAFT:
        raise StudyConfigError("only a draft study can be changed; its configuration is frozen once opened")
    if "config" in fields:
        fields["config"] = {**validate_config(fields["config"]), "presets": study.config.get("presets", {}),
                            "drawn": study.config.get("drawn", {})}
        check_matrix(fields["config"])
    changed = [name for name, value in fields.items() if getattr(study, name) != value]
    for name in changed:
        setattr(study, name, fields[name])
    if changed:
        study.save(update_fields=changed)
        record("study.changed", actor, study, study.slug, fields=changed)
    return changed


def clone_study(study: Study, actor=None, name: str | None = None) -> Study:
    """A new draft with the same instructions and configuration (cases are drawn anew, with a new seed)."""
    config = {k: v for k, v in validate_config(study.config).items() if k not in ("presets", "drawn")}
    copy = create_study(name=name or f"Copy of {study.name}"[:200], config=config, instructions=study.instructions,
                        created_by=actor)
    record("study.cloned", actor, copy, copy.slug, source=study.slug)
    return copy


def feasibility_problems(study: Study) -> str | None:
    """Why the study could not be prepared with today's pool (None when it could); draws nothing."""
    try:
        draw_cases(study)
    except StudyConfigError as exc:
        return str(exc)
    return None


def prepare_study(study: Study, progress=None) -> dict:
    """Draw the cases, render every case at its stratum's matrix, and run the leak audit."""
    progress = progress or NullProgress()
    draw = draw_cases(study)
    write_cases(study, draw)
    study.refresh_from_db()
    cases = list(study.cases.select_related("item").exclude(role="repeat"))
    progress.start(len(cases) + 1)
    for case in cases:
        progress.check_cancelled()
        preset = study.config["presets"][stratum_key(case.item.modality, case.item.dimensionality)]
        ensure_rendition(case.item, *preset)
        progress.advance(1, f"rendered case {case.pk}")
    audit = run_leak_audit(study)
    progress.advance(1, "leak audit " + ("passed" if audit["ok"] else "found differences")
                     + (f" ({len(audit['warnings'])} warnings)" if audit["warnings"] else ""))
    return {
        "cases": len(draw.regular), "calibration": len(draw.calibration), "repeats": len(draw.repeats),
        "presets": draw.presets, "audit_ok": audit["ok"], "audit_problems": audit["problems"][:20],
        "audit_warnings": audit["warnings"][:20], "excluded": draw.excluded,
    }


def _queue_study_job(study: Study, kind: str, title: str, event: str, user=None):
    """A job for work on `study`, queued once the row is committed, and its audit-log event."""
    with transaction.atomic():
        job = create_job(kind, {"study_id": study.pk, "study_slug": study.slug}, user=user, title=title)
        record(event, user, study, study.slug, job=job.pk)
    return job


def create_prepare_job(study: Study, user=None):
    """Queue `prepare_study` as a background job; returns the Job."""
    if study.status != Study.Status.DRAFT:
        raise StudyConfigError("only a draft study can be prepared")
    return _queue_study_job(study, Job.Kind.PREPARE_STUDY, f"Prepare {study.name}", "study.prepare", user)


def create_audit_job(study: Study, user=None):
    """Queue the leak audit (metadata, independence, pixels) as a background job; returns the Job."""
    if not study.cases.exists():
        raise StudyConfigError("prepare the study first: it has no cases")
    return _queue_study_job(study, Job.Kind.AUDIT_STUDY, f"Leak audit of {study.name}", "study.audit", user)


def open_study(study: Study, actor=None) -> dict:
    """Open for reading once a passed leak audit still matches the files; raises StudyConfigError saying
    what blocks it. (The audit reads every served file, so it runs as a job, never in a request.)"""
    if study.status == Study.Status.OPEN:
        raise StudyConfigError("the study is already open")
    if not study.cases.exists():
        raise StudyConfigError("prepare the study first: it has no cases")
    if not study.assignments.readers().exists():
        raise StudyConfigError("assign at least one reader first")
    audit = study.audit or {}
    if not audit:
        raise StudyConfigError("run the leak audit first")
    if not audit.get("ok"):
        raise StudyConfigError("the leak audit found differences: " + "; ".join(audit["problems"][:5]))
    if not audit_is_current(study):
        raise StudyConfigError("the served files changed since the last leak audit: run the leak audit again")
    with transaction.atomic():
        locked = Study.objects.select_for_update().get(pk=study.pk)
        locked.status = Study.Status.OPEN
        locked.opened_at = locked.opened_at or timezone.now()
        locked.closed_at = None
        locked.save(update_fields=["status", "opened_at", "closed_at"])
        record("study.opened", actor, locked, locked.slug, audit_files=audit["files"])
    study.refresh_from_db()
    return audit


def close_study(study: Study, actor=None) -> None:
    """Stop reading; answers stay, readers can no longer change them."""
    if study.status != Study.Status.OPEN:
        raise StudyConfigError("only an open study can be closed")
    Study.objects.filter(pk=study.pk).update(status=Study.Status.CLOSED, closed_at=timezone.now())
    record("study.closed", actor, study, study.slug)
    study.refresh_from_db()
