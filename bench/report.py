"""Shared by the benchmark scripts: the machine's name and how results are printed and saved."""

import os
import platform
import threading
import time
from pathlib import Path


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                platform.processor() or platform.machine())


def publish(lines: list[str], path: str | None) -> None:
    """Print a Markdown results section and append it to `path` (e.g. docs/benchmarks.md) if given."""
    text = "\n".join(lines)
    print(text)
    if path:
        with open(path, "a") as f:
            f.write("\n" + text)


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measured(fn):
    """(seconds, peak resident-memory growth in MiB, result) of fn(), sampling RSS every 10 ms."""
    base, peak, done = rss_mib(), [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib() - base)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    try:
        result = fn()
    finally:
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
    return seconds, peak[0], result
