"""The database write lock is held only for row writes: pool files, renditions and uploads are written first.

On SQLite every transaction takes the one write lock (IMMEDIATE), so anything slow inside one
makes readers' answer saves wait (and fail after the busy timeout). The load itself, a 2 GB upload and
a preparation beside ten readers saving, is measured by `bench/write_lock_bench.py`.
"""

import os

import nibabel as nib
import numpy as np
import pytest
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.db import connection

from readerstudy.imaging import canonical, storage
from readerstudy.imaging.importing import ImportOptions, Layout, import_path
from readerstudy.imaging.models import Dataset, Origin, PoolItem
from readerstudy.imaging.pool import ensure_rendition, rerender
from readerstudy.studies.lifecycle import create_study, prepare_study

from .studies import make_pool

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def writes(monkeypatch):
    """Whether a transaction was open at each pool file write (master arrays, canonical series)."""
    seen = []
    for module, name in ((canonical, "write_canonical_series"), (storage, "save_master")):
        real = getattr(module, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            seen.append((_name, connection.in_atomic_block))
            return _real(*args, **kwargs)
        monkeypatch.setattr(module, name, spy)
    return seen


def outside(seen) -> bool:
    assert seen, "no pool file was written"
    return all(not in_transaction for _, in_transaction in seen)


def test_imports_write_every_file_before_their_transaction(tmp_path, writes):
    volume = np.random.default_rng(1).normal(40, 30, (40, 40, 12)).astype(np.float32)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.diag([0.8, 0.8, 2.5, 1])), path)
    dataset = Dataset.objects.create(name="ct", origin=Origin.REAL, licence="CC0")
    report = import_path(path, ImportOptions(modality="CT", dataset=dataset, layout=Layout.SLICES, slices=6))
    assert report.items_created == 6 == PoolItem.objects.count(), report.summary()
    # Masters only: the served series are rendered when a study needs them (at preparation).
    assert {name for name, _ in writes} == {"save_master"} and len(writes) == 6
    assert outside(writes)


def test_generated_items_renditions_and_preparation_write_files_outside_transactions(writes):
    make_pool(real={("CT", "3d"): 2}, synthetic={("CT", "3d"): 2}, size=32, depth=8)
    item = PoolItem.objects.first()
    rendition = ensure_rendition(item, 24, 24, 6)
    rerender(rendition)
    study = create_study(name="Prepared", seed=3, config={"strata": [
        {"modality": "CT", "dimensionality": "3d", "cases": 4}], "matrix": {"size": 20, "depth": 5}})
    before = len(writes)
    prepare_study(study)
    assert len(writes) > before  # the study's own matrix was rendered
    assert outside(writes)


def test_a_failed_row_write_removes_the_files_written_for_it(writes):
    from django.db import IntegrityError

    make_pool(real={("CT", "2d"): 1}, synthetic={}, size=32)
    files_before = sorted(p.name for p in storage.pool_root().rglob("*"))
    with pytest.raises(IntegrityError):  # the same source again: its files are written, then its row fails
        make_pool(real={("CT", "2d"): 1}, synthetic={}, size=32)
    assert len(writes) == 2  # one master each time
    assert sorted(p.name for p in storage.pool_root().rglob("*")) == files_before
    assert PoolItem.objects.count() == 1


def test_uploads_are_staged_by_a_rename_outside_the_transaction(settings, monkeypatch):
    from readerstudy.imaging import tasks

    moved = []
    real_move = tasks.file_move_safe
    monkeypatch.setattr(tasks, "file_move_safe",
                        lambda src, dst: (moved.append(connection.in_atomic_block), real_move(src, dst)))
    monkeypatch.setattr("readerstudy.jobs.queue.enqueue_job", lambda job_id: True)  # staging is the subject
    upload = TemporaryUploadedFile("big.nii", "application/octet-stream", 0, None)
    with open(upload.temporary_file_path(), "r+b") as fh:  # 2 GB, sparse: nothing is copied
        fh.truncate(2 * 10**9)
    inode = os.stat(upload.temporary_file_path()).st_ino
    job = tasks.create_upload_job({"uploads": [upload], "dataset": None, "new_dataset": "big", "licence": "CC0",
                                   "source": "", "modality": "CT", "body_part": "", "layout": "auto",
                                   "slices": None})
    staged = next((settings.UPLOAD_ROOT / job.params["upload_dir"]).iterdir())
    assert moved == [False] and staged.stat().st_ino == inode and staged.stat().st_size == 2 * 10**9
    upload.close()
