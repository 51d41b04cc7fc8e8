"""Coordinator progress page and reader endpoints on a big study: 50 readers x 2,000 cases.

Run by hand (not in CI), from the repository root:

    .venv/bin/python bench/study_bench.py [--readers 50] [--cases 2000] [--write docs/benchmarks.md]

Builds the study in a throw-away SQLite database (pool rows without image files:
only the database work is measured), answers half of every reader's cases, then
times the progress page, the reader's resume redirect and the answer endpoint.
"""

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "readerstudy.settings")
os.environ.setdefault("READERSTUDY_DATA_DIR", tempfile.mkdtemp(prefix="bench-"))
os.environ.setdefault("DJANGO_SECURE_COOKIES", "0")
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver")

import django  # noqa: E402
from report import cpu_name, publish  # noqa: E402

django.setup()

from django.contrib.auth.models import Group, User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402

from generation.models import Generator  # noqa: E402
from readerstudy.imaging.models import Dataset, Origin, PoolItem  # noqa: E402
from readerstudy.reading.models import Read  # noqa: E402
from readerstudy.studies.lifecycle import create_study  # noqa: E402
from readerstudy.studies.models import AssignedCase, Study  # noqa: E402
from readerstudy.studies.sampling import Draw, assign_readers, write_cases  # noqa: E402


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def build(n_readers: int, n_cases: int) -> Study:
    call_command("migrate", verbosity=0)
    real = Dataset.objects.create(name="bench", origin=Origin.REAL, licence="none")
    generator = Generator.objects.create(name="bench", kind=Generator.Kind.EXTERNAL, modalities=["CT"])
    synthetic = Dataset.objects.create(name="bench synthetic", origin=Origin.SYNTHETIC, licence="none")
    PoolItem.objects.bulk_create([
        PoolItem(modality="CT", dimensionality="2d", origin=Origin.REAL if i % 2 else Origin.SYNTHETIC,
                 dataset=real if i % 2 else synthetic, generator=None if i % 2 else generator,
                 master_file=f"bench-{i}.npy", master_shape=[1, 64, 64], native_shape=[1, 64, 64])
        for i in range(n_cases)
    ])
    study = create_study(name="Bench", config={
        "strata": [{"modality": "CT", "dimensionality": "2d", "cases": n_cases}],
        "questions": {"confidence": True, "template": "none"}}, seed=1)
    write_cases(study, Draw(regular=[(item, "CT/2d") for item in PoolItem.objects.all()], calibration=[], repeats=[],
                            presets={"CT/2d": [64, 64, 1]}))
    group = Group.objects.get(name="reader")
    readers = []
    for i in range(n_readers):
        user = User.objects.create_user(f"bench{i:03d}", password="bench-password")
        user.groups.add(group)
        readers.append(user)
    assign_readers(study, readers)
    now = timezone.now()
    Read.objects.bulk_create([
        Read(assigned_case=case, label="fake", confidence=3, duration_ms=4000 + case.position, submitted_at=now,
             started_at=now, revision=1, idempotency_key=f"bench-{case.pk}")
        for case in AssignedCase.objects.filter(position__lte=n_cases // 2)
    ], batch_size=5000)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.OPEN, opened_at=now)
    return Study.objects.get(pk=study.pk)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=50)
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--write", help="append a results section to this Markdown file")
    args = parser.parse_args()

    start = time.perf_counter()
    study = build(args.readers, args.cases)
    build_s = time.perf_counter() - start

    coordinator = User.objects.create_user("bench-coordinator", password="x")
    coordinator.groups.add(Group.objects.get(name="coordinator"))
    staff = Client()
    staff.force_login(coordinator)
    progress_url = reverse("study-progress", args=[study.slug])
    assert staff.get(progress_url).status_code == 200
    progress = timed(lambda: staff.get(progress_url), args.repeat)

    reader = User.objects.get(username="bench000")
    client = Client()
    client.force_login(reader)
    resume_url = reverse("read-study", args=[study.slug])
    resume = timed(lambda: client.get(resume_url), args.repeat)
    token = client.get(resume_url).url.rstrip("/").rsplit("/", 1)[1]
    viewer = timed(lambda: client.get(reverse("read-case", args=[token])), args.repeat)
    keys = iter(range(10**6))
    answer_url = reverse("read-answer", args=[token])
    save = timed(lambda: client.post(answer_url, json.dumps(
        {"label": "real", "confidence": 1 + next(keys) % 5, "idempotency_key": f"save-{next(keys):08d}"}),
        content_type="application/json"), args.repeat)

    def row(name, values):
        return f"| {name} | {statistics.median(values):.1f} | {max(values):.1f} |"

    cpu = cpu_name()
    lines = [
        f"## Study pages at scale — {datetime.date.today()}",
        "",
        f"Machine: {cpu}, {os.cpu_count()} CPUs; SQLite (WAL); "
        f"{args.readers} readers x {args.cases} cases = {args.readers * args.cases:,} assigned cases, half answered. "
        f"Django test client in-process (no network). Built in {build_s:.1f} s. "
        f"Command: `.venv/bin/python bench/study_bench.py --readers {args.readers} --cases {args.cases}`.",
        "",
        f"| request ({args.repeat} runs) | median ms | max ms |",
        "|---|---|---|",
        row("coordinator progress page (all readers)", progress),
        row("reader resume redirect", resume),
        row("reader viewer page", viewer),
        row("answer autosave (POST)", save),
        "",
    ]
    publish(lines, args.write)


if __name__ == "__main__":
    main()
