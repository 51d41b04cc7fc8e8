"""CSV exports for analysts, written row by row so a million answers stream in constant memory."""

import csv
import json

from django.db.models import Avg, Count, Q

from readerstudy.studies.config import is_forced_choice, validate_config
from readerstudy.studies.scales import CONFIDENCE_ANCHORS

from .answers_table import FORMULA_START, answers_csv_chunks
from .data import answer_rows, config_hash


class _Echo:
    def write(self, value):
        return value


def _cell(value):
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_START) else value


def csv_lines(rows):
    """Encode an iterable of lists as CSV lines, one at a time, with formula-like text neutralised."""
    writer = csv.writer(_Echo())
    for row in rows:
        yield writer.writerow([_cell(v) for v in row])


def answers_csv(study):
    """The tidy long table, streamed: header, then one row per final answer (calibration and repeats marked).

    Forced-choice studies: one row per answered trial instead (trial_csv_rows). The columns are
    computed by the database (answers_table.py).
    """
    config = validate_config(study.config)
    if is_forced_choice(config):
        return csv_lines(trial_csv_rows(study))
    return answers_csv_chunks(study, config)


TRIAL_COLUMNS = [
    "study", "reader", "trial", "trial_role", "position", "session", "stratum", "alternatives",
    "panel_cases", "panel_truths", "real_panel", "choice", "hit", "confidence", "confidence_text", "generators",
    "duration_ms", "window_changes", "started_at", "submitted_at", "revision",
]


def trial_csv_rows(study):
    """Forced choice: one row per final answer to a trial; panels A, B, ... from the left (cases ;-separated)."""
    from .forced_choice import trial_answers

    texts = {i + 1: t for i, t in enumerate(CONFIDENCE_ANCHORS)}
    yield TRIAL_COLUMNS
    for a in trial_answers(study):
        yield [
            study.slug, a["reader"], a["trial"], a["role"], a["position"], a["session"], a["stratum"],
            a["alternatives"], ";".join(map(str, a["cases"])), ";".join(a["truths"]), _letter(a["real_panel"]),
            _letter(a["choice"]), int(a["hit"]), _blank(a["confidence"]), texts.get(a["confidence"], ""),
            ";".join(a["generators"]), a["duration_ms"], a["window_changes"], _iso(a["started_at"]),
            _iso(a["submitted_at"]), a["revision"],
        ]


def _letter(panel) -> str:
    return "" if panel is None else "ABCD"[panel]


def case_csv_rows(study):
    """One row per case: truth and provenance summary, answer counts and mean ratings."""
    submitted = Q(assigned__read__submitted_at__isnull=False, assigned__assignment__preview=False)
    cases = (
        study.cases.select_related("item", "item__generator", "item__dataset")
        .annotate(
            answers=Count("assigned__read", filter=submitted),
            said_fake=Count("assigned__read", filter=submitted & Q(assigned__read__label="fake")),
            said_real=Count("assigned__read", filter=submitted & Q(assigned__read__label="real")),
            said_unsure=Count("assigned__read", filter=submitted & Q(assigned__read__label="unsure")),
            mean_realism=Avg("assigned__read__realism", filter=submitted),
            mean_anatomy=Avg("assigned__read__anatomy", filter=submitted),
            mean_slice_consistency=Avg("assigned__read__slice_consistency", filter=submitted),
            mean_confidence=Avg("assigned__read__confidence", filter=submitted),
        )
        .order_by("pk")
    )
    yield ["study", "case", "case_role", "repeat_of", "item", "modality", "dimensionality", "truth", "generator",
           "dataset_licence", "answers", "said_fake", "said_real", "said_unsure", "mean_realism", "mean_anatomy",
           "mean_slice_consistency", "mean_confidence"]
    for c in cases.iterator(chunk_size=2000):
        item = c.item
        yield [study.slug, c.pk, c.role, c.repeat_of_id or "", item.public_id, item.modality, item.dimensionality,
               item.origin, str(item.generator) if item.generator else "", item.dataset.licence if item.dataset_id
               else "", c.answers, c.said_fake, c.said_real, c.said_unsure, _round(c.mean_realism),
               _round(c.mean_anatomy), _round(c.mean_slice_consistency), _round(c.mean_confidence)]


IMRMC_MODALITY = "synthetic-detection"


def _header_text(text: str) -> str:
    """Free text for the iMRMC header: one line, and no colon (iMRMC reads "KEY: value" lines as settings)."""
    return " ".join(str(text).replace(":", " -").split())


def imrmc_lines(study):
    """iMRMC input (loads in iMRMC and in RJafroc's DfReadDataFile(format = "iMRMC")).

    Free-text header lines (no colons), NR (readers with scores), N0, N1 (regular cases without and with
    the positive truth), NM, then BEGIN DATA: truth rows `-1,case,0,truth` and score rows
    `reader,case,modality,score`. Case IDs are the integers of cases.csv's `case` column (RJafroc needs
    integers); score = fakeness (detection.fakeness_score), positive (1) = synthetic. Regular cases only.
    """
    from .detection import fakeness_score

    if is_forced_choice(validate_config(study.config)):
        yield ("iMRMC input holds one rating per reader and case; a forced-choice study has none "
               "(its trials are in answers.csv, its hit rates in the analysis)\n")
        return
    regular = study.cases.filter(role="regular").select_related("item").order_by("pk")
    truth = {c.pk: int(c.item.origin == "synthetic") for c in regular}
    scored = [r for r in answer_rows(study) if r["role"] == "regular" and r["label"]]
    yield _header_text(f"Study {study.name} ({study.slug}), exported by the reader-study platform") + "\n"
    yield _header_text("Score = fakeness - fake +confidence, real -confidence, unsure 0; truth 1 = synthetic; "
                       "case IDs as in cases.csv") + "\n"
    yield f"config sha256 {config_hash(study)}\n"
    yield f"NR: {len({r['reader'] for r in scored})}\n"
    yield f"N0: {sum(1 for v in truth.values() if v == 0)}\n"
    yield f"N1: {sum(truth.values())}\n"
    yield "NM: 1\n"
    yield "BEGIN DATA:\n"
    for case_id, value in truth.items():
        yield f"-1,{case_id},0,{value}\n"
    for r in scored:
        yield f"{r['reader']},{r['case_id']},{IMRMC_MODALITY},{fakeness_score(r['label'], r['confidence'])}\n"


def frozen_config(study) -> dict:
    """The study's configuration, cases and reader orders as run, with the configuration's hash."""
    return {
        "study": {"name": study.name, "slug": study.slug, "status": study.status, "seed": study.seed,
                  "opened_at": _iso(study.opened_at), "closed_at": _iso(study.closed_at)},
        "config": study.config,
        "config_sha256": config_hash(study),
        "cases": [
            {"case": c.pk, "role": c.role, "repeat_of": c.repeat_of_id, "trial": c.trial, "item": str(c.item.public_id),
             "modality": c.item.modality, "dimensionality": c.item.dimensionality, "truth": c.item.origin,
             "generator": str(c.item.generator) if c.item.generator_id else None}
            for c in study.cases.select_related("item", "item__generator").order_by("pk")
        ],
        "readers": [{"reader": a.reader.get_username(), "order_seed": a.order_seed}
                    for a in study.assignments.readers().select_related("reader").order_by("reader__username")],
        "leak_audit": study.audit,
    }


def frozen_config_json(study) -> str:
    return json.dumps(frozen_config(study), indent=2, sort_keys=True)


def _blank(value):
    return "" if value is None else value


def _round(value):
    return "" if value is None else round(value, 4)


def _iso(value):
    return value.isoformat() if value else ""


EXPORTS = {
    "answers.csv": ("text/csv", answers_csv),
    "cases.csv": ("text/csv", lambda s: csv_lines(case_csv_rows(s))),
    "input.imrmc": ("text/plain", imrmc_lines),  # iMRMC and RJafroc open *.imrmc
    "imrmc.txt": ("text/plain", imrmc_lines),  # the earlier name, kept for old links (downloads as .imrmc)
    "config.json": ("application/json", lambda s: iter([frozen_config_json(s)])),
}


def streaming_response(study, name: str, actor=None):
    """A streamed download of one export (audit-logged); the file name carries the configuration hash."""
    from django.http import StreamingHttpResponse

    from readerstudy.audit.log import record

    record("export", actor, study, name, config_sha256=config_hash(study))
    content_type, lines = EXPORTS[name]
    response = StreamingHttpResponse(lines(study), content_type=f"{content_type}; charset=utf-8")
    stem, ext = name.rsplit(".", 1)
    if lines is imrmc_lines:
        stem, ext = "input", "imrmc"
    response["Content-Disposition"] = f'attachment; filename="{study.slug}-{stem}-{config_hash(study)[:8]}.{ext}"'
    response["Cache-Control"] = "no-store"
    return response
