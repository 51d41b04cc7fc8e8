"""Pool files no row refers to: what a killed import or preparation leaves behind (see `manage.py gc_pool`),
and uploaded files no import job will use again.

A process killed between writing a file and committing its row (SIGKILL, power loss) leaves the file:
`storage.pool_files` removes files only when it sees their rows fail. Nothing else can tell an orphan
from a file whose row is about to commit, so temporaries younger than `min_age` seconds are left alone
(an import still running), and orphans are listed before anything is deleted.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from . import storage
from .models import PoolItem, Rendition


@dataclass
class PoolGarbage:
    orphan_masters: list[Path] = field(default_factory=list)  # master files with no pool item
    orphan_renditions: list[Path] = field(default_factory=list)  # rendition folders with no row
    stale_partials: list[Path] = field(default_factory=list)  # temporaries of writes that never finished
    stale_uploads: list[Path] = field(default_factory=list)  # uploaded files no import job will use again
    missing: list[str] = field(default_factory=list)  # rows whose files are gone (reported, never deleted)

    @property
    def paths(self) -> list[Path]:
        return self.orphan_masters + self.orphan_renditions + self.stale_partials + self.stale_uploads

    def size_bytes(self) -> int:
        return sum(_size(p) for p in self.paths)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size if path.exists() else 0


def _young(path: Path, min_age: float, now: float) -> bool:
    try:
        return now - path.lstat().st_mtime < min_age
    except FileNotFoundError:
        return True  # gone meanwhile: nothing to do


def find_garbage(min_age: float = 3600) -> PoolGarbage:
    """What is on disk without a row (and rows without their files), leaving files younger than `min_age`."""
    now = time.time()
    found = PoolGarbage()
    masters = set(PoolItem.objects.values_list("master_file", flat=True))
    renditions = set(Rendition.objects.values_list("directory", flat=True))
    for folder, known, orphans in ((storage.masters_dir(), masters, found.orphan_masters),
                                   (storage.renditions_dir(), renditions, found.orphan_renditions)):
        if not folder.exists():
            continue
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".partial-"):
                if not _young(path, min_age, now):
                    found.stale_partials.append(path)
            elif path.name not in known and not _young(path, min_age, now):
                orphans.append(path)
    for name in sorted(masters):
        if not (storage.masters_dir() / name).exists():
            found.missing.append(f"master {name} of a pool item")
    for name in sorted(renditions):
        if not (storage.renditions_dir() / name).is_dir():
            found.missing.append(f"rendition folder {name}")
    found.stale_uploads = _stale_uploads(min_age, now)
    return found


def _stale_uploads(min_age: float, now: float) -> list[Path]:
    """Upload folders of no import job, of one that succeeded, or of one that ended UPLOAD_KEEP_DAYS ago
    (kept until then for a retry), and spooled uploads of requests that never finished."""
    from django.utils import timezone

    from readerstudy.jobs.models import Job

    from .tasks import upload_dir

    root = Path(settings.UPLOAD_ROOT)
    if not root.exists():
        return []
    expired = timezone.now() - timezone.timedelta(days=settings.UPLOAD_KEEP_DAYS)
    keep = {upload_dir(job).name for job in Job.objects.filter(kind=Job.Kind.IMPORT).exclude(
        status=Job.Status.SUCCEEDED).exclude(finished_at__lt=expired)}
    stale = [p for p in sorted(root.iterdir()) if p.name != ".incoming" and p.name not in keep]
    incoming = root / ".incoming"
    if incoming.is_dir():
        stale += sorted(incoming.iterdir())
    return [p for p in stale if not _young(p, min_age, now)]


def delete_garbage(garbage: PoolGarbage) -> int:
    """Delete what `find_garbage` found (rows are re-checked first: one may have committed since)."""
    masters = set(PoolItem.objects.values_list("master_file", flat=True))
    renditions = set(Rendition.objects.values_list("directory", flat=True))
    removed = 0
    for path in garbage.paths:
        if path.name in masters or path.name in renditions:
            continue
        storage.remove_path(path)
        removed += 1
    return removed
