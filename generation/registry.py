"""Model folders on disk and the Generator rows that point at them."""

import json
import re
from pathlib import Path

from django.conf import settings

from .config import ConfigError, TrainConfig
from .models import Generator
from .training import META


def models_root(root=None) -> Path:
    return Path(root) if root else Path(settings.DATA_DIR) / "models"


def next_version_folder(name: str, root=None) -> Path:
    """root/<name>/v<N> with N one past the highest existing version."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name):
        raise ConfigError(f"generator name {name!r} may hold only letters, digits, '.', '_' and '-'")
    base = models_root(root) / name
    versions = [int(p.name[1:]) for p in base.glob("v*") if p.name[1:].isdigit()] if base.exists() else []
    return base / f"v{max(versions, default=0) + 1}"


def read_model_folder(folder) -> dict:
    """generator.json of a built-in model folder, after checking the folder is complete."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder")
    meta_path = folder / META
    if not meta_path.exists():
        raise ConfigError(f"{folder} is not a trained model folder: {META} is missing (did training finish?)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{meta_path} is not valid JSON: {exc}") from None
    if meta.get("format") != "readerstudy-generator/1":
        raise ConfigError(f"{meta_path} is not a reader-study generator description")
    TrainConfig.from_dict(meta["config"])
    needs = ["unet/config.json", "unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json"]
    if meta["config"].get("latent"):
        needs.append("autoencoder/diffusion_pytorch_model.safetensors")
    for needed in needs:
        if not (folder / needed).exists():
            raise ConfigError(f"{folder} is incomplete: {needed} is missing")
    return meta


def register_generator(folder, version: str | None = None) -> Generator:
    """Create or update the Generator for a built-in model folder."""
    folder = Path(folder).resolve()
    meta = read_model_folder(folder)
    version = version or (folder.name[1:] if re.fullmatch(r"v\d+", folder.name) else "1")
    licences = "; ".join(f"{name}: {lic}" for name, lic in meta["datasets"].items())
    generator, _ = Generator.objects.update_or_create(
        name=meta["name"],
        version=version,
        defaults={
            "kind": Generator.Kind.BUILTIN_2D if meta["dims"] == 2 else Generator.Kind.BUILTIN_3D,
            "modalities": meta["modalities"],
            "path": str(folder),
            "licence": f"Trained on: {licences}"[:300],
            "model_card": (folder / "MODEL_CARD.md").read_text() if (folder / "MODEL_CARD.md").exists() else "",
            "config": meta,
        },
    )
    return generator


def export_model_folder(src, dst, half: bool = True) -> Path:
    """Copy a trained model folder without its checkpoints, weights optionally in float16 (for shipping)."""
    import shutil

    import torch

    from .networks import load_autoencoder, load_network, save_autoencoder, save_network

    src, dst = Path(src), Path(dst)
    meta = read_model_folder(src)
    if dst.exists():
        raise ConfigError(f"{dst} already exists")
    config = TrainConfig.from_dict(meta["config"])
    dst.mkdir(parents=True)
    dtype = torch.float16 if half else torch.float32
    save_network(load_network(src, config), config, dst, dtype=dtype)
    if config.latent:
        save_autoencoder(load_autoencoder(src, config), config, dst, dtype=dtype)
    shutil.copytree(src / "scheduler", dst / "scheduler")
    for name in (META, "MODEL_CARD.md"):
        shutil.copy(src / name, dst / name)
    return dst
