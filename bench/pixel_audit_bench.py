"""Leak audit (metadata, independence and pixels) of a 2,000-case study, against just reading its files.

Run by hand (not in CI), from the repository root:

    .venv/bin/python bench/pixel_audit_bench.py [--cases 2000] [--write docs/benchmarks.md]

Builds a throw-away pool (five strata, half real half synthetic phantoms: 2D at
256x256, volumes at 64x64x16), draws and renders the study, then times
`run_leak_audit` (what the audit job runs) beside a plain loop that reads every
served file with pydicom and does nothing else.
"""

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "readerstudy.settings")
os.environ.setdefault("READERSTUDY_DATA_DIR", tempfile.mkdtemp(prefix="bench-"))

import django  # noqa: E402
from report import cpu_name, publish  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from django.core.management import call_command  # noqa: E402

from generation.models import Generator  # noqa: E402
from generation.pool import add_synthetic_item  # noqa: E402
from readerstudy.imaging.models import Dataset, Origin  # noqa: E402
from readerstudy.imaging.pool import create_pool_item, rendition_files  # noqa: E402
from readerstudy.studies.config import STRATA, stratum_key  # noqa: E402
from readerstudy.studies.leak_audit import run_leak_audit  # noqa: E402
from readerstudy.studies.pixel_audit import PERMUTATIONS  # noqa: E402
from readerstudy.studies.lifecycle import create_study  # noqa: E402
from readerstudy.studies.sampling import draw_cases, write_cases  # noqa: E402


def phantom(rng, shape):
    d, h, w = shape
    y, x = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    blob = np.exp(-((y - rng.uniform(-.3, .3)) ** 2 + (x - rng.uniform(-.3, .3)) ** 2) * rng.uniform(2, 5))
    return (0.3 + 0.4 * blob[None] + 0.05 * rng.random((d, h, w))).astype(np.float32)


def build(cases: int):
    dataset = Dataset.objects.create(name="bench", origin=Origin.REAL, licence="CC0")
    generator = Generator.objects.create(name="bench", kind=Generator.Kind.EXTERNAL, modalities=["XR", "CT", "MR"])
    rng = np.random.default_rng(0)
    per_stratum = cases // len(STRATA)
    n = 0
    for modality, dims in STRATA:
        shape = (16, 64, 64) if dims == "3d" else (1, 256, 256)
        for k in range(per_stratum):
            values = phantom(rng, shape)
            hu = modality == "CT"
            if k % 2:  # CT samples in [0, 1] span -1024..3071 HU: scaled to the same HU as the real phantoms
                add_synthetic_item(values * 2000 / 4095 if hu else values, modality=modality, generator=generator,
                                   seed=n)
            else:
                create_pool_item(values=values * 2000 - 1024 if hu else values, hounsfield=hu, modality=modality,
                                 origin=Origin.REAL, dataset=dataset, source_sha256=f"{n:064x}")
            n += 1
    study = create_study(name="bench", seed=1, config={"strata": [
        {"modality": m, "dimensionality": d, "cases": per_stratum} for m, d in STRATA]})
    write_cases(study, draw_cases(study))
    study.refresh_from_db()
    from readerstudy.imaging.pool import ensure_rendition

    for case in study.cases.select_related("item"):
        ensure_rendition(case.item, *study.config["presets"][stratum_key(case.item.modality, case.item.dimensionality)])
    return study


def read_only(study) -> int:
    files = 0
    for case in study.cases.select_related("item"):
        preset = study.config["presets"][stratum_key(case.item.modality, case.item.dimensionality)]
        rendition = case.item.renditions.get(rows=preset[0], cols=preset[1], depth=preset[2])
        for path in rendition_files(rendition):
            pydicom.dcmread(path).pixel_array
            files += 1
    return files


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--write")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    start = time.perf_counter()
    study = build(args.cases)
    built = time.perf_counter() - start
    start = time.perf_counter()
    files = read_only(study)
    reading = time.perf_counter() - start
    start = time.perf_counter()
    audit = run_leak_audit(study)
    auditing = time.perf_counter() - start
    strata = ", ".join(f"{k}: classifier AUC {v['classifier'].get('auc')}" for k, v in audit["pixels"].items())
    publish([
        f"## Leak audit with pixels, {args.cases:,} cases ({datetime.date.today()})",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} threads. Command: `.venv/bin/python bench/pixel_audit_bench.py "
        f"--cases {args.cases}`. Five strata, half real half synthetic phantoms (2D 256x256, volumes 64x64x16), "
        f"{files:,} served files; pool built in {built:.0f} s.",
        "",
        "| what | seconds |",
        "|---|---|",
        f"| read every served file with pydicom (floor) | {reading:.1f} |",
        f"| `run_leak_audit`: metadata (axial files and a coronal and sagittal reformat per volume), independence, "
        f"pixel features, duplicates, classifier with "
        f"{PERMUTATIONS} permutations per stratum | {auditing:.1f} |",
        "",
        f"Audit ok: {audit['ok']}; {strata}.",
        "",
    ], args.write)


if __name__ == "__main__":
    main()
