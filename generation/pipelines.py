"""A user's own diffusers pipeline folder (e.g. a fine-tuned Stable Diffusion), loaded offline."""

import inspect
from pathlib import Path

import numpy as np
import torch

from .config import ConfigError

_cache: dict[str, object] = {}


def load_pipeline(path):
    """Load a pipeline folder with local_files_only; a clear ConfigError for anything else."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path} is not a folder")
    if not (path / "model_index.json").exists():
        raise ConfigError(f"{path} is not a diffusers pipeline folder: model_index.json is missing")
    key = str(path.resolve())
    if key not in _cache:
        from diffusers import DiffusionPipeline

        try:
            # Offline (settings set HF_HUB_OFFLINE before anything imports huggingface_hub), and weights
            # only as safetensors: a pickled checkpoint in a folder can run code when loaded.
            pipe = DiffusionPipeline.from_pretrained(path, local_files_only=True, use_safetensors=True)
        except Exception as exc:  # diffusers raises many types for broken folders
            raise ConfigError(f"{path} could not be loaded as a diffusers pipeline: {str(exc)[:300]}") from None
        pipe.set_progress_bar_config(disable=True)
        if torch.cuda.is_available():
            pipe = pipe.to("cuda")
        _cache[key] = pipe
    return _cache[key]


def takes_prompt(pipe) -> bool:
    return "prompt" in inspect.signature(pipe.__call__).parameters


def describe_pipeline(path) -> dict:
    pipe = load_pipeline(path)
    return {"pipeline_class": type(pipe).__name__, "takes_prompt": takes_prompt(pipe)}


def run_pipeline(path, seeds: list[int], steps: int, prompt: str = "") -> np.ndarray:
    """One grey image in [0, 1] per seed (colour output becomes luminance)."""
    pipe = load_pipeline(path)
    kwargs = {"num_inference_steps": steps, "output_type": "np"}
    if takes_prompt(pipe):
        if not prompt:
            raise ConfigError("this pipeline needs a text prompt")
        kwargs["prompt"] = prompt
    elif prompt:
        raise ConfigError("this pipeline takes no text prompt")
    images = []
    for seed in seeds:
        generator = torch.Generator(device=pipe.device).manual_seed(int(seed))
        image = np.asarray(pipe(generator=generator, **kwargs).images[0], dtype=np.float32)
        if image.ndim == 3:
            image = image[..., 0] if image.shape[-1] == 1 else image[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
        images.append(np.clip(image, 0, 1))
    return np.stack(images)


def register_pipeline_folder(path, name: str, modalities: list[str], licence: str, version: str = "1",
                             model_card: str = "", config: dict | None = None):
    """Create or update the generator for a local pipeline folder (checked by loading it). (generator, created)"""
    from .models import Generator

    info = describe_pipeline(path)
    return Generator.objects.update_or_create(
        name=name, version=version,
        defaults={"kind": Generator.Kind.LOCAL_PIPELINE, "modalities": modalities, "path": str(path),
                  "licence": licence[:300], "model_card": model_card, "config": {**(config or {}), **info}},
    )
