"""Putting generated images into the pool, through the same canonical writer as real ones."""

import numpy as np

from readerstudy.imaging import canonical
from readerstudy.imaging.models import Dataset, Modality, Origin, PoolItem
from readerstudy.imaging.pool import create_pool_item

from .models import Generator


def synthetic_dataset(generator: Generator) -> Dataset:
    """The data set that holds one generator version's output."""
    dataset, _ = Dataset.objects.get_or_create(
        name=f"synthetic: {generator}",
        defaults={"origin": Origin.SYNTHETIC, "licence": generator.licence or "see generator", "source": generator.path},
    )
    return dataset


def add_synthetic_item(
    sample: np.ndarray, *, modality: str, generator: Generator, seed=None, prompt: str = "", job=None, **provenance
) -> PoolItem:
    """Add one generated sample, values in [0, 1] shaped (rows, cols) or (depth, rows, cols).

    For CT, [0, 1] spans the full canonical range (-1024..3071 HU), the same
    mapping the built-in models are trained with; XR and MR go through the same
    percentile rule as real images (`canonical.to_codes`), in `create_pool_item`.
    """
    if modality not in Modality.values:
        raise ValueError(f"unknown modality {modality!r}")
    sample = np.asarray(sample, dtype=np.float32)
    if sample.ndim == 2:
        sample = sample[None]
    if sample.ndim != 3 or not np.isfinite(sample).all():
        raise ValueError(f"a sample must be a finite 2D image or volume, got shape {sample.shape}")
    hounsfield = modality == Modality.CT
    if hounsfield:
        sample = np.clip(sample, 0.0, 1.0) * canonical.CODE_MAX - canonical.CT_HU_OFFSET
    return create_pool_item(
        values=sample,
        hounsfield=hounsfield,
        modality=modality,
        origin=Origin.SYNTHETIC,
        dataset=synthetic_dataset(generator),
        generator=generator,
        generation_job=job,
        seed=seed,
        prompt=prompt,
        **provenance,
    )
