"""A coordinator tries a study as a reader would: the same viewer, files and answer rules.

A preview is an `Assignment` with `preview=True` for the coordinator, with its own
order (as a reader's would be). It works on a prepared draft and on an open study,
counts nowhere (progress, analysis, exports, opening) and its answers are deleted
when it ends, when it is started again, and when the cases are drawn again.
"""

from django.db import transaction

from readerstudy.audit.log import record

from .config import StudyConfigError
from .models import Assignment, Study

PREVIEW_STATUSES = (Study.Status.DRAFT, Study.Status.OPEN)


@transaction.atomic
def start_preview(study: Study, user) -> Assignment:
    """A fresh preview of `study` for `user` (an earlier one of theirs is discarded)."""
    from .sampling import _write_orders, order_seed

    if study.status not in PREVIEW_STATUSES:
        raise StudyConfigError("a closed study cannot be previewed")
    if not study.cases.exists():
        raise StudyConfigError("prepare the study first: a preview shows its drawn cases")
    if study.assignments.readers().filter(reader=user).exists():
        raise StudyConfigError("you are a reader of this study: read it from your worklist (a preview would "
                               "be your reading)")
    discard_previews(study, user)
    assignment = Assignment.objects.create(study=study, reader=user, preview=True,
                                           order_seed=order_seed(study, user.pk))
    _write_orders(study, [assignment])
    record("study.preview_started", user, study, study.slug)
    return assignment


@transaction.atomic
def end_preview(study: Study, user) -> int:
    """End `user`'s preview of `study`; returns how many answers were discarded."""
    discarded = discard_previews(study, user)
    record("study.preview_ended", user, study, study.slug, answers_discarded=discarded)
    return discarded


def discard_previews(study: Study, user=None) -> int:
    """Delete previews of `study` (of `user` only, if given) with their answers; returns the answers deleted."""
    from readerstudy.reading.models import Read

    previews = study.assignments.filter(preview=True)
    if user is not None:
        previews = previews.filter(reader=user)
    reads = Read.objects.filter(assigned_case__assignment__in=previews)
    count = reads.count()
    reads.delete()  # their revisions go with them
    previews.delete()
    return count


def preview_of(study: Study, user) -> Assignment | None:
    return study.assignments.filter(preview=True, reader=user).first()
