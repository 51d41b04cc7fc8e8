"""Intensity calibration of a built-in model: its output range is not a tell.

A briefly trained diffusion model gets the structure of its images roughly right and their intensity
distribution wrong at the ends: CT air comes out near -800 HU instead of -1024, MR and X-ray
backgrounds above zero, and no pixel lands exactly on the background that real images pile up on.
A reader sees that at once in a window, and the leak audit's "share of pixels at the lowest code"
tells the model's samples from real ones.

After training, `calibrate` draws `calibration_samples` samples of each modality (fixed seeds, far from
any a user would pick) and stores, per modality, the quantiles of those samples and of the training
images in model space. Sampling then maps every value through that monotone function (`apply`):
the pooled intensity distribution of samples becomes the training data's, background pile-up
included, while the order of values, and so every edge and structure in an image, is kept.
"""

import numpy as np

QUANTILES = np.linspace(0.0, 1.0, 1025)
SEED_BASE = 2**31  # calibration samples' seeds: users pick small ones


def knots(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.quantile(np.asarray(values, dtype=np.float64).ravel(), QUANTILES)]


def calibrate(model, training_images, training_labels, steps: int) -> dict:
    """{modality: {"sample": knots, "train": knots}} in model space [0, 1], from fresh samples."""
    from .sampling import sample

    n = model.config.calibration_samples
    table = {}
    labels = np.asarray(training_labels)
    for index, modality in enumerate(model.config.modalities):
        train = (np.asarray(training_images)[labels == index] + 1) / 2
        if not len(train):
            continue
        made = sample(model, modality, [SEED_BASE + k for k in range(n)], steps=steps, model_space=True,
                      calibrated=False)
        table[modality] = {"sample": knots(made), "train": knots(train), "samples": n, "steps": steps}
    return table


def apply(values: np.ndarray, entry: dict) -> np.ndarray:
    """Map model-space values through a modality's calibration (monotone, piecewise linear)."""
    source = np.asarray(entry["sample"], dtype=np.float64)
    # Equal knots (a flat stretch of the samples' distribution) would make the map ambiguous: spread them.
    source = source + np.arange(len(source)) * 1e-9
    return np.interp(values, source, np.asarray(entry["train"], dtype=np.float64)).astype(np.float32)


def calibrate_model_folder(folder, samples: int | None = None, steps: int = 50) -> dict:
    """Calibrate an existing built-in model folder against the pool's training data; writes generator.json
    and MODEL_CARD.md again. Returns the calibration table."""
    import json
    from pathlib import Path

    from . import sampling
    from .config import TrainConfig
    from .data import build_training_set
    from .registry import read_model_folder
    from .training import META, model_card

    folder = Path(folder).resolve()
    meta = read_model_folder(folder)
    config = TrainConfig.from_dict({**meta["config"], **({"calibration_samples": samples} if samples else {})})
    data = build_training_set(config)
    model = sampling.load_model(folder)
    model.config = config
    model.meta = {key: value for key, value in meta.items() if key != "calibration"}  # measure the raw output
    table = calibrate(model, data.images.numpy(), data.labels.numpy(), steps=steps)
    meta["calibration"] = table
    (folder / META).write_text(json.dumps(meta, indent=2))
    (folder / "MODEL_CARD.md").write_text(model_card(meta))
    sampling.forget(folder)
    return table
