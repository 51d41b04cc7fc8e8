"""A database trigger that refuses any change to an answer that bypasses `reading.answers.save_answer`.

The one door (page and API alike) keeps the previous state as a ReadRevision, bumps the
revision and, for finished cases, writes an audit event. The trigger holds whatever the door:
a shell, a script, `QuerySet.update()` or raw SQL. An UPDATE of `reading_read` is refused when

- an answer field changes without the revision going up by exactly one, or without the
  previous state kept as a ReadRevision (unless there was nothing to keep);
- the revision goes down;
- a finished case loses or moves its finishing time, or its decision telemetry changes
  (later visits are kept in `telemetry_after_submit`).

Model-history libraries were considered: django-simple-history sees only `save()`, and
django-pghistory's triggers are PostgreSQL-only, while SQLite is the default database here.
"""

from django.db import migrations

MESSAGE = "an answer changes only through reading.answers.save_answer, which keeps its revision"
ANSWER = ("label", "confidence", "realism", "anatomy", "slice_consistency", "answers")
FROZEN_AFTER_SUBMIT = ("submitted_at", "duration_ms", "window_changes", "slices_visited")


def _had_answer(empty_json: str) -> str:
    """SQL: the old row held something worth keeping (what save_answer snapshots as a ReadRevision)."""
    return ("(OLD.revision > 0 OR OLD.label <> '' OR OLD.confidence IS NOT NULL OR OLD.realism IS NOT NULL "
            f"OR OLD.anatomy IS NOT NULL OR OLD.slice_consistency IS NOT NULL OR OLD.answers <> {empty_json})")


KEPT = ("EXISTS (SELECT 1 FROM reading_readrevision r WHERE r.read_id = OLD.id AND r.revision = OLD.revision)")


def _sqlite() -> list[str]:
    def differs(fields):
        return " OR ".join(f"NEW.{f} IS NOT OLD.{f}" for f in fields)

    had = _had_answer("'{}'")
    return [f"""
CREATE TRIGGER reading_read_guard BEFORE UPDATE ON reading_read FOR EACH ROW WHEN
    NEW.revision < OLD.revision
    OR (({differs(ANSWER)}) AND (NEW.revision <> OLD.revision + 1 OR ({had} AND NOT {KEPT})))
    OR (OLD.submitted_at IS NOT NULL AND ({differs(FROZEN_AFTER_SUBMIT)}))
BEGIN
    SELECT RAISE(ABORT, '{MESSAGE}');
END;"""]


def _postgresql() -> list[str]:
    def row(prefix, fields):
        return "(" + ", ".join(f"{prefix}.{f}" for f in fields) + ")"

    had = _had_answer("'{}'::jsonb")
    return [f"""
CREATE FUNCTION reading_read_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.revision < OLD.revision
       OR ({row('NEW', ANSWER)} IS DISTINCT FROM {row('OLD', ANSWER)}
           AND (NEW.revision <> OLD.revision + 1 OR ({had} AND NOT {KEPT})))
       OR (OLD.submitted_at IS NOT NULL
           AND {row('NEW', FROZEN_AFTER_SUBMIT)} IS DISTINCT FROM {row('OLD', FROZEN_AFTER_SUBMIT)}) THEN
        RAISE EXCEPTION USING ERRCODE = 'integrity_constraint_violation', MESSAGE = '{MESSAGE}';
    END IF;
    RETURN NEW;
END $$;""", """
CREATE TRIGGER reading_read_guard BEFORE UPDATE ON reading_read
    FOR EACH ROW EXECUTE FUNCTION reading_read_guard();"""]


def create_guard(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    statements = {"sqlite": _sqlite, "postgresql": _postgresql}.get(vendor)
    if statements is None:
        raise RuntimeError(f"no answer guard written for {vendor}; add one before using this database")
    for sql in statements():
        schema_editor.execute(sql)


def drop_guard(apps, schema_editor):
    schema_editor.execute("DROP TRIGGER IF EXISTS reading_read_guard" +
                          (" ON reading_read" if schema_editor.connection.vendor == "postgresql" else ""))
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS reading_read_guard()")


class Migration(migrations.Migration):
    dependencies = [("reading", "0003_alter_read_options")]

    operations = [migrations.RunPython(create_guard, drop_guard)]
