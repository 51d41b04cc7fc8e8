"""Saving a reader's answer: validated, idempotent, transactional, and never losing a previous value.

The browser autosaves the whole answer state (plus cumulative telemetry) with an
idempotency key. Replaying a request changes nothing; each change of an answer
keeps the previous state as a ReadRevision.
"""

from django.db import IntegrityError, transaction
from django.utils import timezone

from readerstudy.audit.log import record
from readerstudy.studies import scales
from readerstudy.imaging.models import Origin
from readerstudy.studies.config import criteria_for, is_forced_choice
from readerstudy.studies.models import AssignedCase, StudyCase

from .models import Label, Read, ReadRevision
from .worklist import readable, readable_in_transaction, reader_position

ANSWER_FIELDS = ("label", "confidence", "realism", "anatomy", "slice_consistency")
TELEMETRY_FIELDS = ("duration_ms", "slices_visited", "window_changes")
MARK_FIELDS = ("marks", "comment")  # optional: where a case looks synthetic (kept in Read.answers)
CHOICE = "choice"  # forced choice: the panel (0 = left) the reader takes for the real image (in Read.answers)
ALLOWED_KEYS = {*ANSWER_FIELDS, *TELEMETRY_FIELDS, *MARK_FIELDS, CHOICE, "submit", "idempotency_key", "base_revision"}
PANEL_KEYS = "abcd"
MAX_MARKS = 20
MAX_COMMENT = 2000
CONFIDENCE_LEVELS = range(1, 6)
MAX_DURATION_MS = 7 * 24 * 3600 * 1000
CLOSED = "this study is closed for reading; your saved answers are kept"


class AnswerError(Exception):
    """An answer that cannot be saved; `status` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int = 400, field: str | None = None, answer: dict | None = None):
        super().__init__(message)
        self.message, self.status, self.field = message, status, field
        self.answer = answer  # a conflict: the newer answer the reader's page should show

    def as_dict(self) -> dict:
        body = {"error": self.message, "field": self.field}
        if self.answer is not None:
            body["answer"] = self.answer
        return body


def questions_for(config: dict, dimensionality: str) -> dict:
    """What is asked for a case of this dimensionality (identical for real and synthetic cases)."""
    q = config["questions"]
    forced = is_forced_choice(config)
    return {
        "label": None if forced else scales.LABEL_OPTIONS,
        # Forced choice: which panel is the real image (keys a-d, panels A-D from the left).
        "choice": [{"value": p, "key": PANEL_KEYS[p], "text": PANEL_KEYS[p].upper()}
                   for p in range(config["design"]["alternatives"])] if forced else None,
        "confidence": (
            [{"value": v, "text": t} for v, t in zip(CONFIDENCE_LEVELS, scales.CONFIDENCE_ANCHORS)]
            if q["confidence"] else None
        ),
        "scales": [
            {"name": c, "title": scales.CRITERIA[c], "options": q["scales"][c]}
            for c in criteria_for(config, dimensionality)
        ],
        "marks": q["marks"],
    }


def _clean(payload: dict, config: dict, dimensionality: str) -> tuple[dict, dict, bool, str]:
    if not isinstance(payload, dict):
        raise AnswerError("send a JSON object")
    unknown = set(payload) - ALLOWED_KEYS
    if unknown:
        raise AnswerError(f"unknown fields: {', '.join(sorted(unknown))}")
    key = payload.get("idempotency_key")
    if not isinstance(key, str) or not 8 <= len(key) <= 64:
        raise AnswerError("idempotency_key must be a string of 8 to 64 characters", field="idempotency_key")
    submit = payload.get("submit", False)
    if not isinstance(submit, bool):
        raise AnswerError("submit must be true or false", field="submit")
    base = payload.get("base_revision")
    if base is not None and (isinstance(base, bool) or not isinstance(base, int) or base < 0):
        raise AnswerError("base_revision must be the revision number the answer was edited from",
                          field="base_revision")

    questions = questions_for(config, dimensionality)
    answers = {}
    label = payload.get("label") or ""
    if label and questions["label"] is None:
        raise AnswerError("a forced-choice trial asks which image is real: send choice, not label", field="label")
    if label not in ("", *Label.values):
        raise AnswerError(f"label must be one of {', '.join(Label.values)}", field="label")
    answers["label"] = label
    choice = payload.get(CHOICE)
    panels = [o["value"] for o in questions["choice"] or []]
    if choice is not None and (not panels or isinstance(choice, bool) or choice not in panels):
        raise AnswerError(f"choice must be one of the panels {panels}" if panels else
                          "choice is asked only in forced-choice studies", field=CHOICE)
    allowed = {"confidence": [o["value"] for o in questions["confidence"] or []]}
    allowed.update({s["name"]: [o["value"] for o in s["options"]] for s in questions["scales"]})
    for name in ANSWER_FIELDS[1:]:
        value = payload.get(name)
        if value is not None:
            if not allowed.get(name):
                raise AnswerError(f"{name} is not asked in this study for this case", field=name)
            if isinstance(value, bool) or value not in allowed[name]:
                raise AnswerError(f"{name} must be one of {allowed[name]}", field=name)
        answers[name] = value
    if submit:
        asked = ("label",) if questions["label"] else ()
        missing = [n for n in (*asked, *(n for n in allowed if allowed[n])) if answers.get(n) in (None, "")]
        if panels and choice is None:
            missing.insert(0, CHOICE)
        if missing:
            raise AnswerError("answer every question before finishing the case: missing " + ", ".join(missing))

    answers["extra"] = _clean_marks(payload, questions["marks"])
    if choice is not None:
        answers["extra"][CHOICE] = choice

    telemetry = {}
    duration = payload.get("duration_ms", 0)
    if isinstance(duration, bool) or not isinstance(duration, int) or not 0 <= duration <= MAX_DURATION_MS:
        raise AnswerError("duration_ms must be a non-negative whole number of milliseconds", field="duration_ms")
    telemetry["duration_ms"] = duration
    changes = payload.get("window_changes", 0)
    if isinstance(changes, bool) or not isinstance(changes, int) or not 0 <= changes <= 10**6:
        raise AnswerError("window_changes must be a non-negative whole number", field="window_changes")
    telemetry["window_changes"] = changes
    visited = payload.get("slices_visited", [])
    if not isinstance(visited, list) or len(visited) > 10_000 or not all(
        isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 10_000 for v in visited
    ):
        raise AnswerError("slices_visited must be a list of slice numbers", field="slices_visited")
    telemetry["slices_visited"] = visited
    return answers, telemetry, submit, key, base


def _unit(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


def _clean_marks(payload: dict, asked: bool) -> dict:
    """Points ({x, y, slice}) or boxes (+ w, h), in image fractions, and a comment; {} where not asked."""
    marks, comment = payload.get("marks"), payload.get("comment")
    if not asked:
        if marks or comment:
            raise AnswerError("this study does not ask where a case looks synthetic", field="marks")
        return {}
    marks = marks or []
    if not isinstance(marks, list) or len(marks) > MAX_MARKS:
        raise AnswerError(f"marks must be a list of at most {MAX_MARKS} marks", field="marks")
    clean = []
    for mark in marks:
        if not isinstance(mark, dict) or set(mark) - {"x", "y", "w", "h", "slice"} or not {"x", "y", "slice"} <= set(mark):
            raise AnswerError("each mark needs x, y (image fractions 0-1) and slice; boxes add w and h", field="marks")
        if not all(_unit(mark[k]) for k in ("x", "y", "w", "h") if k in mark):
            raise AnswerError("mark positions and sizes are fractions of the image, from 0 to 1", field="marks")
        if isinstance(mark["slice"], bool) or not isinstance(mark["slice"], int) or not 1 <= mark["slice"] <= 10_000:
            raise AnswerError("a mark's slice is a slice number", field="marks")
        clean.append({k: (round(float(v), 4) if k != "slice" else v) for k, v in mark.items()})
    comment = comment or ""
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        raise AnswerError(f"the comment must be text of at most {MAX_COMMENT} characters", field="comment")
    return {"marks": clean, "comment": comment.strip()} if clean or comment.strip() else {}


def _totals(read: Read) -> dict:
    """Telemetry of every visit so far (for a finished case, including those after finishing it)."""
    totals = {name: getattr(read, name) for name in TELEMETRY_FIELDS}
    totals.update(read.telemetry_after_submit or {})
    return totals


def _merged(current: dict, sent: dict) -> dict:
    """Cumulative telemetry merged monotonically: retries arriving out of order lose nothing."""
    return {
        "duration_ms": max(current["duration_ms"], sent["duration_ms"]),
        "window_changes": max(current["window_changes"], sent["window_changes"]),
        "slices_visited": sorted(set(current["slices_visited"]) | set(sent["slices_visited"])),
    }


def answer_state(read: Read | None) -> dict:
    """The reader's own answer as the browser sees it (telemetry: the totals the page counts on from)."""
    state = {name: getattr(read, name) if read else None for name in ANSWER_FIELDS}
    state["label"] = state["label"] or None
    totals = _totals(read) if read else {"duration_ms": 0, "window_changes": 0, "slices_visited": []}
    state.update(
        submitted=bool(read and read.submitted_at), revision=read.revision if read else 0, **totals,
        marks=(read.answers or {}).get("marks", []) if read else [],
        choice=(read.answers or {}).get(CHOICE) if read else None,
        comment=(read.answers or {}).get("comment", "") if read else "",
    )
    return state


def _snapshot(read: Read) -> dict:
    data = {name: getattr(read, name) for name in (*ANSWER_FIELDS, *TELEMETRY_FIELDS, "telemetry_after_submit",
                                                   "idempotency_key", "answers")}
    data["submitted_at"] = read.submitted_at.isoformat() if read.submitted_at else None
    data["saved_at"] = read.saved_at.isoformat() if read.saved_at else None
    return data


def save_answer(assigned_case: AssignedCase, payload: dict) -> dict:
    """Validate and store one autosave or submission.

    Returns {"answer", "replayed", "feedback", "next_token", "finished"}: the case the
    reader may go on to (None if none yet) and whether every case is now answered.
    """
    assignment = assigned_case.assignment
    position = reader_position(assignment)
    config = position.config
    item = assigned_case.case.item
    answers, telemetry, submit, key, base = _clean(payload, config, item.dimensionality)
    if not readable(assignment):
        raise AnswerError(CLOSED, status=409)
    row = position.row(assigned_case.token)
    # A finished case always takes telemetry; whether its answers may change is decided in _apply.
    if not (row["submitted"] or position.may_open(row)):
        raise AnswerError("this case cannot be answered now: cases are read in order", status=409)

    for attempt in range(2):
        try:
            with transaction.atomic():
                # One locked read of an existing answer (the usual case); the first save creates it.
                read = (Read.objects.select_for_update().filter(assigned_case=assigned_case).first()
                        or Read.objects.create(assigned_case=assigned_case))
                read.assigned_case = assigned_case  # with its assignment, study and reader already loaded
                if not readable_in_transaction(assignment):  # closed after the check above
                    raise AnswerError(CLOSED, status=409)
                replayed = _apply(read, answers, telemetry, submit, key, base, config)
            break
        except IntegrityError:  # two first saves raced to create the Read; the loser retries
            if attempt:
                raise
    feedback = None
    if read.submitted_at and assigned_case.case.role == StudyCase.Role.CALIBRATION:
        if is_forced_choice(config):
            real = AssignedCase.objects.get(assignment=assignment, position=assigned_case.position,
                                            case__item__origin=Origin.REAL)
            feedback = {"real_panel": real.panel, "your_choice": read.answers.get(CHOICE)}
        else:
            feedback = {"truth": item.origin, "your_label": read.label}
    row.update(submitted=read.submitted_at is not None, submitted_at=read.submitted_at)
    if position.finished and assignment.completed_at is None:
        type(assignment).objects.filter(pk=assignment.pk, completed_at__isnull=True).update(
            completed_at=timezone.now())
    _, next_token = position.neighbours(row)
    return {"answer": answer_state(read), "replayed": replayed, "feedback": feedback,
            "next_token": next_token, "finished": position.finished}


def _apply(read: Read, answers: dict, telemetry: dict, submit: bool, key: str, base: int | None,
           config: dict) -> bool:
    """Write into a locked Read; True when the request was a replay and nothing changed."""
    if read.idempotency_key == key:
        return True
    extra = answers["extra"]
    changed = any(getattr(read, n) != answers[n] for n in ANSWER_FIELDS) or (read.answers or {}) != extra
    if changed and base is not None and base != read.revision:
        # Edited from an older answer (another tab or device saved meanwhile): the newer one wins
        # until the reader, who now sees it, changes it again.
        raise AnswerError(f"this answer was changed elsewhere meanwhile (another tab or device; revision "
                          f"{read.revision}); the newer answer is shown — change it again if needed",
                          status=409, field="base_revision", answer=answer_state(read))
    if read.submitted_at and changed:
        if not config["reading"]["allow_back"]:
            raise AnswerError("answers to finished cases cannot be changed in this study", status=409)
        if not submit:
            missing = [n for n in ANSWER_FIELDS if getattr(read, n) not in (None, "") and answers[n] in (None, "")]
            if CHOICE in (read.answers or {}) and CHOICE not in extra:
                missing.append(CHOICE)
            if missing:
                raise AnswerError("a finished case keeps a complete answer: cannot clear " + ", ".join(missing))
        record("answer.changed", read.assigned_case.assignment.reader, read.assigned_case.assignment.study,
               f"read {read.pk}", revision=read.revision + 1,
               before={**{n: getattr(read, n) for n in ANSWER_FIELDS}, "extra": read.answers}, after=answers)
    if changed and (read.revision or read.answers or any(getattr(read, n) not in (None, "") for n in ANSWER_FIELDS)):
        ReadRevision.objects.create(read=read, revision=read.revision, snapshot=_snapshot(read))
    now = timezone.now()
    if changed:
        for name in ANSWER_FIELDS:
            setattr(read, name, answers[name])
        read.answers = extra
        read.revision += 1
    merged = _merged(_totals(read), telemetry)
    if read.submitted_at:
        # A finished case: the time and views it took to decide stay as submitted; later visits
        # add to totals of their own.
        read.telemetry_after_submit = merged
    else:
        for name in TELEMETRY_FIELDS:
            setattr(read, name, merged[name])
    read.started_at = read.started_at or now
    if submit and not read.submitted_at:
        read.submitted_at = now
    read.idempotency_key = key
    read.save()
    return False


