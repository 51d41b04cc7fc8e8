"""Digitally reconstructed radiographs: physics-simulated X-rays projected from CT volumes.

Parallel-beam Beer-Lambert model: HU become linear attenuation
(mu = mu_water * (1 + HU / 1000), air 0), summed along the anterior-posterior
axis; the log-domain projection is displayed bone-bright like a radiograph.
"""

import numpy as np

from readerstudy.imaging import storage
from readerstudy.imaging.models import Dimensionality, Modality, PoolItem

from .config import ConfigError
from .models import Generator
from .pool import add_synthetic_item
from .quality import assess_item

MU_WATER_PER_MM = 0.0195  # ~60 keV
GENERATOR_NAME = "drr-parallel-beam"


def drr_generator() -> Generator:
    generator, _ = Generator.objects.get_or_create(
        name=GENERATOR_NAME,
        version="1",
        defaults={
            "kind": Generator.Kind.DRR,
            "modalities": [Modality.XR],
            "licence": "derived from the source CT; see each item's source",
            "model_card": "Physics-simulated radiographs (parallel-beam Beer-Lambert projection of CT). "
            "Synthetic: not acquired on an X-ray system. Not for clinical use.",
        },
    )
    return generator


def project(codes: np.ndarray, slice_mm: float, pixel_mm: float) -> np.ndarray:
    """AP projection of CT codes (depth, rows, cols) to a [0, 1] radiograph (superior at top)."""
    hu = codes.astype(np.float32) - 1024.0
    mu = np.clip(MU_WATER_PER_MM * (1.0 + hu / 1000.0), 0.0, None)
    line_integral = mu.sum(axis=1) * pixel_mm  # (depth, cols): sum over anterior-posterior rows
    image = line_integral[::-1]  # slice 0 is inferior; radiographs put the head at the top
    # Resample the slice axis so pixels are square.
    out_rows = max(2, int(round(image.shape[0] * slice_mm / pixel_mm)))
    positions = np.linspace(0, image.shape[0] - 1, out_rows)
    lower = np.floor(positions).astype(int)
    upper = np.minimum(lower + 1, image.shape[0] - 1)
    frac = (positions - lower)[:, None]
    image = image[lower] * (1 - frac) + image[upper] * frac
    lo, hi = np.percentile(image, (0.5, 99.5))
    if not hi > lo:
        raise ConfigError("the CT volume projects to a blank image")
    return np.clip((image - lo) / (hi - lo), 0, 1) ** 0.8


def make_drr(item: PoolItem) -> PoolItem:
    """Project a real CT volume and add the radiograph to the pool as a synthetic X-ray."""
    if item.modality != Modality.CT or item.dimensionality != Dimensionality.VOLUME:
        raise ConfigError(f"item {item.pk} is not a CT volume")
    codes = np.asarray(storage.load_master(item.master_file))
    slice_mm, pixel_mm = _master_spacing(item)
    image = project(codes, slice_mm, pixel_mm)
    drr = add_synthetic_item(
        image, modality=Modality.XR, generator=drr_generator(), body_part=item.body_part,
        source_name=f"DRR of pool item {item.pk} ({item.source_name})"[:500],
        source_sha256=item.source_sha256, source_locator=f"drr of item {item.pk}", source_group=item.source_group,
    )
    assess_item(drr)
    return drr


def _master_spacing(item: PoolItem) -> tuple[float, float]:
    """(slice, pixel) spacing in mm of the stored master, from the native spacing when known."""
    spacing = item.native_spacing_mm or [None, None, None]
    native, master = item.native_shape, item.master_shape
    slice_mm = (spacing[0] or 1.0) * native[0] / master[0]
    pixel_mm = (spacing[2] or 1.0) * native[2] / master[2]
    return float(slice_mm), float(pixel_mm)
