"""The pipeline shapes real and synthetic pixels alike: framing, intensity rule, grey-level histogram."""

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from generation.config import TrainConfig
from generation.data import build_training_set
from generation.models import Generator
from generation.pool import add_synthetic_item
from readerstudy.imaging import canonical
from readerstudy.imaging.pool import ensure_rendition, rendition_files

from .conftest import master_of

pytestmark = pytest.mark.django_db


def smooth_image(rows=160, cols=200, seed=0) -> np.ndarray:
    """A smooth, non-square test image in [0, 1] (gradient, blobs, fine texture)."""
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    image = 0.3 + 0.2 * x + 0.3 * np.exp(-((y - 0.2) ** 2 + (x + 0.3) ** 2) * 4)
    image += 0.1 * np.sin(7 * x + 3 * y) + 0.02 * rng.standard_normal((rows, cols))
    return ((image - image.min()) / (image.max() - image.min())).astype(np.float32)


def served_codes(item, rows, cols, depth=1) -> np.ndarray:
    rendition = ensure_rendition(item, rows, cols, depth)
    return np.stack([pydicom.dcmread(f).pixel_array for f in rendition_files(rendition)])


def empty_code_fraction(codes: np.ndarray) -> float:
    """Share of the grey codes between the 1st and 99th percentile that no pixel uses."""
    lo, hi = np.percentile(codes, (1, 99)).astype(int)
    counts = np.bincount(codes.ravel().astype(int), minlength=canonical.CODE_MAX + 1)[lo : hi + 1]
    return float((counts == 0).mean())


@pytest.fixture
def generator(db):
    return Generator.objects.create(name="null", kind=Generator.Kind.EXTERNAL, modalities=["XR", "CT", "MR"])


# --- framing ------------------------------------------------------------------------------


@pytest.mark.parametrize("modality", ["XR", "MR"])
def test_training_images_are_framed_exactly_as_readers_are_served(import_file, tmp_path, modality):
    path = tmp_path / "wide.png"
    Image.fromarray((smooth_image() * 65535).astype(np.uint16)).save(path)
    (outcome,) = import_file(path, modality=modality).outcomes
    from readerstudy.imaging.models import PoolItem

    item = PoolItem.objects.get(pk=outcome.item_ids[0])
    config = TrainConfig(dims=2, modalities=[modality], resolution=32)
    data = build_training_set(config)
    assert tuple(data.images.shape) == (1, 1, 32, 32)  # the whole field of view, no crop margin
    trained = np.rint((data.images[0, 0].numpy() + 1) / 2 * canonical.CODE_MAX).astype(int)
    framed = canonical.frame_codes(master_of(item), 32, 32, 1)[0].astype(int)
    assert np.abs(trained - framed).max() <= 1
    # What a reader is served at that matrix is the same framing (the percentile rule re-applied).
    served = served_codes(item, 32, 32)[0].astype(int)
    assert np.corrcoef(served.ravel(), framed.ravel())[0, 1] > 0.999


def test_volume_training_resamples_the_whole_depth(import_file, tmp_path):
    volume = np.stack([smooth_image(40, 40, seed=k) * (1 + k / 20) for k in range(20)]) * 1000
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(np.transpose(volume, (2, 1, 0)).astype(np.float32), np.eye(4)), path)
    (outcome,) = import_file(path, modality="MR", layout="volume").outcomes
    from readerstudy.imaging.models import PoolItem

    item = PoolItem.objects.get(pk=outcome.item_ids[0])
    data = build_training_set(TrainConfig(dims=3, modalities=["MR"], resolution=16, depth=8))
    assert tuple(data.images.shape) == (1, 1, 8, 16, 16)
    trained = np.rint((data.images[0, 0].numpy() + 1) / 2 * canonical.CODE_MAX).astype(int)
    assert np.abs(trained - canonical.frame_codes(master_of(item), 16, 16, 8).astype(int)).max() <= 1
    assert data.groups == [item.source_group]


# --- one intensity rule ---------------------------------------------------------------------


@pytest.mark.parametrize("modality", ["XR", "MR"])
def test_imported_and_generated_images_get_the_same_intensity_rule(import_file, tmp_path, generator, modality):
    image = smooth_image()
    path = tmp_path / "float.nii"
    nib.save(nib.Nifti1Image(image.T[:, :, None] * 800 + 100, np.eye(4)), path)  # float, arbitrary units
    (outcome,) = import_file(path, modality=modality).outcomes
    from readerstudy.imaging.models import PoolItem

    real = PoolItem.objects.get(pk=outcome.item_ids[0])
    # The same picture from a generator, in its own [0, 1] range (not stretched by anybody).
    sample = image[::-1, ::-1] * 0.6 + 0.15  # NIfTI import flips both axes into radiological order
    synthetic = add_synthetic_item(sample, modality=modality, generator=generator, seed=1)
    assert np.abs(master_of(real).astype(int) - master_of(synthetic).astype(int)).max() <= 1  # float rounding
    for item in (real, synthetic):
        codes = master_of(item)
        assert 0.003 < (codes == 0).mean() < 0.007 and 0.003 < (codes == canonical.CODE_MAX).mean() < 0.007


def test_ct_keeps_exact_hounsfield_units_for_every_origin(generator):
    hu = np.rint(smooth_image(64, 64) * 1500 - 1000)
    synthetic = add_synthetic_item((hu + 1024) / canonical.CODE_MAX, modality="CT", generator=generator, seed=2)
    np.testing.assert_array_equal(master_of(synthetic)[0].astype(int), hu.astype(int) + 1024)


def test_served_saturation_does_not_depend_on_downsampling(generator):
    """A large real image reduced to the matrix and a sample made at it both end with ~0.5% saturated."""
    big = add_synthetic_item(smooth_image(256, 256), modality="XR", generator=generator, seed=3)
    small = add_synthetic_item(smooth_image(64, 64, seed=4), modality="XR", generator=generator, seed=4)
    for item in (big, small):
        served = served_codes(item, 64, 64)
        assert 0.002 < (served == 0).mean() < 0.01 and 0.002 < (served == canonical.CODE_MAX).mean() < 0.01


# --- histogram comb -------------------------------------------------------------------------


def write_dicom_10_bit(path, image):
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("MR_small.dcm"))
    pixels = np.rint(image * 1023).astype(np.uint16)
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 10, 9, 0
    ds.Modality = "DX"  # imported as X-ray: the file must say so
    ds.PixelData = pixels.tobytes()
    ds.save_as(path)


def import_as(import_file, tmp_path, source, image):
    path = tmp_path / f"{source}.img"
    if source == "png8":
        Image.fromarray(np.rint(image * 255).astype(np.uint8)).save(path, format="PNG")
    elif source == "png16":
        Image.fromarray(np.rint(image * 65535).astype(np.uint16)).save(path, format="PNG")
    elif source == "dicom10":
        write_dicom_10_bit(path, image)
    else:
        path = path.with_suffix(".nii")
        nib.save(nib.Nifti1Image(image.T[:, :, None], np.eye(4)), path)
    (outcome,) = import_file(path, modality="XR").outcomes
    assert outcome.status == "imported", outcome
    from readerstudy.imaging.models import PoolItem

    return PoolItem.objects.get(pk=outcome.item_ids[0])


def test_served_histogram_carries_no_trace_of_source_bit_depth(import_file, tmp_path):
    """8-bit, 10-bit, 16-bit and float copies of one picture use the grey codes alike."""
    image = smooth_image(256, 256)
    empty = {}
    for source in ("float", "png8", "dicom10", "png16"):
        item = import_as(import_file, tmp_path, source, image)
        # Served at the master size (no resampling that could hide a comb).
        empty[source] = empty_code_fraction(served_codes(item, 256, 256))
    # Without dequantisation an 8-bit source would leave 15 of every 16 codes empty (10-bit: 3 of 4).
    for source in ("png8", "dicom10", "png16"):
        assert abs(empty[source] - empty["float"]) < 0.02, empty
    assert empty["float"] < 0.1, empty
