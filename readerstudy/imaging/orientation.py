"""Which way a volume faces on screen, and the A/P/L/R markers shown for it.

Markers are a property of a study stratum, never of a case: they are shown only
where every case of the stratum, real and synthetic, is known to be in the same
display orientation, so their presence cannot tell a real case from a synthetic one.

Known orientations:
- NIfTI volumes, DICOM series and enhanced multi-frame DICOM, which the importer reslices to
  radiological axial by one rule (imaging/decoders/geometry.py) from their affine or from
  ImageOrientationPatient/ImagePositionPatient, where every stored axis lies within about 25
  degrees of a patient axis (an oblique volume is resliced but stays unknown), recorded as
  `orientation` in the item's source info; DICOM stacks without a usable geometry (missing or
  mixed orientations, slices not ordered by position) stay as stored and count as unknown;
- samples of a model whose volume training data all had one known orientation
  (recorded as `orientation` in its generator.json, else derived from its training groups);
- controls (real-as-synthetic), as their original.
2D images (radiographs, single slices) have no orientation the platform knows for
both real and synthetic cases, so they get no markers.
"""

from .decoders.base import RADIOLOGICAL_AXIAL
from .models import Dimensionality, PoolItem

MARKERS = {
    RADIOLOGICAL_AXIAL: {
        "axial": {"top": "A", "bottom": "P", "left": "R", "right": "L"},
        "coronal": {"top": "S", "bottom": "I", "left": "R", "right": "L"},
        "sagittal": {"top": "S", "bottom": "I", "left": "A", "right": "P"},
    },
}


def item_orientation(item: PoolItem, cache: dict | None = None) -> str | None:
    """The display orientation of a pool item, or None where it is not known.

    `cache` (generator id -> orientation) saves a query per sample when many are asked about.
    """
    if item.dimensionality != Dimensionality.VOLUME:
        return None
    info = item.source_info or {}
    if "orientation" in info:
        return info["orientation"]
    if info.get("format") == "NIfTI":
        return RADIOLOGICAL_AXIAL
    if "control_of" in info:
        original = PoolItem.objects.filter(pk=info["control_of"]).first()
        return item_orientation(original) if original else None
    if item.generator_id is not None:
        cache = {} if cache is None else cache
        if item.generator_id not in cache:
            cache[item.generator_id] = generator_orientation(item.generator)
        return cache[item.generator_id]
    return None


def generator_orientation(generator) -> str | None:
    """What a model's volumes face like: the one orientation all its volume training data had."""
    config = generator.config or {}
    if "orientation" in config:
        return config["orientation"]
    groups = config.get("training_groups") or []
    if not groups or config.get("dims") != 3:
        return None
    items = PoolItem.objects.filter(source_group__in=groups, dimensionality=Dimensionality.VOLUME,
                                    generator__isnull=True)
    return common_orientation(items)


def common_orientation(items) -> str | None:
    """The orientation every item shares, else None (also for no items)."""
    cache = {}
    found = {item_orientation(item, cache) for item in items}
    return found.pop() if len(found) == 1 else None


def markers_for(orientation: str | None) -> dict | None:
    return MARKERS.get(orientation) if orientation else None
