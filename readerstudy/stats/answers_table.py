"""The answers CSV as one query: every column, its text and its formula guard computed by the database.

A million answers must stream about as fast as the database can write them (issue 13, point 11;
bench/export_bench.py). Python formatting a row costs more than the database reading it, so the
columns are SQL expressions: PostgreSQL writes the CSV itself (`COPY (query) TO STDOUT`), and other
databases hand finished values to one `csv.writer.writerows` per chunk.
"""

import csv
import io

from django.db import connection
from django.db.models import Case, CharField, F, Func, IntegerField, Q, Value, When
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce, Concat

from readerstudy.studies.scales import CONFIDENCE_ANCHORS, LABEL_OPTIONS

from .data import submitted_reads

# A text cell starting with one of these is run as a formula by spreadsheets (CSV injection): readers'
# comments and names are free text. Such cells are prefixed with an apostrophe; numbers are left alone.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

ANSWER_COLUMNS = [
    "study", "reader", "reader_years_experience", "reader_is_trainee", "case", "case_role", "repeat_of",
    "position", "session", "modality", "dimensionality", "truth", "generator",
    "label", "label_text", "confidence", "confidence_text",
    "realism", "realism_text", "anatomy", "anatomy_text", "slice_consistency", "slice_consistency_text",
    "fakeness_score", "duration_ms", "slices_visited", "window_changes", "started_at", "submitted_at", "revision",
    "marks", "comment", "duration_with_revisits_ms", "window_changes_with_revisits",
]
CRITERIA = ("realism", "anatomy", "slice_consistency")
CHUNK_ROWS = 5000


class ArrayLength(Func):
    """Length of a JSON array (0 for SQL NULL, JSON null or anything that is not an array)."""

    output_field = IntegerField()

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="COALESCE(json_array_length(%(expressions)s), 0)", **extra)

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="CASE WHEN jsonb_typeof(%(expressions)s) = 'array' "
                           "THEN jsonb_array_length(%(expressions)s) ELSE 0 END", **extra)


class NonEmptyMarks(Func):
    """The `marks` list of an answer's extras as JSON text, '' where there are none."""

    output_field = CharField()

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="CASE WHEN json_array_length(%(expressions)s, '$.marks') > 0 "
                           "THEN json_extract(%(expressions)s, '$.marks') ELSE '' END", **extra)

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="CASE WHEN jsonb_typeof(%(expressions)s -> 'marks') = 'array' "
                           "AND jsonb_array_length(%(expressions)s -> 'marks') > 0 "
                           "THEN (%(expressions)s -> 'marks')::text ELSE '' END", **extra)


class IsoTime(Func):
    """A stored time as Python's isoformat() writes it in UTC: 2026-12-04T01:02:03.456789+00:00."""

    output_field = CharField()

    def as_sqlite(self, compiler, connection, **extra):
        # Django stores SQLite times as str() of the UTC time (isoformat with a space): swap it for the T.
        return self.as_sql(compiler, connection, template="(REPLACE(%(expressions)s, ' ', 'T') || '+00:00')", **extra)

    def as_postgresql(self, compiler, connection, **extra):
        utc = "(%(expressions)s AT TIME ZONE 'UTC')"
        return self.as_sql(
            compiler, connection, template=(
                f"CASE WHEN MOD(EXTRACT(MICROSECONDS FROM {utc})::int, 1000000) = 0 "
                f"THEN to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS\"+00:00\"') "
                f"ELSE to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"') END"), **extra)


def _guarded(field: str):
    """The text of `field`, apostrophe-prefixed where a spreadsheet would run it as a formula."""
    risky = Q()
    for start in FORMULA_START:
        risky |= Q(**{f"{field}__startswith": start})
    return Case(When(risky, then=Concat(Value("'"), F(field), output_field=CharField())), default=F(field),
                output_field=CharField())


def _text_of(field: str, texts: dict):
    """The anchor text of a coded answer ('' where there is none)."""
    return Case(*(When(**{field: value}, then=Value(text)) for value, text in texts.items()),
                default=Value(""), output_field=CharField())


def option_texts(config) -> dict:
    """For each coded answer, its value -> the text the reader saw (scales as 'A: text')."""
    texts = {"label": {o["value"]: o["text"] for o in LABEL_OPTIONS},
             "confidence": {i + 1: t for i, t in enumerate(CONFIDENCE_ANCHORS)}}
    for criterion, options in config["questions"]["scales"].items():
        texts[criterion] = {o["value"]: f"{o['code']}: {o['text']}" for o in options}
    return texts


def answers_queryset(study, config):
    """The submitted answers of a (non-forced-choice) study as value tuples in ANSWER_COLUMNS order."""
    texts = option_texts(config)
    case, assignment = "assigned_case__case", "assigned_case__assignment"
    weight = Coalesce(F("confidence"), Value(1), output_field=IntegerField())
    columns = {
        "x_study": Value(study.slug, output_field=CharField()),
        "x_reader": _guarded("x_reader_name"),
        "x_years": F(f"{assignment}__reader__reader_profile__years_experience"),
        "x_trainee": Case(When(**{f"{assignment}__reader__reader_profile__is_trainee": True}, then=Value(1)),
                          When(**{f"{assignment}__reader__reader_profile__is_trainee": False}, then=Value(0)),
                          default=None, output_field=IntegerField()),
        "x_case": F("assigned_case__case_id"),
        "x_role": F(f"{case}__role"),
        "x_repeat_of": F(f"{case}__repeat_of_id"),
        "x_position": F("assigned_case__position"),
        "x_session": F("assigned_case__session"),
        "x_modality": F(f"{case}__item__modality"),
        "x_dimensionality": F(f"{case}__item__dimensionality"),
        "x_truth": F(f"{case}__item__origin"),
        "x_generator": _guarded("x_generator_name"),
        "x_label": F("label"),
        "x_label_text": _text_of("label", texts["label"]),
        "x_confidence": F("confidence"),
        "x_confidence_text": _text_of("confidence", texts["confidence"]),
    }
    for criterion in CRITERIA:
        columns[f"x_{criterion}"] = F(criterion)
        columns[f"x_{criterion}_text"] = _text_of(criterion, texts.get(criterion, {}))
    columns.update({
        "x_fakeness": Case(When(label="fake", then=weight), When(label="real", then=-weight),
                           When(label="unsure", then=Value(0)), default=None, output_field=IntegerField()),
        "x_duration": F("duration_ms"),
        "x_slices": ArrayLength(F("slices_visited")),
        "x_window_changes": F("window_changes"),
        "x_started": IsoTime(F("started_at")),
        "x_submitted": IsoTime(F("submitted_at")),
        "x_revision": F("revision"),
        "x_marks": NonEmptyMarks(F("answers")),
        "x_comment": _guarded("x_comment_text"),
        # duration_ms and window_changes are as submitted; these add visits after finishing the case
        "x_duration_revisits": Coalesce(Cast(KT("telemetry_after_submit__duration_ms"), IntegerField()),
                                        F("duration_ms"), output_field=IntegerField()),
        "x_window_changes_revisits": Coalesce(Cast(KT("telemetry_after_submit__window_changes"), IntegerField()),
                                              F("window_changes"), output_field=IntegerField()),
    })
    generator = f"{case}__item__generator"
    return (
        submitted_reads(study)
        .annotate(
            x_reader_name=F(f"{assignment}__reader__username"),
            x_generator_name=Case(When(**{f"{generator}__isnull": False},
                                       then=Concat(F(f"{generator}__name"), Value(" v"), F(f"{generator}__version"),
                                                   output_field=CharField())),
                                  default=Value(""), output_field=CharField()),
            x_comment_text=Coalesce(KT("answers__comment"), Value(""), output_field=CharField()),
        )
        .annotate(**columns)
        .values_list(*columns)
    )


def answers_csv_chunks(study, config):
    """The answers CSV (header first) as text chunks of up to CHUNK_ROWS rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(ANSWER_COLUMNS)
    queryset = answers_queryset(study, config)
    if connection.vendor == "postgresql":
        yield buffer.getvalue()
        yield from _copied(queryset)
        return
    rows = []
    for row in queryset.iterator(chunk_size=CHUNK_ROWS):
        rows.append(row)
        if len(rows) == CHUNK_ROWS:
            writer.writerows(rows)
            rows.clear()
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    writer.writerows(rows)
    yield buffer.getvalue()


def _copied(queryset):
    """PostgreSQL writes the rows of `queryset` as CSV itself, streamed block by block."""
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        statement = f"COPY ({cursor.mogrify(sql, params)}) TO STDOUT WITH (FORMAT csv)"
        with cursor.copy(statement) as copy:
            for block in copy:
                yield bytes(block).decode()
