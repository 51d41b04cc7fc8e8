"""DDIM sampling from built-in model folders.

Sample i of a request with seed s starts from noise drawn with seed s + i, and
DDIM with eta = 0 is deterministic, so the same model, seed and step count give
the same pixels every time.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler

from . import calibration
from .config import DEFAULT_STEPS, ConfigError, TrainConfig
from .intensity import model_to_unit
from .networks import denoise, load_autoencoder, load_network
from .registry import read_model_folder
from .training import pick_device



@dataclass
class LoadedModel:
    folder: Path
    meta: dict
    config: TrainConfig
    network: torch.nn.Module
    device: torch.device
    autoencoder: torch.nn.Module | None = None  # latent models decode their samples with it

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape the diffusion runs in: the image, or a latent model's latent grid."""
        r, f = self.config.resolution, self.config.latent_factor
        if self.config.latent:
            return (self.config.latent_channels, self.config.depth // f, r // f, r // f)
        return (1, self.config.depth, r, r) if self.config.dims == 3 else (1, r, r)


_cache: dict[str, LoadedModel] = {}


def load_model(folder, device: torch.device | None = None) -> LoadedModel:
    """Load (and cache per process) a built-in model folder."""
    folder = Path(folder).resolve()
    device = device or pick_device()
    key = f"{folder}:{device}"
    if key not in _cache:
        meta = read_model_folder(folder)
        config = TrainConfig.from_dict(meta["config"])
        network = load_network(folder, config).to(device)
        autoencoder = load_autoencoder(folder, config).to(device) if config.latent else None
        _cache[key] = LoadedModel(folder, meta, config, network, device, autoencoder)
    return _cache[key]


def forget(folder) -> None:
    """Drop a model folder from this process's cache (after its files changed)."""
    prefix = f"{Path(folder).resolve()}:"
    for key in [k for k in _cache if k.startswith(prefix)]:
        del _cache[key]


def sample(model: LoadedModel, modality: str, seeds: list[int], steps: int = DEFAULT_STEPS, batch_size: int = 8,
           progress=None, on_step=None, model_space: bool = False, calibrated: bool = True) -> np.ndarray:
    """Samples in canonical unit space [0, 1] (codes / 4095), shape (len(seeds), [depth,] rows, cols).

    Values go through the model's intensity calibration where it has one (generation/calibration.py);
    `model_space` returns them in the model's own space instead (what calibration measures).

    `on_step(done, total)` is called after every denoising step, so a job can show
    progress (and stay alive) within a batch that takes minutes.
    """
    if modality not in model.config.modalities:
        raise ConfigError(
            f"this model makes {', '.join(model.config.modalities)}, not {modality}"
        )
    if not 1 <= steps <= model.config.train_timesteps:
        raise ConfigError(f"steps must be between 1 and {model.config.train_timesteps}")
    scheduler = DDIMScheduler.from_pretrained(model.folder / "scheduler", local_files_only=True)
    scheduler.set_timesteps(steps)
    label = model.config.modalities.index(modality)
    out = []
    for start in range(0, len(seeds), batch_size):
        chunk = seeds[start : start + batch_size]
        noise = torch.stack(
            [torch.randn(model.sample_shape, generator=torch.Generator().manual_seed(int(s))) for s in chunk]
        ).to(model.device)
        labels = torch.full((len(chunk),), label, dtype=torch.int64, device=model.device)
        x = noise
        with torch.no_grad():
            for k, t in enumerate(scheduler.timesteps, start=1):
                eps = denoise(model.network, x, t.expand(len(chunk)).to(model.device), labels)
                x = scheduler.step(eps, t, x, eta=0.0).prev_sample
                if on_step:
                    on_step(k, len(scheduler.timesteps))
        if model.autoencoder is not None:  # latent diffusion: back from the latent grid to the volume
            with torch.no_grad():
                x = model.autoencoder.decode_stage_2_outputs(x / model.meta["latent"]["scale_factor"])
        values = ((x.clamp(-1, 1) + 1) / 2).squeeze(1).float().cpu().numpy()
        if calibrated and modality in model.meta.get("calibration", {}):
            values = calibration.apply(values, model.meta["calibration"][modality])
        out.append(values if model_space else model_to_unit(values, modality, model.config.companded_ct))
        if progress:
            progress.advance(len(chunk))
    return np.concatenate(out)
