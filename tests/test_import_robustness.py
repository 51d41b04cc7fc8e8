"""No input breaks the importer: every file gets its own outcome, whatever its decoder raises (issue 14)."""

import os
import signal
import socket

import nibabel as nib
import numpy as np
import pydicom
import pytest

from readerstudy.imaging.importing import discover_sources, import_path, ImportOptions
from readerstudy.imaging.models import PoolItem

from .conftest import DATA, copy_to, pydicom_file
from .test_import_errors import assert_pool_consistent

pytestmark = pytest.mark.django_db


def one_byte_element(tmp_path, name, tag: bytes):
    """CT_small.dcm (explicit VR little endian) with a US element shortened to one byte."""
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()  # each its own series, not grouped with the others
    path = tmp_path / name
    ds.save_as(path)
    data = bytearray(path.read_bytes())
    at = data.find(tag + b"US\x02\x00")
    assert at > 0
    data[at + 6:at + 8] = b"\x01\x00"
    del data[at + 9]
    path.write_bytes(bytes(data))
    return path


def series_with_bad_frames(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    for i in range(3):
        ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
        ds.SOPInstanceUID = f"1.2.3.4.{i + 1}"
        ds.ImagePositionPatient = [0, 0, float(i)]
        ds.InstanceNumber = i + 1
        if i == 1:
            ds.NumberOfFrames = "9"
        ds.save_as(folder / f"{i}.dcm")
        if i == 1:  # pydicom refuses to write a malformed IS value: patch it into the file
            data = (folder / f"{i}.dcm").read_bytes()
            assert data.count(b"\x28\x00\x08\x00IS\x02\x009 ") == 1
            (folder / f"{i}.dcm").write_bytes(data.replace(b"\x28\x00\x08\x00IS\x02\x009 ", b"\x28\x00\x08\x00IS\x02\x001A"))
    return folder


def nifti(tmp_path, name, data, affine=None, sform_zero=False):
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), path)
    if sform_zero:  # nibabel rewrites the sform from the affine on saving: patch the header instead
        raw = bytearray(path.read_bytes())
        raw[252:254] = np.int16(0).tobytes()  # qform_code: unknown
        raw[254:256] = np.int16(1).tobytes()  # sform_code: scanner
        raw[280:328] = bytes(48)  # srow_x, srow_y, srow_z all zero
        path.write_bytes(bytes(raw))
        assert not nib.load(path).header.get_sform()[:3].any()
    return path


def rgb24_nifti(tmp_path):
    rgb = np.zeros((8, 8, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"] = 200
    return nifti(tmp_path, "rgb.nii", rgb)


@pytest.fixture
def corpus(tmp_path):
    """(path, expected fragment of the message) for inputs each decoder used to raise an odd exception on."""
    return [
        (one_byte_element(tmp_path, "rows-1-byte.dcm", b"\x28\x00\x10\x00"), "Rows"),
        (one_byte_element(tmp_path, "samples-1-byte.dcm", b"\x28\x00\x02\x00"), "SamplesPerPixel"),
        (rgb24_nifti(tmp_path), "RGB"),
        (nifti(tmp_path, "zero-sform.nii", np.random.default_rng(0).random((8, 8, 6)).astype("f4"), sform_zero=True),
         "orientation"),
    ]


def test_every_odd_decoder_error_is_one_failed_file(corpus, tmp_path, real_dataset, pool_dirs):
    options = ImportOptions(modality="MR", dataset=real_dataset)
    for path, fragment in corpus:
        report = import_path(path, options)
        (outcome,) = report.outcomes
        assert outcome.status == "failed", (path.name, outcome)
        assert fragment.lower() in outcome.message.lower(), (path.name, outcome.message)
        assert "Traceback" not in outcome.message
    # The same files in one folder, with a good one between them: the batch goes on to the end.
    folder = tmp_path / "batch"
    folder.mkdir()
    for path, _ in corpus:
        copy_to(folder, path)
    copy_to(folder, pydicom_file("MR_small.dcm"))
    report = import_path(folder, options)
    assert report.count("failed") == len(corpus) and report.count("imported") == 1, report.as_dict()
    assert PoolItem.objects.count() == 1
    assert_pool_consistent(pool_dirs)


def test_a_bad_frame_count_in_a_series_folder_fails_that_file_only(tmp_path, real_dataset):
    folder = series_with_bad_frames(tmp_path)
    report = import_path(folder, ImportOptions(modality="CT", dataset=real_dataset))
    statuses = sorted(o.status for o in report.outcomes)
    assert "imported" in statuses, report.as_dict()
    failed = [o for o in report.outcomes if o.status == "failed"]
    assert len(failed) == 1 and "1.dcm" in failed[0].source and "NumberOfFrames" in failed[0].message


def test_special_and_empty_files_in_a_folder_each_get_a_message(tmp_path, real_dataset):
    folder = tmp_path / "mixed"
    folder.mkdir()
    copy_to(folder, pydicom_file("MR_small.dcm"), "ünïcødé MR.dcm")
    (folder / "empty.dcm").write_bytes(b"")
    os.mkfifo(folder / "pipe")
    (folder / "loop").symlink_to(folder / "loop")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "sock"))

    def hangs(signum, frame):
        raise TimeoutError("the import hangs on a special file")

    previous = signal.signal(signal.SIGALRM, hangs)
    signal.alarm(60)
    try:
        report = import_path(folder, ImportOptions(modality="MR", dataset=real_dataset))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    done = [report]
    by_name = {o.source: o for o in done[0].outcomes}
    assert by_name["ünïcødé MR.dcm"].status == "imported", by_name
    assert "empty" in by_name["empty.dcm"].message
    assert "not a regular file" in by_name["pipe"].message
    assert "not a regular file" in by_name["sock"].message
    assert "link" in by_name["loop"].message
    assert all(o.status == "failed" for name, o in by_name.items() if name != "ünïcødé MR.dcm")
    server.close()


def test_an_unreadable_file_is_named(tmp_path, real_dataset, monkeypatch):
    folder = tmp_path / "locked"
    folder.mkdir()
    copy_to(folder, pydicom_file("MR_small.dcm"), "a.dcm")
    locked = copy_to(folder, pydicom_file("MR_small.dcm"), "b.dcm")
    real_open = open

    def guarded(file, *args, **kwargs):  # tests run as root, where chmod 000 does not stop reading
        if str(file) == str(locked):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", guarded)
    report = import_path(folder, ImportOptions(modality="MR", dataset=real_dataset))
    by_name = {o.source: o for o in report.outcomes}
    assert by_name["b.dcm"].status == "failed" and "permission denied" in by_name["b.dcm"].message.lower()
    assert by_name["a.dcm"].status == "imported"


def test_messages_name_the_cause_and_the_files(tmp_path, real_dataset):
    from readerstudy.imaging.decoders.dicom import _short

    ct = ImportOptions(modality="CT", dataset=real_dataset)
    # A JPEG 2000 file cut or damaged inside its pixel data.
    raw = (DATA / "emri_small_jpeg_2k_lossless.dcm").read_bytes()
    pixels_at = raw.find(b"\xe0\x7f\x10\x00")
    (tmp_path / "cut.dcm").write_bytes(raw[: (pixels_at + len(raw)) // 2])
    (outcome,) = import_path(tmp_path / "cut.dcm", ct).outcomes
    assert outcome.status == "failed" and outcome.message.startswith("pixel data cannot be decoded"), outcome
    # A Rescale Slope that is not a number.
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.RescaleSlope = "1"
    ds.save_as(tmp_path / "slope.dcm")
    data = (tmp_path / "slope.dcm").read_bytes()
    at = data.find(b"\x28\x00\x53\x10DS\x02\x001 ")
    (tmp_path / "slope.dcm").write_bytes(data[:at + 8] + b"x " + data[at + 10:])
    (outcome,) = import_path(tmp_path / "slope.dcm", ct).outcomes
    assert outcome.message == "RescaleSlope 'x' is not a number", outcome
    # Two copies of one slice in a series: the files are named.
    folder = tmp_path / "dup"
    folder.mkdir()
    for k in range(3):
        ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
        ds.SOPInstanceUID = f"1.2.{k}"
        ds.save_as(folder / f"slice{k}.dcm")
    (outcome,) = import_path(folder, ct).outcomes
    assert "slice0.dcm, slice1.dcm, slice2.dcm (instance 1)" in outcome.message, outcome
    # pydicom's "raised by all available plugins:" heading gives way to the plugins' reasons.
    exc = RuntimeError("Unable to decode the pixel data as the following exceptions were raised by all "
                       "available plugins:\n  pylibjpeg: the codestream ends early\n  gdcm: no gdcm")
    assert _short(exc) == "pylibjpeg: the codestream ends early; gdcm: no gdcm"


def write_series(folder, specs):
    """Single-frame CT files of one series UID: specs are (name, z position, echo, orientation)."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = pydicom.uid.generate_uid()
    for number, (name, z, echo, orientation) in enumerate(specs, start=1):
        ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber = number
        ds.ImagePositionPatient = [0.0, 0.0, float(z)]
        ds.ImageOrientationPatient = list(orientation)
        if echo is not None:
            ds.EchoNumbers = echo
        ds.save_as(folder / name)


AXIAL, CORONAL, SAGITTAL = (1, 0, 0, 0, 1, 0), (1, 0, 0, 0, 0, -1), (0, 1, 0, 0, 0, -1)


def test_one_series_uid_holding_several_stacks_is_split(tmp_path, real_dataset):
    # A dual-echo series, its echoes interleaved file by file, and a three-plane localizer.
    write_series(tmp_path / "echoes", [(f"{i}.dcm", i // 2, 1 + i % 2, AXIAL) for i in range(8)])
    write_series(tmp_path / "localizer", [(f"{p}{z}.dcm", z, None, o) for p, o in
                                         (("a", AXIAL), ("c", CORONAL), ("s", SAGITTAL)) for z in range(3)])
    report = import_path(tmp_path, ImportOptions(modality="CT", dataset=real_dataset))
    by_label = {o.source: o for o in report.outcomes}
    assert sorted(by_label) == ["echoes/ (series of 4 files, echo 1)", "echoes/ (series of 4 files, echo 2)",
                                "localizer/ (series of 3 files, plane 1 of 3)",
                                "localizer/ (series of 3 files, plane 2 of 3)",
                                "localizer/ (series of 3 files, plane 3 of 3)"], by_label
    assert all(o.status == "imported" for o in report.outcomes), report.as_dict()
    assert sorted(PoolItem.objects.values_list("master_shape", flat=True)) == [[3, 128, 128]] * 3 + [[4, 128, 128]] * 2


def test_missing_slices_import_with_a_warning(tmp_path, real_dataset):
    write_series(tmp_path / "gappy", [(f"{z}.dcm", z, None, AXIAL) for z in (0, 1, 2, 5, 6)])
    (outcome,) = import_path(tmp_path / "gappy", ImportOptions(modality="CT", dataset=real_dataset)).outcomes
    assert outcome.status == "imported"
    assert "warning: slice positions have 1 gap(s) wider than 1.5x the usual 1 mm (after 2.dcm)" in outcome.message
    assert PoolItem.objects.get().source_info["warnings"]


def test_zero_bytes_are_not_parsed_as_millions_of_dicom_elements(tmp_path):
    """A file of zeros reads as (0000,0000) elements, 8 bytes each: pydicom would parse a 2 GB one for hours."""
    from readerstudy.imaging.decoders.base import UnreadableImage
    from readerstudy.imaging.decoders.dicom import read_header

    zeros = tmp_path / "zeros.dcm"
    zeros.write_bytes(bytes(1 << 20))
    with pytest.raises(UnreadableImage, match="holds no data elements"):
        read_header(zeros)


def test_zero_padding_after_the_pixel_data_ends_the_data_set(tmp_path, import_file):
    padded = copy_to(tmp_path, pydicom_file("CT_small.dcm"), "padded.dcm")
    with open(padded, "ab") as fh:
        fh.write(bytes(64 * 1024))
    from readerstudy.imaging.decoders.dicom import read_header

    assert "PixelData" in read_header(padded) and (0, 0) not in read_header(padded)
    report = import_file(padded, modality="CT")
    assert report.items_created == 1, report.summary()


def test_a_2_gb_sparse_file_of_zeros_is_refused_with_a_reason(tmp_path, import_file):
    big = tmp_path / "big.nii"
    with open(big, "wb") as fh:
        fh.truncate(2 * 10**9)
    report = import_file(big, modality="CT")
    assert report.count("failed") == 1 and not PoolItem.objects.exists()
    assert "not a supported image file" in report.outcomes[0].message


def test_an_image_needing_more_memory_than_the_import_budget_is_refused_before_decoding(
        import_file, tmp_path, settings, monkeypatch):
    volume = np.random.default_rng(3).random((64, 64, 64)).astype("f4")  # 262,144 values: about 3 MB to import
    path = nifti(tmp_path, "volume.nii", volume)
    settings.IMPORT_MEMORY_MB = 2
    decoded = []
    monkeypatch.setattr(nib.Nifti1Image, "get_fdata", lambda *a, **k: decoded.append(1))
    report = import_file(path)
    (outcome,) = report.outcomes
    assert outcome.status == "failed" and decoded == []
    assert "needs about" in outcome.message and "READERSTUDY_IMPORT_MEMORY_MB" in outcome.message
    monkeypatch.undo()
    settings.IMPORT_MEMORY_MB = 16
    assert import_file(path).items_created == 1
