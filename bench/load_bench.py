"""Load run on loopback: answer-save latency and throughput for 10 and 50 concurrent readers, on SQLite
and PostgreSQL, and image (DICOM slice) serving beside the same bytes from a plain static file server.

Run by hand (not in CI), from the repository root:

    .venv/bin/python bench/load_bench.py [--seconds 20] [--workers 4] [--databases sqlite postgres]
                                         [--write docs/benchmarks.md]

Each run starts gunicorn (sync workers) on 127.0.0.1 with a fresh database, creates a study with
one assignment per simulated reader, and lets every reader (a thread with its own session) autosave
and submit answers as fast as the server answers, for a bounded time.
"""

import argparse
import datetime
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from report import cpu_name, publish  # noqa: E402

PG_URL = "postgres://postgres@127.0.0.1:5432/readerstudy_load"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def manage(env, *args, script=None):
    command = [sys.executable, "manage.py", *args]
    return subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True,
                          input=script).stdout


SETUP = """
from tests.studies import make_pool, open_study_for, readers
from readerstudy.studies.models import AssignedCase
make_pool(real={("CT", "2d"): %(n)d}, synthetic={("CT", "2d"): %(n)d}, size=256)
team = readers(%(readers)d, prefix="load")
for user in team:
    user.set_password("load-password-1"); user.save()
study = open_study_for(team, {("CT", "2d"): %(cases)d}, name="Load")
"""


WORKER_ARGS = []  # gunicorn worker options (--worker-class ...), set from the command line


def start_server(env, workers):
    port = free_port()
    process = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "readerstudy.wsgi", "-w", str(workers), "-b", f"127.0.0.1:{port}",
         "--timeout", "120", "--log-level", "warning", "--preload", *WORKER_ARGS], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if requests.get(url + "/healthz", timeout=5).ok:
                return process, url
        except requests.RequestException:  # workers still importing
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not start")


def login(url, username):
    session = requests.Session()
    session.get(url + "/accounts/login/")
    session.post(url + "/accounts/login/", data={"username": username, "password": "load-password-1",
                                                  "csrfmiddlewaretoken": session.cookies["csrftoken"]})
    return session


def reader_loop(url, username, tokens, start, seconds, latencies, errors, floor=False):
    """One reader autosaving and submitting as fast as answered; with `floor`, the same requests to the
    floor view (one UPDATE; bench/floor_urls.py) instead of the answer endpoint."""
    session = login(url, username)
    headers = {"X-CSRFToken": session.cookies["csrftoken"], "Content-Type": "application/json"}
    start.wait()  # everyone logged in: the clock starts now
    stop_at = time.monotonic() + seconds
    n = 0
    while time.monotonic() < stop_at:
        token = tokens[min(n // 2, len(tokens) - 1)]
        body = {"label": "fake", "confidence": 1 + n % 5, "realism": 1 + n % 4, "anatomy": 2,
                "submit": n % 2 == 1 and n // 2 < len(tokens), "idempotency_key": f"{username}-{n:07d}"}
        target = f"{url}/bench/floor/{token}" if floor else f"{url}/read/case/{token}/answer"
        start = time.perf_counter()
        response = session.post(target, data=json.dumps(body), headers=headers)
        latencies.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            errors.append(response.status_code)
        n += 1


def slice_loop(get, stop_at, counter):
    while time.monotonic() < stop_at:
        get()
        counter.append(1)


def run_database(kind, args, results):
    data = Path(tempfile.mkdtemp(prefix=f"load-{kind}-"))
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "floor_settings", "READERSTUDY_DATA_DIR": str(data),
           "DJANGO_SECURE_COOKIES": "0", "READERSTUDY_TASKS_BACKEND": "immediate",
           "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost", "PYTHONPATH": f"{ROOT}:{ROOT / 'bench'}"}
    if kind == "postgres":
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", "DROP DATABASE IF EXISTS readerstudy_load"],
                       check=True, capture_output=True)
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", "CREATE DATABASE readerstudy_load"],
                       check=True, capture_output=True)
        env["DATABASE_URL"] = PG_URL
    manage(env, "migrate", "--noinput")
    max_readers = max(args.readers)
    manage(env, "shell", script=SETUP % {"n": 60, "readers": max_readers, "cases": 100})
    tokens = json.loads(manage(env, "shell", "-c", (
        "import json; from readerstudy.studies.models import AssignedCase as A; d={}\n"
        "for u, t in A.objects.order_by('position').values_list('assignment__reader__username', 'token'):\n"
        "    d.setdefault(u, []).append(t)\n"
        "print(json.dumps(d))")).strip().splitlines()[-1])
    process, url = start_server(env, args.workers)
    try:
        for n_readers in args.readers:
            row = [kind, n_readers]
            for floor in (False, True):
                latencies, errors = [], []
                users = sorted(tokens)[:n_readers]
                start = threading.Barrier(len(users))
                threads = [threading.Thread(target=reader_loop, args=(url, u, tokens[u], start, args.seconds,
                                                                      latencies, errors, floor))
                           for u in users]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                q = statistics.quantiles(latencies, n=20)
                row += [len(latencies) / args.seconds, statistics.median(latencies), q[18], len(errors)]
            results.append(tuple(row))
        if kind == "sqlite":
            results.append(("slices", *image_serving(url, tokens, env, data, args)))
    finally:
        process.terminate()
        process.wait()
        shutil.rmtree(data, ignore_errors=True)


def image_serving(url, tokens, env, data, args):
    """Requests/s for one 256x256 slice through Django, with the view's decisions remembered
    (reading/served_files.py, the default) and without, beside the same file from `python -m http.server`."""
    user = sorted(tokens)[0]
    token = tokens[user][0]
    path = f"/read/case/{token}/slices/1"
    body = login(url, user).get(url + path).content
    static = Path(tempfile.mkdtemp(prefix="load-static-"))
    (static / "0001.dcm").write_bytes(body)
    port = free_port()
    plain = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=static,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    unremembered, plain_url = start_server({**env, "READERSTUDY_SERVED_FILE_AUTHORISATION_SECONDS": "0"},
                                           args.workers)
    time.sleep(1)
    out = []
    try:
        runs = (("remembered", url + path, lambda: login(url, user)),
                ("view", plain_url + path, lambda: login(plain_url, user)),
                ("static", f"http://127.0.0.1:{port}/0001.dcm", requests.Session))
        for name, target, make_get in runs:
            counter = []
            sessions = [make_get() for _ in range(8)]
            for session in sessions:
                assert session.get(target).content == body  # warm up every connection and worker
            stop_at = time.monotonic() + args.seconds / 2
            threads = [threading.Thread(target=slice_loop, args=(lambda s=s: s.get(target).content, stop_at, counter))
                       for s in sessions]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            out.append(len(counter) / (args.seconds / 2))
    finally:
        plain.terminate()
        unremembered.terminate()
        unremembered.wait()
        shutil.rmtree(static, ignore_errors=True)
    return len(body), *out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--readers", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--threads", type=int, default=0,
                        help="gthread workers with this many threads each (keep-alive); 0: sync workers")
    parser.add_argument("--write")
    args = parser.parse_args()
    if args.threads:
        WORKER_ARGS.extend(["--worker-class", "gthread", "--threads", str(args.threads)])
    results = []
    for kind in args.databases:
        run_database(kind, args, results)
    lines = [
        f"## Load on loopback — {datetime.date.today()}",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs (load generator and server share them); gunicorn "
        f"{args.workers} {f'gthread workers of {args.threads} threads' if args.threads else 'sync workers'}; {args.seconds:.0f} s per run. Command: `.venv/bin/python bench/load_bench.py "
        f"--seconds {args.seconds:.0f} --workers {args.workers}"
        f"{f' --threads {args.threads}' if args.threads else ''}`.",
        "",
        "Floor: the same authenticated JSON POSTs to a view doing one indexed UPDATE (bench/floor_urls.py), "
        "right after the saves, on the same server.",
        "",
        "| database | readers | saves/s | p50 ms | p95 ms | errors | floor/s | floor p50 ms | floor p95 ms | "
        "saves vs floor |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r[0] != "slices":
            lines.append(f"| {r[0]} | {r[1]} | {r[2]:.0f} | {r[3]:.1f} | {r[4]:.1f} | {r[5]} | {r[6]:.0f} | "
                         f"{r[7]:.1f} | {r[8]:.1f} | {r[6] / r[2]:.1f}x slower |")
    for r in results:
        if r[0] == "slices":
            lines += ["", f"Image serving, one {r[1]:,}-byte canonical slice, 8 clients: Django with the view's "
                          f"decision remembered (the default) {r[2]:.0f} requests/s; every request through the view "
                          f"{r[3]:.0f} requests/s; the same bytes from `python -m http.server` {r[4]:.0f} requests/s."]
    lines.append("")
    publish(lines, args.write)


if __name__ == "__main__":
    main()
