"""What the web process costs to start and to keep: URL conf import time and a gunicorn worker's memory,
beside importing torch + diffusers alone (what each worker carried before they were kept out of it).

Run by hand (not in CI), from the repository root:

    .venv/bin/python bench/web_process_bench.py [--runs 5] [--write docs/benchmarks.md]
"""

import argparse
import datetime
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from report import cpu_name, publish  # noqa: E402

# Prints "<django.setup() seconds> <URL conf seconds after it>".
URLCONF = ("import os, time; os.environ['DJANGO_SETTINGS_MODULE'] = 'readerstudy.settings'; t = time.perf_counter(); "
           "import django; django.setup(); u = time.perf_counter(); from django.urls import get_resolver; "
           "get_resolver().url_patterns; print(u - t, time.perf_counter() - u)")
HEAVY = "import time; t = time.perf_counter(); import torch, diffusers; print(time.perf_counter() - t)"


def seconds(code: str, env: dict) -> list[float]:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return [float(v) for v in out.stdout.strip().splitlines()[-1].split()]


def worker_rss_mb(env: dict) -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(ROOT / ".venv/bin/gunicorn"), "readerstudy.wsgi", "-w", "1", "-b",
                               f"127.0.0.1:{port}", "--log-level", "warning"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                if requests.get(f"http://127.0.0.1:{port}/accounts/login/", timeout=5).ok:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        status = Path(f"/proc/{children[0]}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024
    finally:
        server.terminate()
        server.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write")
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="bench-web-")
    env = {**os.environ, "READERSTUDY_DATA_DIR": data, "DJANGO_SECURE_COOKIES": "0", "PYTHONPATH": str(ROOT),
           "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    runs = [seconds(URLCONF, env) for _ in range(args.runs)]
    setup = statistics.median(r[0] for r in runs)
    urlconf = statistics.median(r[1] for r in runs)
    whole = statistics.median(r[0] + r[1] for r in runs)
    heavy = statistics.median(seconds(HEAVY, env)[0] for _ in range(args.runs))
    rss = worker_rss_mb(env)
    publish([
        f"## Web process start-up and memory — {datetime.date.today()}",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs. Command: `.venv/bin/python bench/web_process_bench.py "
        f"--runs {args.runs}`. Medians of {args.runs} fresh interpreters.",
        "",
        "| what | value |",
        "|---|---|",
        f"| `django.setup()` (settings, apps, models, admin) | {setup:.2f} s |",
        f"| then the whole URL conf (every view module; target under 0.5 s) | {urlconf:.2f} s |",
        f"| both | {whole:.2f} s |",
        f"| `import torch, diffusers` alone (what the URL conf used to pull in) | {heavy:.2f} s |",
        f"| one gunicorn sync worker after its first requests (VmRSS; target under 150 MB) | {rss:.0f} MB |",
        "",
    ], args.write)


if __name__ == "__main__":
    main()
