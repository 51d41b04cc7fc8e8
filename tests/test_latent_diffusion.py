"""3D latent diffusion as in Medical Diffusion (Khader et al. 2023), at tiny size on the CPU: a MONAI
AutoencoderKL first, then the diffusion UNet in its latent space; resumed bit for bit in either stage;
registered, sampled by a generation job into volumes of the model's size."""

import pytest
import torch
from safetensors.torch import load_file

from generation.config import ConfigError, TrainConfig
from generation.generate import create_generation_job, run_generation
from generation.models import Generator
from generation.registry import read_model_folder, register_generator
from generation.training import train
from readerstudy.imaging.models import Origin, PoolItem
from readerstudy.jobs.progress import JobCancelled, NullProgress, run_job

from .test_generation import TINY_3D, small_pool  # noqa: F401  (fixture: real CT and MR items)

pytestmark = pytest.mark.django_db

TINY_LATENT = {**TINY_3D, "latent": True, "autoencoder_channels": [16, 16], "latent_channels": 2,
               "autoencoder_steps": 3, "steps": 3}


class StopAfter(NullProgress):
    """Cancels at the n-th check: the run stops as a killed worker would, after its last checkpoint."""

    def __init__(self, checks: int):
        self.checks = checks

    def check_cancelled(self):
        self.checks -= 1
        if self.checks < 0:
            raise JobCancelled()


def weights(folder, part):
    return load_file(str(folder / part / "diffusion_pytorch_model.safetensors"))


def same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_latent_model_trains_its_autoencoder_then_diffuses_in_latent_space(small_pool, tmp_path):  # noqa: F811
    folder = train(TrainConfig.from_dict({**TINY_LATENT, "calibration_samples": 2}), tmp_path / "ldm" / "v1",
                   name="ldm")
    meta = read_model_folder(folder)
    assert meta["calibration"]["MR"]["samples"] == 2  # calibrated on decoded volumes, like pixel models
    assert meta["latent"]["factor"] == 2 and meta["latent"]["channels"] == 2 and meta["latent"]["scale_factor"] > 0
    assert meta["latent"]["autoencoder_steps_trained"] == 3 and meta["steps_trained"] == 3
    assert "Latent diffusion (as Medical Diffusion)" in (folder / "MODEL_CARD.md").read_text()
    unet = weights(folder, "unet")
    assert unet["conv_in.conv.weight"].shape[1] == 2  # the UNet denoises the 2 latent channels
    generator = register_generator(folder)
    assert generator.kind == Generator.Kind.BUILTIN_3D
    job = run_job(create_generation_job(generator, "MR", 2, seed=0, steps=2).pk, run_generation)
    assert job.status == "succeeded", job.error
    items = PoolItem.objects.filter(origin=Origin.SYNTHETIC, generator=generator)
    assert [i.master_shape for i in items] == [[8, 16, 16], [8, 16, 16]]  # decoded back to the model's volume
    (folder / "autoencoder" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ConfigError, match="autoencoder/diffusion_pytorch_model.safetensors is missing"):
        read_model_folder(folder)


@pytest.mark.parametrize("stop_at", [2, 5], ids=["in the autoencoder stage", "in the diffusion stage"])
def test_a_latent_model_resumes_bit_for_bit_in_either_stage(small_pool, tmp_path, stop_at):  # noqa: F811
    config = TrainConfig.from_dict({**TINY_LATENT, "checkpoint_every": 1})
    straight = train(config, tmp_path / "a")
    with pytest.raises(JobCancelled):
        train(config, tmp_path / "b", progress=StopAfter(stop_at))
    assert not (tmp_path / "b" / "generator.json").exists()
    resumed = train(config, tmp_path / "b", resume=True)
    assert same(weights(straight, "autoencoder"), weights(resumed, "autoencoder"))
    assert same(weights(straight, "unet"), weights(resumed, "unet"))
    assert read_model_folder(resumed)["latent"] == read_model_folder(straight)["latent"]


def test_the_adversarial_loss_trains_and_bad_latent_configs_are_refused(small_pool, tmp_path):  # noqa: F811
    folder = train(TrainConfig.from_dict({**TINY_LATENT, "adversarial_weight": 0.1, "autoencoder_steps": 2,
                                          "steps": 1}), tmp_path / "adv")
    assert read_model_folder(folder)["config"]["adversarial_weight"] == 0.1
    for change, message in [({"dims": 2, "modalities": ["MR"]}, "offered for volumes"),
                            ({"resolution": 18}, "divisible by 4"),
                            ({"autoencoder_channels": [12, 16]}, "multiple of 8"),
                            ({"latent_channels": 0}, "latent_channels")]:
        with pytest.raises(ConfigError, match=message):
            TrainConfig.from_dict({**TINY_LATENT, **change})
