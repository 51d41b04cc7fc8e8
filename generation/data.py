"""Training data for the built-in models, taken from real pool items.

Images are the pool's master codes mapped to the model's intensity space
(`intensity.py`: linear for XR and MR, companded HU for CT) and scaled to [-1, 1];
sampling applies the inverse, so the pool holds canonical codes either way.
"""

from dataclasses import dataclass

import numpy as np
import torch

from readerstudy.imaging import canonical, storage
from readerstudy.imaging.importing import content_slices
from readerstudy.imaging.models import Dimensionality, Origin, PoolItem

from .config import ConfigError, TrainConfig
from .intensity import codes_to_model

# Training crops come from images this much larger than the model's resolution.
CROP_MARGIN = 1.125


@dataclass
class TrainingSet:
    images: torch.Tensor  # float32 (N, 1, [D,] S, S) in [-1, 1], S = margin x resolution
    labels: torch.Tensor  # int64 (N,) index into config.modalities
    items: list[int]  # pool item ids used
    datasets: dict[str, str]  # data set name -> licence

    def __len__(self):
        return self.images.shape[0]

    def batch(self, rng: np.random.Generator, size: int, resolution: int, depth: int | None = None):
        """A random batch with random crops (the only augmentation: flips would mirror anatomy)."""
        idx = rng.integers(0, len(self), size=size)
        full = self.images.shape[-1]
        offsets = rng.integers(0, full - resolution + 1, size=(size, 2))
        crops = []
        for i, (dy, dx) in zip(idx, offsets):
            image = self.images[i]
            if depth is not None:
                dz = int(rng.integers(0, image.shape[1] - depth + 1))
                image = image[:, dz : dz + depth]
            crops.append(image[..., dy : dy + resolution, dx : dx + resolution])
        return torch.stack(crops), self.labels[torch.as_tensor(idx)]


def training_items(config: TrainConfig):
    qs = PoolItem.objects.filter(origin=Origin.REAL, modality__in=config.modalities).select_related("dataset")
    if config.datasets:
        qs = qs.filter(dataset__name__in=config.datasets)
    if config.dims == 3:
        qs = qs.filter(dimensionality=Dimensionality.VOLUME)
    return list(qs.order_by("id"))


def build_training_set(config: TrainConfig) -> TrainingSet:
    items = training_items(config)
    if not items:
        what = "volumes" if config.dims == 3 else "images"
        scope = f" in data sets {', '.join(config.datasets)}" if config.datasets else ""
        raise ConfigError(f"no real {what} of modality {', '.join(config.modalities)}{scope} in the pool to train on")
    if config.datasets:
        missing = set(config.datasets) - {i.dataset.name for i in items}
        if missing:
            raise ConfigError(f"no usable items in data set(s) {', '.join(sorted(missing))}")
    size = int(round(config.resolution * CROP_MARGIN))
    images, labels, modalities = [], [], []
    for item in items:
        codes = np.asarray(storage.load_master(item.master_file))
        label = config.modalities.index(item.modality)
        if config.dims == 2:
            for k in content_slices(codes, config.max_slices_per_volume):
                images.append(canonical.resample_codes(codes[k : k + 1], size, size, 1))
                labels.append(label)
                modalities.append(item.modality)
        else:
            d, h, w = codes.shape
            scale = size / min(h, w)
            depth = max(config.depth, int(round(d * scale)))
            images.append(canonical.resample_codes(codes, size, size, depth)[None])
            labels.append(label)
            modalities.append(item.modality)
    if config.dims == 3:
        # Volumes differ in depth; crop all to the shallowest (at least config.depth).
        shallowest = min(v.shape[1] for v in images)
        images = [v[:, (v.shape[1] - shallowest) // 2 : (v.shape[1] - shallowest) // 2 + shallowest] for v in images]
    array = np.stack(images)
    model_space = np.stack(
        [codes_to_model(image, modality, config.companded_ct) for image, modality in zip(array, modalities)]
    )
    tensor = torch.from_numpy(model_space * 2 - 1)
    return TrainingSet(
        images=tensor,
        labels=torch.tensor(labels, dtype=torch.int64),
        items=[i.pk for i in items],
        datasets={i.dataset.name: i.dataset.licence for i in items},
    )
