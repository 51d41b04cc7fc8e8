"""The rows of consecutive good sources go in one transaction (imaging/importing.py `_commit_batch`); each
source is still all or nothing, a duplicate of a source not yet committed is found as a duplicate, a
failing commit fails only its own source, and a lost job attempt leaves nothing behind."""

import numpy as np
import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext
from PIL import Image

from readerstudy.imaging import importing
from readerstudy.imaging.models import PoolItem
from readerstudy.jobs.progress import JobLost

from .conftest import pool_files

pytestmark = pytest.mark.django_db


def pngs(folder, n, start=0):
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(start, start + n):
        values = np.random.default_rng(k).integers(0, 256, (40, 40), dtype=np.uint8)
        Image.fromarray(values).save(folder / f"x{k:02d}.png")
    return folder


def consistent(pool_root):
    masters, _ = pool_files(pool_root)
    return sorted(p.name for p in masters) == sorted(PoolItem.objects.values_list("master_file", flat=True))


def test_many_sources_are_committed_in_one_transaction_in_order(import_file, tmp_path, pool_dirs):
    folder = pngs(tmp_path / "in", 6)
    with CaptureQueriesContext(connection) as queries:
        report = import_file(folder, "XR")
    assert [o.status for o in report.outcomes] == ["imported"] * 6
    assert [o.source for o in report.outcomes] == [f"x{k:02d}.png" for k in range(6)]
    inserts = [q for q in queries.captured_queries if q["sql"].startswith('INSERT INTO "imaging_poolitem"')]
    assert len(inserts) == 1  # one statement for the six sources' rows
    ids = [i for o in report.outcomes for i in o.item_ids]
    assert sorted(ids) == sorted(PoolItem.objects.values_list("pk", flat=True)) and len(set(ids)) == 6
    assert consistent(pool_dirs)


def test_a_duplicate_of_a_source_not_yet_committed_is_skipped_as_a_duplicate(import_file, tmp_path, pool_dirs):
    folder = pngs(tmp_path / "in", 3)
    (folder / "x99.png").write_bytes((folder / "x01.png").read_bytes())  # the same file again, same batch
    report = import_file(folder, "XR")
    assert {o.source: o.status for o in report.outcomes} == {"x00.png": "imported", "x01.png": "imported",
                                                             "x02.png": "imported", "x99.png": "skipped"}
    assert PoolItem.objects.count() == 3 and consistent(pool_dirs)


def test_a_commit_that_fails_fails_its_own_source_only(import_file, tmp_path, pool_dirs, monkeypatch):
    folder = pngs(tmp_path / "in", 5)
    real = importing.commit_pool_items

    def refuses_x02(staged):
        if any(entry.fields["source_name"] == "x02.png" for entry in staged):
            raise IntegrityError("simulated constraint failure")
        return real(staged)

    monkeypatch.setattr(importing, "commit_pool_items", refuses_x02)
    report = import_file(folder, "XR")
    status = {o.source: (o.status, o.message) for o in report.outcomes}
    assert status["x02.png"] == ("failed", "cannot be imported: IntegrityError: simulated constraint failure")
    assert [s for s, _ in status.values()].count("imported") == 4
    assert PoolItem.objects.count() == 4 and consistent(pool_dirs)  # its file is gone with it


def test_a_lost_job_attempt_commits_nothing_and_leaves_no_file(import_file, tmp_path, pool_dirs, monkeypatch):
    folder = pngs(tmp_path / "in", 4)

    def lost(staged):
        raise JobLost(1, 1)

    monkeypatch.setattr(importing, "commit_pool_items", lost)
    with pytest.raises(JobLost):
        import_file(folder, "XR")
    assert PoolItem.objects.count() == 0 and consistent(pool_dirs)
