"""A study's life: draft -> prepared (cases drawn, files rendered, audited) -> open -> closed.

Views, commands and background tasks all call these functions.
"""

import secrets

from django.db import transaction
from django.db.models import Value
from django.db.models.functions import Coalesce
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
    """A new draft study with a validated configuration and a stored seed; its creator edits it."""
    config = validate_config(config)
    check_matrix(config)
    study = Study.objects.create(
        name=name, slug=unique_slug(name), instructions=instructions, config=config,
        seed=new_study_seed() if seed is None else seed, created_by=created_by,
    )
    if created_by is not None:
        study.editors.add(created_by)
    record("study.created", created_by, study, study.slug, seed=study.seed)
    return study


def set_editors(study: Study, usernames: list[str], actor=None) -> list[str]:
    """Make these coordinators the study's editors (at least one); recorded in the audit log."""
    from readerstudy.accounts.permissions import MANAGE_STUDIES, users_with

    wanted = sorted(set(usernames))
    if not wanted:
        raise StudyConfigError("a study keeps at least one editor")
    users = list(users_with(MANAGE_STUDIES).filter(username__in=wanted))
    missing = sorted(set(wanted) - {u.username for u in users})
    if missing:
        raise StudyConfigError(f"not active coordinators: {', '.join(missing)}")
    with transaction.atomic():
        before = sorted(study.editors.values_list("username", flat=True))
        study.editors.set(users)
        record("study.editors", actor, study, study.slug, before=before, after=wanted)
    return wanted


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


# A study's status changes only along these edges, each with its audit event; `_transition` applies
# one as a conditional UPDATE, so two requests (two tabs, a page and the API) cannot both act on one state.
TRANSITIONS = {
    (Study.Status.DRAFT, Study.Status.OPEN): "study.opened",
    (Study.Status.OPEN, Study.Status.CLOSED): "study.closed",
    (Study.Status.CLOSED, Study.Status.OPEN): "study.reopened",
}
MIN_REOPEN_REASON = 10


def _transition(study: Study, source: str, target: str, actor=None, **details) -> None:
    event = TRANSITIONS[(source, target)]
    now = timezone.now()
    fields = {"status": target}
    if target == Study.Status.OPEN:
        fields.update(opened_at=Coalesce("opened_at", Value(now)), closed_at=None)
    else:
        fields["closed_at"] = now
    with transaction.atomic():
        # On PostgreSQL this UPDATE waits for answer saves holding the row FOR SHARE (reading.answers).
        if not Study.objects.filter(pk=study.pk, status=source).update(**fields):
            current = Study.objects.filter(pk=study.pk).values_list("status", flat=True).first()
            raise StudyConfigError(f"the study is {current or 'deleted'} now, not {source}: reload the page")
        record(event, actor, study, study.slug, **details)
    study.refresh_from_db()


def _check_openable(study: Study) -> dict:
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
    return audit


def open_study(study: Study, actor=None) -> dict:
    """Open a prepared draft for reading once a passed leak audit still matches the files; raises
    StudyConfigError saying what blocks it. (The audit reads every served file, so it runs as a job.)"""
    if study.status == Study.Status.OPEN:
        raise StudyConfigError("the study is already open")
    if study.status == Study.Status.CLOSED:
        raise StudyConfigError("the study is closed: reopening it is a separate, confirmed action with a reason")
    audit = _check_openable(study)
    _transition(study, Study.Status.DRAFT, Study.Status.OPEN, actor, audit_files=audit["files"])
    return audit


def close_study(study: Study, actor=None) -> None:
    """Stop reading; answers stay, readers can no longer change them."""
    if study.status != Study.Status.OPEN:
        raise StudyConfigError("only an open study can be closed")
    _transition(study, Study.Status.OPEN, Study.Status.CLOSED, actor)


def reopen_study(study: Study, actor=None, reason: str = "", confirm: bool = False) -> None:
    """Let readers answer a closed study again: an explicit action, confirmed, with a reason in the audit log.

    Exports and analyses made while it was closed stop matching the answers, so the
    person must say they know (`confirm`) and why (`reason`, kept in the audit event).
    """
    if study.status != Study.Status.CLOSED:
        raise StudyConfigError("only a closed study can be reopened")
    reason = (reason or "").strip()
    if len(reason) < MIN_REOPEN_REASON:
        raise StudyConfigError(f"say why the study is reopened (at least {MIN_REOPEN_REASON} characters); "
                               "the reason is kept in the audit log")
    if not confirm:
        raise StudyConfigError("confirm that exports and analyses made since closing will no longer match "
                               "the answers")
    audit = _check_openable(study)
    _transition(study, Study.Status.CLOSED, Study.Status.OPEN, actor, reason=reason[:1000],
                closed_at=study.closed_at.isoformat() if study.closed_at else None, audit_files=audit["files"])
