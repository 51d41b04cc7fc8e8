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

URLCONF = ("import os, time; os.environ['DJANGO_SETTINGS_MODULE'] = 'readerstudy.settings'; t = time.perf_counter(); "
           "import django; django.setup(); from django.urls import get_resolver; get_resolver().url_patterns; "
           "print(time.perf_counter() - t)")
HEAVY = "import time; t = time.perf_counter(); import torch, diffusers; print(time.perf_counter() - t)"


def seconds(code: str, env: dict) -> float:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


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
    urlconf = statistics.median(seconds(URLCONF, env) for _ in range(args.runs))
    heavy = statistics.median(seconds(HEAVY, env) for _ in range(args.runs))
    rss = worker_rss_mb(env)
    publish([
        f"## Web process start-up and memory — {datetime.date.today()}",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs. Command: `.venv/bin/python bench/web_process_bench.py "
        f"--runs {args.runs}`. Medians of {args.runs} fresh interpreters.",
        "",
        "| what | value |",
        "|---|---|",
        f"| `django.setup()` + the whole URL conf | {urlconf:.2f} s |",
        f"| `import torch, diffusers` alone (what the URL conf used to pull in) | {heavy:.2f} s |",
        f"| one gunicorn sync worker after its first requests (VmRSS) | {rss:.0f} MB |",
        "",
    ], args.write)


if __name__ == "__main__":
    main()
