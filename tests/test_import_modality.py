"""What an import accepts as X-ray, CT or MR (issue 14, point 8): the file's own Modality and SOP class,
Hounsfield units for CT, something to read."""

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from readerstudy.imaging.importing import ImportOptions, import_path
from readerstudy.imaging.models import PoolItem

from .conftest import pydicom_file

pytestmark = pytest.mark.django_db


def outcome(path, modality, real_dataset, **options):
    (result,) = import_path(path, ImportOptions(modality=modality, dataset=real_dataset, **options)).outcomes
    return result


@pytest.mark.parametrize("name, modality, fragment", [
    ("rtdose.dcm", "CT", "a radiotherapy dose grid (DICOM Modality RTDOSE) is not an image to read"),
    ("liver_1frame.dcm", "CT", "a segmentation (DICOM Modality SEG) is not an image to read"),
    ("CT_small.dcm", "MR", "the file is CT (DICOM Modality CT), not MR: import it as CT"),
    ("MR_small.dcm", "CT", "the file is MR (DICOM Modality MR), not CT: import it as MR"),
    ("examples_rgb_color.dcm", "MR", "the file is ultrasound (DICOM Modality US)"),
])
def test_the_files_own_modality_decides(name, modality, fragment, real_dataset):
    result = outcome(pydicom_file(name), modality, real_dataset)
    assert result.status == "failed" and fragment in result.message, result
    assert PoolItem.objects.count() == 0


def test_a_secondary_capture_of_another_modality_is_still_an_image(real_dataset):
    assert outcome(pydicom_file("JPEG2000.dcm"), "MR", real_dataset).status == "imported"  # SC, Modality NM


def test_ct_must_be_in_hounsfield_units_unless_said_otherwise(tmp_path, real_dataset):
    png = tmp_path / "ct-slice.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(png)
    refused = outcome(png, "CT", real_dataset)
    assert refused.status == "failed" and "not in Hounsfield units" in refused.message
    accepted = outcome(png, "CT", real_dataset, uncalibrated_ct=True)
    assert accepted.status == "imported"
    item = PoolItem.objects.get()
    assert item.source_info["uncalibrated_ct"] is True
    # Real CT and CT NIfTI are in HU and say nothing of the kind.
    outcome(pydicom_file("CT_small.dcm"), "CT", real_dataset)
    assert "uncalibrated_ct" not in PoolItem.objects.exclude(pk=item.pk).get().source_info


def test_blank_tiny_and_zero_slope_ct_are_refused(tmp_path, real_dataset):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.RescaleSlope = 0  # every pixel becomes the intercept
    ds.save_as(tmp_path / "slope0.dcm")
    assert "image is blank" in outcome(tmp_path / "slope0.dcm", "CT", real_dataset).message
    nib.save(nib.Nifti1Image(np.full((16, 16, 4), -1000, np.int16), np.eye(4)), tmp_path / "air.nii")
    assert "image is blank" in outcome(tmp_path / "air.nii", "CT", real_dataset).message
    Image.fromarray(np.array([[7]], dtype=np.uint8)).save(tmp_path / "dot.png")
    assert "at least 8" in outcome(tmp_path / "dot.png", "XR", real_dataset).message
    assert PoolItem.objects.count() == 0
