"""The answer save's own cost, in process (no network, no server): milliseconds and queries per save
beside the one-UPDATE floor of bench/floor_urls.py, through the same middleware and session.

Run by hand (not in CI), from the repository root:

    .venv/bin/python bench/save_path_bench.py [--trees . /path/to/older/checkout] [--saves 200]
                                              [--write docs/benchmarks.md]

Each checkout runs in a fresh interpreter with its own data folder: one reader, a 60-case study that
allows going back. "First answers" are an autosave then a submission of each case in order; "edits"
change finished answers (each keeps a revision and an audit event). Times are the best of 7 rounds
in each of `--repeat` fresh interpreters per checkout, the checkouts taken in turn.
bench/load_bench.py measures the same saves over HTTP under concurrency.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from report import cpu_name, publish  # noqa: E402
from write_lock_bench import revision  # noqa: E402

MEASURE = r"""
import json, os, sys, time
import django
from django.conf import settings
django.setup()
settings.ROOT_URLCONF = "floor_urls"
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from tests.studies import make_pool, open_study_for, readers
from readerstudy.studies.models import AssignedCase

SAVES = int(sys.argv[1])
make_pool(real={("CT", "2d"): 30}, synthetic={("CT", "2d"): 30}, size=64)
team = readers(1, prefix="bench")
open_study_for(team, {("CT", "2d"): 60}, name="Save path", reading={"allow_back": True})
client = Client()
client.force_login(team[0])
tokens = list(AssignedCase.objects.order_by("position").values_list("token", flat=True))
counter = iter(range(10**9))

def save(token, submit, label):
    n = next(counter)
    body = {"label": label, "confidence": 1 + n % 5, "realism": 1 + n % 4, "anatomy": 2, "submit": submit,
            "idempotency_key": f"k-{n:08d}"}
    response = client.post(f"/read/case/{token}/answer", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content

def floor(i):
    response = client.post(f"/bench/floor/{tokens[i % len(tokens)]}", data=b'{"label": "real"}',
                           content_type="application/json")
    assert response.status_code == 200

def best(fn, count, rounds=7):
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for i in range(count):
            fn(i)
        times.append((time.perf_counter() - started) / count * 1000)
    return min(times)

def first_answers(i):  # one case per two calls: autosave, then submit
    save(tokens[i // 2], i % 2 == 1, "fake")

with CaptureQueriesContext(connection) as first_q:
    first_answers(0); first_answers(1)
first_queries = len(first_q.captured_queries) / 2  # counted now: the query log is a bounded deque
started = time.perf_counter()
for i in range(2, 2 * len(tokens)):
    first_answers(i)
first = (time.perf_counter() - started) / (2 * len(tokens) - 2) * 1000
labels = dict.fromkeys(tokens, "fake")

def edit(i):  # every edit flips the case's label: a change, kept as a revision with an audit event
    token = tokens[i % len(tokens)]
    labels[token] = "real" if labels[token] == "fake" else "fake"
    save(token, True, labels[token])

edits = best(edit, SAVES)
with CaptureQueriesContext(connection) as edit_q:
    edit(0)
edit_queries = len(edit_q.captured_queries)
print(json.dumps({"first": first, "edit": edits, "floor": best(floor, SAVES),
                  "first_queries": first_queries, "edit_queries": edit_queries}))
"""


def measure(tree: Path, saves: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="save-path-") as data:
        env = {**os.environ, "READERSTUDY_DATA_DIR": data, "DJANGO_SETTINGS_MODULE": "readerstudy.settings",
               "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "save-path-bench-key-0123456789abcdef",
               "DJANGO_ALLOWED_HOSTS": "testserver", "DJANGO_SECURE_COOKIES": "0",
               "PYTHONPATH": os.pathsep.join([str(tree), str(ROOT / "bench")])}
        env.pop("DATABASE_URL", None)
        done = subprocess.run([sys.executable, "-c", MEASURE, str(saves)], cwd=tree, env=env, capture_output=True,
                              text=True)
    if done.returncode:
        raise RuntimeError(f"{tree}: {done.stderr[-3000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "revision": revision(tree)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", nargs="+", default=[str(ROOT)])
    parser.add_argument("--saves", type=int, default=200, help="saves per round")
    parser.add_argument("--repeat", type=int, default=3,
                        help="fresh interpreters per checkout, taken in turn (the machine drifts); best kept")
    parser.add_argument("--write")
    args = parser.parse_args()
    runs = {tree: [] for tree in args.trees}
    for _ in range(args.repeat):
        for tree in args.trees:
            runs[tree].append(measure(Path(tree).resolve(), args.saves))
    results = [{**rs[0], **{k: min(r[k] for r in rs) for k in ("first", "edit", "floor")}} for rs in runs.values()]
    lines = [
        f"## Answer save in process — {datetime.date.today()}",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs; SQLite. Command: `.venv/bin/python bench/save_path_bench.py "
        f"--trees {' '.join(args.trees)} --saves {args.saves} --repeat {args.repeat}`. Django's test client, one "
        "reader, 60 cases; best of the runs, taken in turn; queries include session and user.",
        "",
        "| revision | first answer ms | queries | edit ms | queries | floor ms | edit vs floor |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['revision']} | {r['first']:.2f} | {r['first_queries']:g} | {r['edit']:.2f} | "
                     f"{r['edit_queries']} | {r['floor']:.2f} | {r['edit'] / r['floor']:.1f}x |")
    lines.append("")
    publish(lines, args.write)


if __name__ == "__main__":
    main()
