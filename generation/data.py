"""Training data for the built-in models, taken from real pool items.

Images are the pool's master codes framed exactly as readers are served them
(`framing.model_frame`: whole field of view, centre-cropped to the matrix's
aspect, whole depth resampled; no crops, no magnification), mapped to the
model's intensity space (`intensity.py`: linear for XR and MR, companded HU for
CT) and scaled to [-1, 1]; sampling applies the inverse, so the pool holds
canonical codes either way. A generator that learns this distribution perfectly
makes samples that cannot be told from real cases by their framing.
"""

from dataclasses import dataclass, field

import numpy as np
import torch

from readerstudy.imaging import storage
from readerstudy.imaging.importing import content_slices
from readerstudy.imaging.models import Dimensionality, Origin, PoolItem
from readerstudy.imaging.orientation import common_orientation

from .config import ConfigError, TrainConfig
from .framing import model_frame
from .intensity import codes_to_model


@dataclass
class TrainingSet:
    images: torch.Tensor  # float32 (N, 1, [D,] R, R) in [-1, 1], R = the model's resolution
    labels: torch.Tensor  # int64 (N,) index into config.modalities
    items: list[int]  # pool item ids used
    datasets: dict[str, str]  # data set name -> licence
    groups: list[str] = field(default_factory=list)  # source groups (stored with the model, never drawn beside it)
    orientation: str | None = None  # the one display orientation of all volume training data (None: unknown)

    def __len__(self):
        return self.images.shape[0]

    def batch(self, rng: np.random.Generator, size: int):
        """A random batch of whole training images (no crops or flips: either would change the framing)."""
        idx = rng.integers(0, len(self), size=size)
        return self.images[torch.as_tensor(idx)], self.labels[torch.as_tensor(idx)]


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
    size = config.resolution
    images, labels, modalities = [], [], []
    for item in items:
        codes = np.asarray(storage.load_master(item.master_file))
        label = config.modalities.index(item.modality)
        if config.dims == 2:
            for k in content_slices(codes, config.max_slices_per_volume):
                images.append(model_frame(codes[k : k + 1], size))
                labels.append(label)
                modalities.append(item.modality)
        else:
            images.append(model_frame(codes, size, config.depth)[None])
            labels.append(label)
            modalities.append(item.modality)
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
        groups=sorted({i.source_group for i in items}),
        orientation=common_orientation(items) if config.dims == 3 else None,
    )
