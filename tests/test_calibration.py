"""Intensity calibration (generation/calibration.py): a model's output is mapped, monotonically, onto the
training images' intensities, so its range (CT air, backgrounds) is not a tell."""

import numpy as np
import pytest

from generation.calibration import QUANTILES
from generation.config import TrainConfig
from generation.data import build_training_set
from generation.registry import read_model_folder
from generation.sampling import load_model, sample
from generation.training import train

from .test_generation import TINY_2D, small_pool  # noqa: F401  (fixture: real CT and MR items)

pytestmark = pytest.mark.django_db


def distance(values, reference) -> float:
    """Largest gap between two distributions' quantiles (model space, 0-1)."""
    return float(np.max(np.abs(np.quantile(values, QUANTILES) - np.quantile(reference, QUANTILES))))


def test_calibrated_samples_take_the_training_images_intensities(small_pool, tmp_path):  # noqa: F811
    config = TrainConfig.from_dict({**TINY_2D, "calibration_samples": 6})
    folder = train(config, tmp_path / "cal")
    meta = read_model_folder(folder)
    assert set(meta["calibration"]) == {"CT", "MR"} and meta["calibration"]["MR"]["samples"] == 6
    assert "Intensity calibration" in (folder / "MODEL_CARD.md").read_text()
    data = build_training_set(config)
    model = load_model(folder)
    for index, modality in enumerate(config.modalities):
        real = (data.images[data.labels == index].numpy() + 1) / 2
        seeds = list(range(100, 108))  # not the calibration's own samples
        raw = sample(model, modality, seeds, steps=50, model_space=True, calibrated=False)
        calibrated = sample(model, modality, seeds, steps=50, model_space=True)  # the calibration's own steps
        assert distance(calibrated, real) < distance(raw, real) / 2, modality
        # The background is reached (CT air, MR/X-ray zero), and nothing lies outside the real range.
        assert np.isclose(calibrated.min(), real.min()) and calibrated.max() <= real.max() + 1e-6
        # Monotone: the order of values, and so every edge in an image, is kept.
        first, mapped = raw[0].ravel(), calibrated[0].ravel()
        order = np.argsort(first, kind="stable")
        assert np.all(np.diff(mapped[order]) >= -1e-6)
    unit = sample(model, "CT", [100], steps=5)  # what the pool receives: canonical unit space
    assert unit.min() >= 0 and unit.max() <= 1


def test_a_model_trained_without_calibration_is_calibrated_afterwards(small_pool, tmp_path, capsys):  # noqa: F811
    from django.core.management import CommandError, call_command

    from generation.registry import register_generator

    folder = train(TrainConfig.from_dict(TINY_2D), tmp_path / "late" / "v1", name="late")
    assert "calibration" not in read_model_folder(folder)
    register_generator(folder)
    before = sample(load_model(folder), "MR", [5], steps=3)
    call_command("calibrate_generator", "late", samples=3, steps=3)
    assert "Calibrated late v1: CT from 3 samples, MR from 3 samples" in capsys.readouterr().out
    assert read_model_folder(folder)["calibration"]["MR"]["steps"] == 3
    assert "Intensity calibration" in (folder / "MODEL_CARD.md").read_text()
    after = sample(load_model(folder), "MR", [5], steps=3)  # the cache was refreshed: calibrated now
    assert not np.array_equal(before, after)
    with pytest.raises(CommandError, match="no built-in model named 'nobody'"):
        call_command("calibrate_generator", "nobody")


def test_the_2d_model_trains_on_every_content_slice_of_every_volume(small_pool):  # noqa: F811
    from readerstudy.imaging import storage
    from readerstudy.imaging.importing import content_slices
    from readerstudy.imaging.models import PoolItem

    every = build_training_set(TrainConfig.from_dict({**TINY_2D, "max_slices_per_volume": 0}))
    capped = build_training_set(TrainConfig.from_dict({**TINY_2D, "max_slices_per_volume": 2}))
    items = PoolItem.objects.filter(origin="real", modality__in=["CT", "MR"])
    expected = sum(len(content_slices(storage.load_master(i.master_file), 0)) for i in items)
    assert len(every) == expected > len(capped) and TrainConfig().max_slices_per_volume == 0
    with pytest.raises(Exception, match="max_slices_per_volume must be 0"):
        TrainConfig.from_dict({**TINY_2D, "max_slices_per_volume": -1})
