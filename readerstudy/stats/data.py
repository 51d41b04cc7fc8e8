"""The raw answers of a study as plain rows: what analysis and exports read."""

import hashlib
import json

from django.db.models import F

from readerstudy.reading.models import Read

# Field name in the row -> ORM path from Read.
ANSWER_FIELDS = {
    "read_id": "pk",
    "reader": "assigned_case__assignment__reader__username",
    "reader_id": "assigned_case__assignment__reader_id",
    "years_experience": "assigned_case__assignment__reader__reader_profile__years_experience",
    "is_trainee": "assigned_case__assignment__reader__reader_profile__is_trainee",
    "case_id": "assigned_case__case_id",
    "role": "assigned_case__case__role",
    "repeat_of": "assigned_case__case__repeat_of_id",
    "position": "assigned_case__position",
    "session": "assigned_case__session",
    "item_id": "assigned_case__case__item_id",
    "item_public_id": "assigned_case__case__item__public_id",
    "modality": "assigned_case__case__item__modality",
    "dimensionality": "assigned_case__case__item__dimensionality",
    "truth": "assigned_case__case__item__origin",
    "generator_name": "assigned_case__case__item__generator__name",
    "generator_version": "assigned_case__case__item__generator__version",
    "label": "label",
    "confidence": "confidence",
    "realism": "realism",
    "anatomy": "anatomy",
    "slice_consistency": "slice_consistency",
    "duration_ms": "duration_ms",
    "window_changes": "window_changes",
    "slices_visited": "slices_visited",
    "telemetry_after_submit": "telemetry_after_submit",
    "started_at": "started_at",
    "submitted_at": "submitted_at",
    "revision": "revision",
    "answers": "answers",
}


def submitted_reads(study):
    """Final answers of a study (drafts excluded), ordered by reader and reading position."""
    return (
        Read.objects.filter(assigned_case__assignment__study=study, assigned_case__assignment__preview=False,
                            submitted_at__isnull=False)
        .order_by("assigned_case__assignment__reader__username", "assigned_case__position")
    )


def answer_rows(study, chunk_size: int = 5000):
    """Yield one dict per final answer, streamed from the database (constant memory)."""
    direct = [name for name, path in ANSWER_FIELDS.items() if name == path]
    aliased = {name: F(path) for name, path in ANSWER_FIELDS.items() if name != path}
    queryset = submitted_reads(study).values(*direct, **aliased)
    for row in queryset.iterator(chunk_size=chunk_size):
        name, version = row.pop("generator_name"), row.pop("generator_version")
        row["generator"] = f"{name} v{version}" if name else ""
        yield row


def answer_values(study, columns: list[str], chunk_size: int = 5000):
    """Yield one tuple per final answer with just `columns` (names of ANSWER_FIELDS), streamed."""
    aliased = {name: F(ANSWER_FIELDS[name]) for name in columns if ANSWER_FIELDS[name] != name}
    yield from submitted_reads(study).annotate(**aliased).values_list(*columns).iterator(chunk_size=chunk_size)


def config_hash(study) -> str:
    """SHA-256 of the study's configuration (canonical JSON), printed with every export."""
    return hashlib.sha256(json.dumps(study.config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
