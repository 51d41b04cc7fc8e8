"""Privacy and quality checks on generated items, for coordinators and analysts.

- Memorisation: each sample's most similar real image of its modality (Pearson
  correlation at 64x64 after centre crop); at or above the threshold it is
  flagged as a near-copy, which may leak patient data.
- Diversity: 1 - mean pairwise correlation among one job's samples.
- Slice consistency (volumes): mean correlation of neighbouring slices.
"""

import numpy as np

from readerstudy.imaging import canonical, storage
from readerstudy.imaging.importing import content_slices
from readerstudy.imaging.models import Origin, PoolItem

COMPARE_SIZE = 64
NEAR_COPY_THRESHOLD = 0.95
MAX_REFERENCE_SLICES = 32  # per real volume


def _standardise(images: np.ndarray) -> np.ndarray:
    """Rows of zero mean and unit norm, so a dot product is the Pearson correlation."""
    flat = images.reshape(images.shape[0], -1).astype(np.float64)
    flat -= flat.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    return flat / np.where(norms == 0, 1, norms)


def _thumb(codes: np.ndarray) -> np.ndarray:
    return canonical.frame_codes(codes[None] if codes.ndim == 2 else codes, COMPARE_SIZE, COMPARE_SIZE, 1)[0]


def reference_set(modality: str):
    """(standardised thumbnails, pool item id per row) of the real images of a modality."""
    thumbs, owners = [], []
    for item in PoolItem.objects.filter(origin=Origin.REAL, modality=modality).only("id", "master_file"):
        codes = np.asarray(storage.load_master(item.master_file))
        for k in content_slices(codes, MAX_REFERENCE_SLICES):
            thumbs.append(_thumb(codes[k]))
            owners.append(item.pk)
    if not thumbs:
        return None, []
    return _standardise(np.stack(thumbs)), owners


def nearest_real(codes: np.ndarray, reference) -> dict:
    """Most similar real image to any slice of `codes` (depth, rows, cols)."""
    matrix, owners = reference
    if matrix is None:
        return {"nearest_real_item": None, "nearest_real_similarity": None, "near_copy": None,
                "note": "no real images of this modality to compare with"}
    slices = codes if codes.shape[0] <= 8 else codes[np.linspace(0, codes.shape[0] - 1, 8).round().astype(int)]
    sims = _standardise(np.stack([_thumb(s) for s in slices])) @ matrix.T
    row, col = np.unravel_index(np.argmax(sims), sims.shape)
    best = float(sims[row, col])
    return {
        "nearest_real_item": owners[col],
        "nearest_real_similarity": round(best, 4),
        "near_copy": best >= NEAR_COPY_THRESHOLD,
    }


def slice_consistency(codes: np.ndarray) -> float | None:
    """Mean correlation of neighbouring slices (1 = identical slices); None for 2D."""
    if codes.shape[0] < 2:
        return None
    z = _standardise(codes)
    return round(float(np.mean(np.sum(z[1:] * z[:-1], axis=1))), 4)


def diversity(codes_list: list[np.ndarray]) -> float | None:
    """1 - mean pairwise correlation of middle slices; None with fewer than two samples."""
    if len(codes_list) < 2:
        return None
    z = _standardise(np.stack([_thumb(c[c.shape[0] // 2]) for c in codes_list]))
    sims = z @ z.T
    upper = sims[np.triu_indices(len(codes_list), k=1)]
    return round(float(1 - upper.mean()), 4)


def assess_item(item: PoolItem, reference=None) -> dict:
    """Compute and store the item's checks in PoolItem.quality."""
    codes = np.asarray(storage.load_master(item.master_file))
    result = nearest_real(codes, reference or reference_set(item.modality))
    result["slice_consistency"] = slice_consistency(codes)
    item.quality = {**item.quality, **result, "threshold": NEAR_COPY_THRESHOLD}
    item.save(update_fields=["quality"])
    return item.quality
