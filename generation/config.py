"""Training configuration for the built-in diffusion models, validated with clear messages."""

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from readerstudy.imaging.models import Modality

# DDIM (or pipeline) sampling steps when a request names none; here, not in sampling.py, so forms and
# commands can offer it without importing torch.
DEFAULT_STEPS = 50


class ConfigError(ValueError):
    """A training or sampling configuration that cannot work; the message says why."""


@dataclass
class TrainConfig:
    dims: int = 2  # 2: images (UNet2DModel); 3: volumes (MONAI DiffusionModelUNet)
    modalities: list[str] = field(default_factory=lambda: ["XR", "CT", "MR"])
    datasets: list[str] = field(default_factory=list)  # data set names; empty: every real data set
    resolution: int = 64
    depth: int = 16  # slices per volume (dims=3 only)
    channels: list[int] = field(default_factory=lambda: [32, 64, 96, 128])
    layers_per_block: int = 1
    attention: bool = True  # self-attention at the second-lowest resolution (2D)
    steps: int = 2000
    batch_size: int = 16
    learning_rate: float = 2e-4
    warmup_steps: int = 100
    ema_decay: float = 0.995
    train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    seed: int = 0
    precision: str = "auto"  # auto | fp32 | bf16
    checkpoint_every: int = 250
    max_slices_per_volume: int = 0  # 2D training: content slices taken from each volume (0: every one)
    companded_ct: bool = True  # train CT in soft-tissue-weighted space (see generation/intensity.py)
    # Intensity calibration after training (generation/calibration.py): this many samples per modality
    # give a monotone map of the model's output onto the training data's intensities (0: none).
    calibration_samples: int = 16
    # Volumes only: latent diffusion as in Medical Diffusion (Khader et al. 2023): first a MONAI AutoencoderKL
    # (L1 + KL, and a patch-adversarial loss with adversarial_weight > 0), then the UNet in its latent space.
    latent: bool = False
    autoencoder_channels: list[int] = field(default_factory=lambda: [32, 64, 64])  # each level after the first halves every axis
    latent_channels: int = 3
    autoencoder_steps: int = 1000
    autoencoder_learning_rate: float = 1e-4
    kl_weight: float = 1e-6
    adversarial_weight: float = 0.0

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return config_from_dict(cls, data)

    @classmethod
    def from_file(cls, path) -> "TrainConfig":
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a JSON object")
        return cls.from_dict(data)

    def as_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        def need(condition, message):
            if not condition:
                raise ConfigError(message)

        need(self.dims in (2, 3), f"dims must be 2 or 3, got {self.dims!r}")
        need(isinstance(self.modalities, list) and self.modalities, "modalities must be a non-empty list")
        for m in self.modalities:
            need(m in Modality.values, f"unknown modality {m!r}; choose from {', '.join(Modality.values)}")
        if self.dims == 3:
            need("XR" not in self.modalities, "X-ray has no volumes: a 3D model trains on CT and/or MR")
        need(len(set(self.modalities)) == len(self.modalities), "modalities are listed twice")
        need(isinstance(self.channels, list) and len(self.channels) >= 2, "channels needs at least two levels")
        need(all(isinstance(c, int) and c > 0 and c % 8 == 0 for c in self.channels),
             "every channel count must be a positive multiple of 8 (group normalisation uses 8 groups)")
        levels = len(self.channels) - 1
        need(isinstance(self.resolution, int) and self.resolution >= 8, "resolution must be an integer of at least 8")
        need(self.resolution % (2**levels) == 0,
             f"resolution {self.resolution} must be divisible by {2**levels} ({len(self.channels)} channel levels)")
        if self.dims == 3:
            need(isinstance(self.depth, int) and self.depth % (2**levels) == 0 and self.depth >= 2**levels,
                 f"depth {self.depth} must be a positive multiple of {2**levels}")
        need(isinstance(self.steps, int) and self.steps >= 1, "steps must be at least 1")
        need(isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size must be at least 1")
        need(isinstance(self.layers_per_block, int) and self.layers_per_block >= 1, "layers_per_block must be at least 1")
        need(0 < float(self.learning_rate) < 1, "learning_rate must be between 0 and 1")
        need(0 <= float(self.ema_decay) < 1, "ema_decay must be in [0, 1)")
        need(isinstance(self.train_timesteps, int) and self.train_timesteps >= 10, "train_timesteps must be at least 10")
        need(self.beta_schedule in ("linear", "scaled_linear", "squaredcos_cap_v2"),
             "beta_schedule must be linear, scaled_linear or squaredcos_cap_v2")
        need(self.precision in ("auto", "fp32", "bf16"), "precision must be auto, fp32 or bf16")
        need(isinstance(self.checkpoint_every, int) and self.checkpoint_every >= 1, "checkpoint_every must be at least 1")
        need(isinstance(self.seed, int), "seed must be an integer")
        need(isinstance(self.max_slices_per_volume, int) and self.max_slices_per_volume >= 0,
             "max_slices_per_volume must be 0 (every content slice) or more")
        need(isinstance(self.calibration_samples, int) and 0 <= self.calibration_samples <= 4096,
             "calibration_samples must be 0-4096")
        if self.latent:
            need(self.dims == 3, "latent diffusion is offered for volumes (dims=3)")
            need(isinstance(self.autoencoder_channels, list) and len(self.autoencoder_channels) >= 2
                 and all(isinstance(c, int) and c > 0 and c % 8 == 0 for c in self.autoencoder_channels),
                 "autoencoder_channels needs two or more levels, each a positive multiple of 8")
            need(isinstance(self.latent_channels, int) and 1 <= self.latent_channels <= 64,
                 "latent_channels must be 1-64")
            need(isinstance(self.autoencoder_steps, int) and self.autoencoder_steps >= 1,
                 "autoencoder_steps must be at least 1")
            need(0 < float(self.autoencoder_learning_rate) < 1, "autoencoder_learning_rate must be between 0 and 1")
            need(float(self.kl_weight) >= 0 and float(self.adversarial_weight) >= 0,
                 "kl_weight and adversarial_weight must not be negative")
            grid = 2 ** (len(self.autoencoder_channels) - 1) * 2 ** levels
            need(self.resolution % grid == 0 and self.depth % grid == 0,
                 f"resolution and depth must be divisible by {grid} (the autoencoder's downsampling times the "
                 f"UNet's {len(self.channels)} levels)")

    @property
    def latent_factor(self) -> int:
        """How many voxels of the volume one latent voxel stands for, along each axis."""
        return 2 ** (len(self.autoencoder_channels) - 1) if self.latent else 1


def config_from_dict(cls, data: dict):
    """A validated config dataclass from a dict; unknown keys and bad values are a ConfigError naming them."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown config keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    try:
        config = cls(**data)
    except TypeError as exc:
        raise ConfigError(str(exc)) from None
    config.validate()
    return config


def with_overrides(data: dict, pairs: list[str]) -> dict:
    """`data` with `KEY=VALUE` overrides (a command's --set), each value parsed as the type it replaces."""
    data = dict(data)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in data:
            raise ConfigError(f"--set expects KEY=VALUE with a known key, got {pair!r}")
        data[key] = _parse(value, data[key])
    return data


def _parse(value: str, current):
    if isinstance(current, bool):
        return value.lower() in ("1", "true", "yes")
    if isinstance(current, int):
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"expected an integer, got {value!r}") from None
    if isinstance(current, float):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"expected a number, got {value!r}") from None
    if isinstance(current, list):
        parts = [v for v in value.split(",") if v]
        return [int(p) for p in parts] if current and isinstance(current[0], int) else parts
    return value
