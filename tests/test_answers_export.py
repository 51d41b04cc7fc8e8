"""The answers CSV is computed by the database (stats/answers_table.py; COPY on PostgreSQL). Every cell of
every row is checked here against the same column worked out in Python from the model objects, on
whichever database the suite runs on (make test: SQLite; make test-postgres: PostgreSQL)."""

import csv
import io
import json
from datetime import datetime, timezone

import pytest
from django.urls import reverse

from readerstudy.accounts.models import ReaderProfile
from readerstudy.accounts.roles import ANALYST, READER
from readerstudy.reading.models import Read
from readerstudy.stats.answers_table import ANSWER_COLUMNS
from readerstudy.studies.models import AssignedCase
from readerstudy.studies.scales import CONFIDENCE_ANCHORS

from .studies import make_pool, make_user, open_study_for, readers

pytestmark = pytest.mark.django_db

LABEL_TEXT = {"fake": "Synthetic", "real": "Real", "unsure": "Unsure"}


def spreadsheet_safe(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def expected_row(study, read: Read) -> dict:
    """The export's row for one answer, worked out from the objects (the export's specification)."""
    ac = read.assigned_case
    item, profile = ac.case.item, ReaderProfile.objects.filter(user=ac.assignment.reader).first()
    scales = {c: {o["value"]: f"{o['code']}: {o['text']}" for o in options}
              for c, options in study.config["questions"]["scales"].items()}
    extra, revisits = read.answers or {}, read.telemetry_after_submit or {}
    weight = read.confidence or 1
    blank = lambda v: "" if v is None else str(v)  # noqa: E731
    iso = lambda t: t.astimezone(timezone.utc).isoformat() if t else ""  # noqa: E731
    row = {
        "study": study.slug, "reader": spreadsheet_safe(ac.assignment.reader.username),
        "reader_years_experience": blank(profile and profile.years_experience),
        "reader_is_trainee": "" if profile is None or profile.is_trainee is None else str(int(profile.is_trainee)),
        "case": str(ac.case_id), "case_role": ac.case.role, "repeat_of": blank(ac.case.repeat_of_id),
        "position": str(ac.position), "session": str(ac.session), "modality": item.modality,
        "dimensionality": item.dimensionality, "truth": item.origin,
        "generator": spreadsheet_safe(f"{item.generator.name} v{item.generator.version}") if item.generator else "",
        "label": read.label, "label_text": LABEL_TEXT.get(read.label, ""),
        "confidence": blank(read.confidence),
        "confidence_text": CONFIDENCE_ANCHORS[read.confidence - 1] if read.confidence else "",
        "fakeness_score": str({"fake": weight, "real": -weight, "unsure": 0}[read.label]),
        "duration_ms": str(read.duration_ms), "slices_visited": str(len(read.slices_visited or [])),
        "window_changes": str(read.window_changes), "started_at": iso(read.started_at),
        "submitted_at": iso(read.submitted_at), "revision": str(read.revision),
        "marks": extra.get("marks") or "", "comment": spreadsheet_safe(extra.get("comment", "")),
        "duration_with_revisits_ms": str(revisits.get("duration_ms", read.duration_ms)),
        "window_changes_with_revisits": str(revisits.get("window_changes", read.window_changes)),
    }
    for criterion in ("realism", "anatomy", "slice_consistency"):
        value = getattr(read, criterion)
        row[criterion], row[f"{criterion}_text"] = blank(value), scales.get(criterion, {}).get(value, "")
    return row


def test_every_cell_of_the_answers_export_is_what_the_answers_say(client):
    generator = make_pool(real={("CT", "2d"): 6}, synthetic={("CT", "2d"): 6})
    generator.name = "=HYPERLINK(x)"  # a coordinator's free text
    generator.save()
    team = readers(2) + [make_user("=cmd|' /C calc'!A0", READER), make_user("-minus", READER)]
    ReaderProfile.objects.create(user=team[0], years_experience=3, is_trainee=True)
    ReaderProfile.objects.create(user=team[1], years_experience=15, is_trainee=False)
    study = open_study_for(team, {("CT", "2d"): 8}, reading={"calibration_cases": 2, "repeat_cases": 2},
                           questions={"confidence": True, "template": "khader", "criteria": ["realism", "anatomy"],
                                      "marks": True})
    comments = ["=1+1", "+sum", "plain, with a comma", 'a "quoted" word\nand a new line', "", "@here", "-1 looks off", "ok"]
    labels = ["fake", "real", "unsure"]
    for r, reader in enumerate(team):
        client.force_login(reader)
        for i, ac in enumerate(AssignedCase.objects.filter(assignment__reader=reader).order_by("position")):
            body = {"label": labels[(r + i) % 3], "confidence": 1 + (r + i) % 5, "realism": 1 + i % 4,
                    "anatomy": 1 + (r * i) % 4, "submit": True, "idempotency_key": f"x-{ac.token}",
                    "duration_ms": 1000 + 37 * i, "window_changes": i % 3, "slices_visited": list(range(1, 1 + i % 3)),
                    "comment": comments[(r + i) % len(comments)]}
            if i % 2:
                body["marks"] = [{"x": 0.25, "y": 0.5, "slice": 1}, {"x": 0.1, "y": 0.2, "w": 0.3, "h": 0.4, "slice": 1}]
            url = reverse("read-answer", args=[ac.token])
            assert client.post(url, json.dumps(body), content_type="application/json").status_code == 200
            if i % 3 == 0:  # a visit after finishing adds telemetry, never changes the answer
                again = {**body, "duration_ms": 9000 + i, "window_changes": 5, "idempotency_key": f"y-{ac.token}"}
                assert client.post(url, json.dumps(again), content_type="application/json").status_code == 200
    # A time with no microseconds is written as Python writes it (no ".000000").
    Read.objects.filter(pk=Read.objects.order_by("pk").first().pk).update(
        started_at=datetime(2026, 12, 4, 1, 2, 3, tzinfo=timezone.utc))

    client.force_login(make_user("ana", ANALYST))
    response = client.get(reverse("analysis-export", args=[study.slug, "answers.csv"]))
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode(), newline="")))
    assert list(rows[0]) == ANSWER_COLUMNS
    reads = {(r.assigned_case.assignment.reader.username, r.assigned_case.position): r for r in
             Read.objects.select_related("assigned_case__assignment__reader", "assigned_case__case__item__generator")}
    assert len(rows) == len(reads) == 4 * 12
    order = [(r["reader"].removeprefix("'"), int(r["position"])) for r in rows]
    assert order == sorted(order)  # by reader, then reading position
    for row in rows:
        read = reads[(row["reader"].removeprefix("'"), int(row["position"]))]
        want = expected_row(study, read)
        if want["marks"]:
            assert json.loads(row["marks"]) == want["marks"]
            row["marks"] = want["marks"]
        assert row == want
    seen = {column: {r[column] for r in rows} for column in ("reader", "comment", "generator", "reader_is_trainee")}
    assert "'=cmd|' /C calc'!A0" in seen["reader"] and "'-minus" in seen["reader"]
    assert {"'=1+1", "'+sum", "'@here", "'-1 looks off", 'a "quoted" word\nand a new line', ""} <= seen["comment"]
    assert "'=HYPERLINK(x) v1" in seen["generator"] and seen["reader_is_trainee"] == {"1", "0", ""}
    assert any(r["duration_with_revisits_ms"] != r["duration_ms"] for r in rows)
    assert "2026-12-04T01:02:03+00:00" in {r["started_at"] for r in rows}
