"""Shared by the benchmark scripts: the machine's name and how results are printed and saved."""

import platform
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
