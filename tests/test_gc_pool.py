"""manage.py gc_pool: files a killed import left behind are listed, and deleted only when asked."""

import os
import time

import numpy as np
import pytest
from django.core.management import call_command

from readerstudy.imaging import storage
from readerstudy.imaging.models import PoolItem, Rendition
from readerstudy.imaging.pool import ensure_rendition

from .conftest import pydicom_file
from .test_import_errors import assert_pool_consistent

pytestmark = pytest.mark.django_db


def aged(path, seconds=7200):
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_gc_pool_lists_then_deletes_only_orphans(import_file, pool_dirs, capsys):
    import_file(pydicom_file("CT_small.dcm"), "CT")
    item = PoolItem.objects.get()
    ensure_rendition(item, 64, 64, 1)  # as a study's preparation writes it
    # What SIGKILL between writing and committing leaves: a master and a rendition folder with no row,
    # temporaries of unfinished writes; one young temporary is an import still running.
    orphan_master = aged(storage.masters_dir() / storage.save_master(np.zeros((1, 4, 4), np.uint16)))
    orphan_rendition = storage.renditions_dir() / storage.new_token()
    orphan_rendition.mkdir()
    (orphan_rendition / "0001.dcm").write_bytes(b"x")
    aged(orphan_rendition)
    stale = storage.masters_dir() / ".partial-abc.npy"
    stale.write_bytes(b"half")
    aged(stale)
    young = storage.renditions_dir() / ".partial-running"
    young.mkdir()

    call_command("gc_pool")
    out = capsys.readouterr().out
    assert str(orphan_master) in out and str(orphan_rendition) in out and str(stale) in out
    assert str(young) not in out and item.master_file not in out
    assert "3 to collect" in out and orphan_master.exists()  # listing deletes nothing

    call_command("gc_pool", "--delete")
    assert "Deleted 3 of 3" in capsys.readouterr().out
    assert not orphan_master.exists() and not orphan_rendition.exists() and not stale.exists()
    assert young.exists()
    young.rmdir()
    assert_pool_consistent(pool_dirs)
    assert (storage.masters_dir() / item.master_file).exists() and Rendition.objects.count() == 1
    call_command("gc_pool")
    assert "Nothing to collect" in capsys.readouterr().out


def test_gc_pool_reports_rows_whose_files_are_gone(import_file, capsys):
    import_file(pydicom_file("CT_small.dcm"), "CT")
    item = PoolItem.objects.get()
    (storage.masters_dir() / item.master_file).unlink()
    call_command("gc_pool", "--delete")
    err = capsys.readouterr().err
    assert f"master {item.master_file}" in err and PoolItem.objects.count() == 1


def test_gc_pool_keeps_uploads_a_retry_needs_and_collects_the_rest(settings, capsys):
    from django.utils import timezone

    from readerstudy.jobs.models import Job

    root = settings.UPLOAD_ROOT
    (root / ".incoming").mkdir(parents=True)

    def upload(name, status=None, finished_days_ago=None):
        folder = root / name
        folder.mkdir()
        (folder / "00000_a.dcm").write_bytes(b"x")
        aged(folder)
        if status:
            Job.objects.create(kind=Job.Kind.IMPORT, status=status, params={"upload_dir": name},
                               finished_at=timezone.now() - timezone.timedelta(days=finished_days_ago or 0))
        return folder

    retryable = upload("staged-failed-yesterday", Job.Status.FAILED, 1)
    running = upload("staged-running", Job.Status.RUNNING)
    expired = upload("staged-failed-long-ago", Job.Status.FAILED, settings.UPLOAD_KEEP_DAYS + 1)
    succeeded = upload("staged-succeeded", Job.Status.SUCCEEDED)
    vanished = upload("staged-no-job")  # the request that staged it was killed before its row committed
    spooled = root / ".incoming" / "tmpabc.upload.dcm"
    spooled.write_bytes(b"half an upload")
    aged(spooled)
    call_command("gc_pool", "--delete")
    out = capsys.readouterr().out
    assert "uploaded files no import will use" in out
    assert retryable.exists() and running.exists() and (root / ".incoming").is_dir()
    assert not expired.exists() and not succeeded.exists() and not vanished.exists() and not spooled.exists()
