"""The answers CSV export beside the floors the issue names, on SQLite and on PostgreSQL, in one run.

Run by hand (not in CI), from the repository root:

    .venv/bin/python bench/export_bench.py [--answers 1000000] [--databases sqlite postgres] [--write docs/benchmarks.md]

For each database a throw-away study is built (bench/analysis_bench.py's builder: every reader answers
every one of 2,000 cases), then, each to a file on disk:
- ours: the export exactly as a download runs it (stats.exports.streaming_response, consumed in full);
- csv.writer: a bare `csv.writer` loop over a cursor running the same joined query (the rows ours reads,
  written as the driver returns them: no labels, no formula guard, no JSON or time formatting);
- COPY (PostgreSQL): `COPY (the same query) TO STDOUT WITH CSV` through psycopg, the server writing CSV.
Peak resident memory of the process is sampled during each, as growth over the size before it.
"""

import argparse
import csv
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PG_URL = "postgres://postgres@127.0.0.1:5432/readerstudy_export_bench"


def one_database(answers: int, cases: int) -> dict:
    """Runs inside a child whose environment picks the database; prints its results as JSON."""
    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(0, str(HERE))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "readerstudy.settings")
    os.environ.setdefault("READERSTUDY_DATA_DIR", tempfile.mkdtemp(prefix="bench-export-"))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    from analysis_bench import build
    from report import measured

    from readerstudy.stats.data import ANSWER_FIELDS, submitted_reads
    from readerstudy.stats.exports import streaming_response

    start = time.perf_counter()
    study = build(max(1, answers // cases), cases, "export")
    built = time.perf_counter() - start
    out = Path(tempfile.mkdtemp(prefix="bench-export-out-"))
    direct = [name for name, path in ANSWER_FIELDS.items() if name == path]
    from django.db.models import F

    sql, params = (submitted_reads(study).values(*direct, **{n: F(p) for n, p in ANSWER_FIELDS.items() if n != p})
                   .query.sql_with_params())

    def ours():
        with open(out / "ours.csv", "wb") as f:
            for chunk in streaming_response(study, "answers.csv"):
                f.write(chunk)

    def bare_writer():
        with open(out / "bare.csv", "w", newline="") as f, connection.cursor() as cursor:
            cursor.execute(sql, params)
            writer = csv.writer(f)
            while rows := cursor.fetchmany(5000):
                writer.writerows(rows)

    def copy():
        with open(out / "copy.csv", "wb") as f, connection.cursor() as cursor:
            literal = cursor.mogrify(sql, params)
            with cursor.copy(f"COPY ({literal}) TO STDOUT WITH CSV") as stream:
                for block in stream:
                    f.write(block)

    results = {"built_s": built, "vendor": connection.vendor}
    runs = [("ours", ours), ("csv.writer", bare_writer)] + ([("COPY", copy)] if connection.vendor == "postgresql" else [])
    for name, fn in runs:
        seconds, mib, _ = measured(fn)
        path = out / {"ours": "ours.csv", "csv.writer": "bare.csv", "COPY": "copy.csv"}[name]
        with open(path, "rb") as f:
            rows = sum(1 for _ in f)
        results[name] = {"s": seconds, "mib": mib, "rows": rows, "bytes": path.stat().st_size}
    results["rows"] = results["ours"]["rows"] - 1
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=1_000_000)
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--write")
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(one_database(args.answers, args.cases)))
        return

    from report import cpu_name, publish

    found = {}
    for kind in args.databases:
        env = dict(os.environ)
        env.pop("DATABASE_URL", None)
        if kind == "postgres":
            for statement in ("DROP DATABASE IF EXISTS readerstudy_export_bench", "CREATE DATABASE readerstudy_export_bench"):
                subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-c", statement], check=True)
            env["DATABASE_URL"] = PG_URL
        else:
            env["READERSTUDY_DATA_DIR"] = tempfile.mkdtemp(prefix="bench-export-sqlite-")
        child = subprocess.run([sys.executable, __file__, "--child", "--answers", str(args.answers),
                                "--cases", str(args.cases)], env=env, capture_output=True, text=True,
                               timeout=3600)
        line = next((x for x in child.stdout.splitlines() if x.startswith("RESULT ")), None)
        if child.returncode or not line:
            sys.exit(f"{kind} run failed:\n{child.stdout[-3000:]}\n{child.stderr[-3000:]}")
        found[kind] = json.loads(line[len("RESULT "):])

    lines = [
        f"## Answers export against its floors — {datetime.date.today()}",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs. Command: `.venv/bin/python bench/export_bench.py "
        f"--answers {args.answers} --databases {' '.join(args.databases)}`. Each run writes a file on disk; "
        "memory is the process's peak resident growth during the run. The floors read the same joined rows "
        "(ours adds label texts, the formula guard, marks/comment, revisit columns and ISO times).",
        "",
        "| database | rows | ours | csv.writer over the same query | COPY (same query) TO STDOUT | ours / floor |",
        "|---|---|---|---|---|---|",
    ]
    for kind, r in found.items():
        floor = r.get("COPY", r["csv.writer"])
        cells = [f"{r[k]['s']:.1f} s, {r[k]['mib']:.0f} MiB" if k in r else "—" for k in ("ours", "csv.writer", "COPY")]
        lines.append(f"| {kind} | {r['rows']:,} | {' | '.join(cells)} | {r['ours']['s'] / floor['s']:.2f}x "
                     f"{'COPY' if 'COPY' in r else 'csv.writer'} |")
    lines += ["", "Building the data (bulk inserts): " + ", ".join(f"{k} {r['built_s']:.0f} s" for k, r in found.items())
              + ".", ""]
    publish(lines, args.write)


if __name__ == "__main__":
    main()
