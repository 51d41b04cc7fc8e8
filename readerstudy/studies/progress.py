"""Per-reader progress of a study in a fixed number of queries, however many readers it has."""

from dataclasses import dataclass
from statistics import median

from django.db.models import Count, Max, Q

from readerstudy.reading.models import Read

from .models import Study


@dataclass
class ReaderProgress:
    reader: str
    done: int
    total: int
    median_seconds: float | None
    last_saved: object
    session: int
    completed: bool

    @property
    def remaining(self) -> int:
        return self.total - self.done

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0


def study_progress(study: Study) -> list[ReaderProgress]:
    """Done, remaining, median seconds per case and current session for every reader (three queries)."""
    assignments = (
        study.assignments.readers().select_related("reader")
        .annotate(
            # A forced-choice trial is one position (its answer is on panel 0).
            total=Count("cases", filter=Q(cases__panel=0), distinct=True),
            done=Count("cases", filter=Q(cases__panel=0, cases__read__submitted_at__isnull=False), distinct=True),
            last_saved=Max("cases__read__saved_at"),
            session=Max("cases__session", filter=Q(cases__read__submitted_at__isnull=False)),
        )
        .order_by("reader__username")
    )
    durations: dict[int, list[int]] = {}
    for assignment_id, ms in Read.objects.filter(
        assigned_case__assignment__study=study, assigned_case__assignment__preview=False, submitted_at__isnull=False
    ).values_list("assigned_case__assignment_id", "duration_ms"):
        durations.setdefault(assignment_id, []).append(ms)
    return [
        ReaderProgress(
            reader=a.reader.get_username(), done=a.done, total=a.total,
            median_seconds=round(median(durations[a.pk]) / 1000, 1) if durations.get(a.pk) else None,
            last_saved=a.last_saved, session=a.session or 1, completed=a.total > 0 and a.done == a.total,
        )
        for a in assignments
    ]
