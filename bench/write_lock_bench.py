"""Answer saves beside heavy background work on SQLite: ten readers saving while a 2 GB upload arrives and
a study is prepared (its volumes rendered) by the job worker.

Run by hand (not in CI), from the repository root:

    .venv/bin/python bench/write_lock_bench.py [--trees . /path/to/older/checkout] [--readers 10]
                                               [--upload-gb 2] [--write docs/benchmarks.md]

For each checkout (`git worktree add /tmp/old <rev>` and a `.venv` link give an older one), in a fresh
data folder: gunicorn (2 gthread workers of 4 threads, as in the README) and `db_worker` from that
checkout; an open study with one assignment per reader and a draft study of CT volumes. The readers
(threads with their own sessions) autosave and submit for `--seconds` with nothing else running (the
baseline), then again while a coordinator uploads a sparse file of `--upload-gb` through the API (curl) and
prepares the draft study, until both jobs have finished. Saves slower than 1 s and failed saves are
counted; on SQLite every transaction holds the one write lock, so work done inside a transaction shows
up here as waiting saves.
"""

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from load_bench import free_port  # noqa: E402
from report import cpu_name, publish  # noqa: E402

PASSWORD = "write-lock-password-1"
SETUP = """
from django.contrib.auth.models import Group, User
from readerstudy.accounts.roles import COORDINATOR
from readerstudy.studies.lifecycle import create_study
from tests.studies import make_pool, open_study_for, readers
make_pool(real={("CT", "2d"): 30, ("CT", "3d"): %(volumes)d}, synthetic={("CT", "2d"): 30, ("CT", "3d"): %(volumes)d},
          size=256, depth=%(depth)d)
team = readers(%(readers)d, prefix="lock")
for user in team:
    user.set_password("%(password)s"); user.save()
open_study_for(team, {("CT", "2d"): 60}, name="Reading", reading={"allow_back": True})
coord = User.objects.create_user("lock-coord", password="%(password)s")
coord.groups.add(Group.objects.get(name=COORDINATOR))
create_study(name="To prepare", seed=5, created_by=coord, config={"strata": [
    {"modality": "CT", "dimensionality": "3d", "cases": %(cases)d}], "matrix": {"size": 256, "depth": 96}})
"""


def manage(tree, env, *args, script=None):
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=tree, env=env, capture_output=True, text=True,
                          input=script)
    if done.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def login(url, username):
    session = requests.Session()
    session.get(url + "/accounts/login/")
    session.post(url + "/accounts/login/", data={"username": username, "password": PASSWORD,
                                                  "csrfmiddlewaretoken": session.cookies["csrftoken"]})
    return session


def reader_loop(session, tokens, state, latencies, errors, name, pause):
    headers = {"X-CSRFToken": session.cookies["csrftoken"], "Content-Type": "application/json"}
    n = 0
    while not state["stop"].is_set():
        # Autosave then finish each case in order; then go back and change finished answers (audited edits).
        token = tokens[(n // 2) % len(tokens)]
        body = {"label": "fake" if n % 4 < 2 else "real", "confidence": 1 + n % 5, "realism": 1 + n % 4,
                "anatomy": 2, "submit": n % 2 == 1, "idempotency_key": f"{name}-{state['phase']}-{n:07d}"}
        started = time.perf_counter()
        try:
            response = session.post(f"{state['url']}/read/case/{token}/answer", data=json.dumps(body),
                                    headers=headers, timeout=120)
            code = response.status_code
        except requests.RequestException as exc:
            code = type(exc).__name__
        latencies[state["phase"]].append((time.perf_counter() - started) * 1000)
        if code != 200:
            errors[state["phase"]].append(code)
        if latencies[state["phase"]][-1] > 1000:
            state["slow"].append((round(time.monotonic() - state["load_started"], 1), state["stage"]))
        n += 1
        time.sleep(pause)


def wait_job(url, headers, job_id, limit=1800):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        job = requests.get(f"{url}/api/v1/jobs/{job_id}/", headers=headers, timeout=30).json()
        if job["status"] in {"succeeded", "failed", "cancelled"}:
            return job
        time.sleep(0.5)
    raise RuntimeError(f"job {job_id} did not finish")


def run_tree(tree: Path, args) -> dict:
    data = Path(tempfile.mkdtemp(prefix="write-lock-"))
    env = {**os.environ, "READERSTUDY_DATA_DIR": str(data), "DJANGO_SECURE_COOKIES": "0",
           "READERSTUDY_TASKS_BACKEND": "database", "DJANGO_SECRET_KEY": "write-lock-bench-key-0123456789",
           "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost", "PYTHONPATH": str(tree),
           "READERSTUDY_JOB_HEARTBEAT_SECONDS": "5", "READERSTUDY_LOGIN_MAX_FAILURES": "1000"}
    env.pop("DATABASE_URL", None)
    processes = []
    try:
        manage(tree, env, "migrate", "--noinput")
        manage(tree, env, "shell", script=SETUP % {"readers": args.readers, "password": PASSWORD, "volumes": 12,
                                                   "depth": 96, "cases": 20})
        tokens = json.loads(manage(tree, env, "shell", "-c", (
            "import json; from readerstudy.studies.models import AssignedCase as A; d={}\n"
            "for u, t in A.objects.order_by('position').values_list('assignment__reader__username', 'token'):\n"
            "    d.setdefault(u, []).append(t)\n"
            "print(json.dumps(d))")).strip().splitlines()[-1])
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        python_bin = Path(sys.executable).parent
        processes.append(subprocess.Popen(
            [str(python_bin / "gunicorn"), "readerstudy.wsgi", "-k", "gthread", "-w", "2", "--threads", "4",
             "-b", f"127.0.0.1:{port}", "--timeout", "600", "--log-level", "warning"], cwd=tree, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        processes.append(subprocess.Popen([sys.executable, "manage.py", "db_worker"], cwd=tree, env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _ in range(600):
            try:
                if requests.get(url + "/healthz", timeout=5).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        token = requests.post(url + "/api/v1/auth/token", json={"username": "lock-coord", "password": PASSWORD},
                              timeout=30).json()["token"]
        api = {"Authorization": f"Token {token}"}
        state = {"stop": threading.Event(), "phase": "baseline", "url": url, "slow": [], "stage": "baseline",
                 "load_started": time.monotonic()}
        latencies, errors = {"baseline": [], "load": []}, {"baseline": [], "load": []}
        threads = [threading.Thread(target=reader_loop, daemon=True,
                                    args=(login(url, name), tokens[name], state, latencies, errors, name, args.pause))
                   for name in sorted(tokens)]
        for t in threads:
            t.start()
        time.sleep(args.seconds)
        # curl sends the sparse file from another process, so the readers' threads here do not
        # compete with the sender for the interpreter lock (their latencies are the server's).
        sparse = data / "big.nii"
        with open(sparse, "wb") as fh:
            fh.truncate(int(args.upload_gb * 1e9))
        state.update(phase="load", stage="upload", load_started=time.monotonic())
        started = time.monotonic()
        upload = subprocess.run(
            ["curl", "-sS", "-H", f"Authorization: Token {token}", "-F", "modality=CT",
             "-F", "new_dataset=sparse upload", "-F", "licence=none", "-F", "layout=auto",
             "-F", f"files=@{sparse};type=application/octet-stream", "-w", "\n%{http_code}",
             url + "/api/v1/pool/upload"], capture_output=True, text=True, timeout=1800)
        upload_s = time.monotonic() - started
        body, _, code = upload.stdout.rpartition("\n")
        if code != "202":
            raise RuntimeError(f"upload refused: {code} {body[:300]} {upload.stderr[:300]}")
        sparse.unlink()
        state["stage"] = "jobs"
        slug = next(s["slug"] for s in requests.get(url + "/api/v1/studies/", headers=api, timeout=30)
                    .json()["results"] if s["name"] == "To prepare")
        prepare = requests.post(f"{url}/api/v1/studies/{slug}/prepare/", headers=api, timeout=60).json()
        import_job = wait_job(url, api, json.loads(body)["id"])
        prepare_job = wait_job(url, api, prepare["id"])
        load_s = time.monotonic() - started
        state["stop"].set()
        for t in threads:
            t.join()
        return {"tree": str(tree), "latencies": latencies, "errors": errors, "upload_s": upload_s,
                "load_s": load_s, "import": (import_job.get("result") or {}).get("summary") or import_job["status"],
                "prepare": prepare_job["status"], "slow": state["slow"],
                "revision": revision(tree)}
    except BaseException:
        traceback.print_exc()
        raise
    finally:
        for process in processes:
            process.terminate()
            process.wait()
        shutil.rmtree(data, ignore_errors=True)


def revision(tree: Path) -> str:
    """The checkout's commit, marked when it has uncommitted changes."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=tree, capture_output=True, text=True).stdout.strip()
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if dirty else "")


def row(result, phase):
    values = result["latencies"][phase]
    q = statistics.quantiles(values, n=100) if len(values) > 1 else values * 99
    slow = sum(v > 1000 for v in values)
    return (f"| {result['revision']} | {phase} | {len(values)} | {statistics.median(values):.0f} | {q[98]:.0f} | "
            f"{max(values):.0f} | {slow} | {failed(result['errors'][phase])} |")


def failed(codes) -> str:
    if not codes:
        return "0"
    counts = {}
    for code in codes:
        counts[code] = counts.get(code, 0) + 1
    return f"{len(codes)} (" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=str)) + ")"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", nargs="+", default=[str(ROOT)])
    parser.add_argument("--readers", type=int, default=10)
    parser.add_argument("--upload-gb", type=float, default=2)
    parser.add_argument("--seconds", type=float, default=15, help="baseline length")
    # A reader's page saves on each change of an answer, a few times per case; every 0.5 s per reader
    # is many times that, yet leaves the server headroom, so a slow save shows waiting, not a full server.
    parser.add_argument("--pause", type=float, default=0.5, help="seconds each reader waits between saves")
    parser.add_argument("--write")
    args = parser.parse_args()
    results = [run_tree(Path(tree).resolve(), args) for tree in args.trees]
    lines = [
        f"## Answer saves beside a {args.upload_gb:g} GB upload and a preparation (SQLite) — {datetime.date.today()}",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs (readers, server, worker and uploader share them); "
        f"{args.readers} readers, each saving {args.pause:g} s after its last save returned; gunicorn 2 gthread workers of 4 threads "
        f"and one `db_worker`. Command: `.venv/bin/python bench/write_lock_bench.py --trees "
        f"{' '.join(args.trees)} --upload-gb {args.upload_gb:g} --pause {args.pause:g}`. Under load: from the start of the upload until "
        "the import (refused: not an image) and the preparation (20 CT volumes rendered at 256x256x96) finished.",
        "",
        "| revision | phase | saves | p50 ms | p99 ms | max ms | over 1 s | failed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        lines += [row(result, "baseline"), row(result, "load")]
    lines.append("")
    for result in results:
        lines.append(f"- {result['revision']}: upload answered in {result['upload_s']:.1f} s, both jobs done "
                     f"{result['load_s']:.1f} s after it started (import: {result['import']}; preparation "
                     f"{result['prepare']}); saves over 1 s at (seconds after the upload began, stage): "
                     f"{result['slow'] or 'none'}.")
    lines.append("")
    publish(lines, args.write)


if __name__ == "__main__":
    main()
