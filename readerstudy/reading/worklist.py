"""Where a reader stands in a study: current case, what they may open, session washouts."""

from dataclasses import dataclass
from datetime import timedelta

from django.db import connection
from django.db.models import F, Q
from django.http import Http404
from django.utils import timezone

from readerstudy.studies.config import validate_config
from readerstudy.studies.models import AssignedCase, Assignment, Study


@dataclass
class Position:
    """One reader's place: the ordered cases (light rows) and derived state."""

    assignment: Assignment
    rows: list  # dicts: position, session, token, submitted (bool), submitted_at
    config: dict

    @property
    def total(self) -> int:
        return len(self.rows)

    @property
    def done(self) -> int:
        return sum(r["submitted"] for r in self.rows)

    @property
    def current(self) -> dict | None:
        """The first case without a submitted answer (None when all are done)."""
        return next((r for r in self.rows if not r["submitted"]), None)

    @property
    def finished(self) -> bool:
        return self.current is None

    def session_opens_at(self, session: int):
        """When `session` becomes available: washout after the previous session's last answer."""
        hours = self.config["reading"]["washout_hours"]
        if session <= 1 or not hours:
            return None
        previous = [r["submitted_at"] for r in self.rows if r["session"] == session - 1 and r["submitted_at"]]
        if not previous:
            return None
        return max(previous) + timedelta(hours=hours)

    @property
    def locked_until(self):
        """If the current case's session is still in its washout period, when it ends."""
        current = self.current
        if current is None:
            return None
        opens = self.session_opens_at(current["session"])
        return opens if opens and opens > timezone.now() else None

    def after_submitting(self, row: dict) -> "Position":
        """This position as it will be once `row`'s answer is in (the next case's page, rendered ahead)."""
        now = timezone.now()
        rows = [dict(r, submitted=True, submitted_at=r["submitted_at"] or now) if r is row else r for r in self.rows]
        return Position(self.assignment, rows, self.config)

    def row(self, token: str) -> dict | None:
        return next((r for r in self.rows if r["token"] == token), None)

    def row_of(self, case: AssignedCase) -> dict:
        """The row of the position `case` is at (any panel of a forced-choice trial)."""
        return self.rows[case.position - 1]

    def may_open(self, row: dict) -> bool:
        """Readers go in order: the current case, or a finished one where going back is allowed."""
        current = self.current
        if current is not None and row["position"] == current["position"]:
            return self.locked_until is None
        if row["submitted"]:
            return self.config["reading"]["allow_back"]
        return False

    def may_fetch_files(self, row: dict) -> bool:
        """Files of a case the reader may open, and of the one after the current case in its session
        (prefetched while they answer; its page and answer stay closed until they get there)."""
        if self.may_open(row):
            return True
        current = self.current
        return (current is not None and self.locked_until is None and row["position"] == current["position"] + 1
                and row["session"] == current["session"])

    def neighbours(self, row: dict) -> tuple[str | None, str | None]:
        """(previous token the reader may open, next token) around `row`."""
        index = row["position"] - 1
        prev_row = self.rows[index - 1] if index > 0 else None
        next_row = self.rows[index + 1] if index + 1 < len(self.rows) else None
        prev_token = prev_row["token"] if prev_row and self.may_open(prev_row) else None
        next_token = next_row["token"] if next_row and row["submitted"] and self.may_open(next_row) else None
        return prev_token, next_token


def reader_position(assignment: Assignment) -> Position:
    """One row per position (a forced-choice trial is one position: its panel-0 row holds the answer)."""
    rows = list(
        AssignedCase.objects.filter(assignment=assignment, panel=0)
        .order_by("position")
        .values("position", "session", "token", submitted_at=F("read__submitted_at"))
    )
    for r in rows:
        r["submitted"] = r["submitted_at"] is not None
    return Position(assignment, rows, validate_config(assignment.study.config))


def reader_case(user, token: str, any_panel: bool = False) -> AssignedCase:
    """The reader's own case in an open or closed study, else 404 (never 403: tokens are not confirmed).

    Pages and answers address a position by its panel-0 token; served files may name any
    panel of a forced-choice trial (`any_panel`).
    """
    cases = AssignedCase.objects.filter(token=token, assignment__reader=user)
    if not any_panel:
        cases = cases.filter(panel=0)
    # A token is unique, so no ORDER BY; drafts are invisible to readers (checked here rather than in
    # SQL, which costs every save and page a more complex query), but a coordinator's preview may
    # show a prepared draft.
    case = next(iter(cases.select_related("assignment__study", "case__item", "read")[:1]), None)
    if case is None or (case.assignment.study.status == Study.Status.DRAFT and not case.assignment.preview):
        raise Http404("No such case in your worklist.")
    case.assignment.reader = user  # the filter above made it so; saves a query wherever the reader is named
    return case


def readable(assignment: Assignment, status: str | None = None) -> bool:
    """Whether answers may be given now: the study is open (or, for a preview, a prepared draft)."""
    status = status or assignment.study.status
    return status == Study.Status.OPEN or (assignment.preview and status == Study.Status.DRAFT)


def readable_in_transaction(assignment: Assignment) -> bool:
    """`readable` with the study's status read again inside the caller's transaction and held there.

    PostgreSQL: the study row is read FOR SHARE, so a close (a conditional UPDATE of that
    row) waits until this save commits, and a save after the close sees it closed. SQLite
    runs one write transaction at a time, so a plain read there is already current.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT status FROM "{Study._meta.db_table}" WHERE id = %s FOR SHARE',
                           [assignment.study_id])
            row = cursor.fetchone()
    else:
        row = Study.objects.filter(pk=assignment.study_id).values_list("status").first()
    return row is not None and readable(assignment, row[0])


def visible_assignments(user):
    """The reader's assignments they may see: open or closed studies, and their own previews of drafts."""
    return Assignment.objects.filter(
        Q(study__status__in=[Study.Status.OPEN, Study.Status.CLOSED]) | Q(preview=True, study__status=Study.Status.DRAFT),
        reader=user,
    ).select_related("study")


def reader_assignments(user):
    """The studies a reader takes part in that are open or closed (drafts are invisible to readers)."""
    return visible_assignments(user).filter(preview=False).order_by("-study__opened_at")
