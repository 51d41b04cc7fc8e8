"""The denoising networks: diffusers' UNet2DModel for images, MONAI's DiffusionModelUNet for volumes.

Both are class-conditional on modality. `denoise` hides their different call
signatures; `save_network`/`load_network` store either in a save_pretrained-style
folder (config JSON + safetensors).
"""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .config import TrainConfig

NETWORK_DIR = "unet"


def build_network(config: TrainConfig) -> torch.nn.Module:
    if config.dims == 2:
        from diffusers import UNet2DModel

        levels = len(config.channels)
        attn_level = levels - 2 if config.attention else -1
        down = tuple("AttnDownBlock2D" if i == attn_level else "DownBlock2D" for i in range(levels))
        up = tuple(reversed(["AttnUpBlock2D" if i == attn_level else "UpBlock2D" for i in range(levels)]))
        return UNet2DModel(
            sample_size=config.resolution,
            in_channels=1,
            out_channels=1,
            block_out_channels=tuple(config.channels),
            layers_per_block=config.layers_per_block,
            down_block_types=down,
            up_block_types=up,
            num_class_embeds=len(config.modalities),
            norm_num_groups=8,
        )
    from monai.networks.nets import DiffusionModelUNet

    return DiffusionModelUNet(**_monai_kwargs(config))


def _monai_kwargs(config: TrainConfig) -> dict:
    channels = config.latent_channels if config.latent else 1  # a latent model denoises the autoencoder's latents
    return {
        "spatial_dims": 3,
        "in_channels": channels,
        "out_channels": channels,
        "channels": tuple(config.channels),
        "attention_levels": tuple(False for _ in config.channels),
        "num_res_blocks": config.layers_per_block,
        "num_head_channels": 8,
        "norm_num_groups": 8,
        "num_class_embeds": len(config.modalities),
    }


def denoise(network: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Predicted noise for a batch, whichever network it is."""
    if x.ndim == 4:
        return network(x, t, class_labels=labels).sample
    return network(x, t, class_labels=labels)


def save_network(network: torch.nn.Module, config: TrainConfig, folder: Path, dtype=torch.float32) -> None:
    """Write the network in a save_pretrained layout; `dtype` lets shipped demo weights be halved."""
    folder = Path(folder) / NETWORK_DIR
    if config.dims == 2:
        shipped = type(network).from_config(network.config).to(dtype)
        shipped.load_state_dict({k: v.to(dtype) for k, v in network.state_dict().items()})
        shipped.save_pretrained(folder, safe_serialization=True)
        return
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": "monai.DiffusionModelUNet", **_monai_kwargs(config)}, indent=2))
    state = {k: v.detach().to(dtype).contiguous() for k, v in network.state_dict().items()}
    save_file(state, folder / "diffusion_pytorch_model.safetensors")


def load_network(folder: Path, config: TrainConfig) -> torch.nn.Module:
    folder = Path(folder) / NETWORK_DIR
    if config.dims == 2:
        from diffusers import UNet2DModel

        # Explicit dtype and no low-memory loading: weights may be shipped in float16,
        # and low-memory loading needs the optional `accelerate` package.
        network = UNet2DModel.from_pretrained(
            folder, local_files_only=True, torch_dtype=torch.float32, low_cpu_mem_usage=False
        )
    else:
        network = build_network(config)
        network.load_state_dict({k: v.float() for k, v in load_file(folder / "diffusion_pytorch_model.safetensors").items()})
    return network.float().eval()


AUTOENCODER_DIR = "autoencoder"


def _autoencoder_kwargs(config: TrainConfig) -> dict:
    levels = len(config.autoencoder_channels)
    return {
        "spatial_dims": 3, "in_channels": 1, "out_channels": 1, "channels": tuple(config.autoencoder_channels),
        "latent_channels": config.latent_channels, "num_res_blocks": config.layers_per_block,
        "attention_levels": (False,) * levels, "norm_num_groups": 8,
        "with_encoder_nonlocal_attn": False, "with_decoder_nonlocal_attn": False,
    }


def build_autoencoder(config: TrainConfig) -> torch.nn.Module:
    """MONAI's AutoencoderKL for a latent volume model (each level after the first halves every axis)."""
    from monai.networks.nets import AutoencoderKL

    return AutoencoderKL(**_autoencoder_kwargs(config))


def save_autoencoder(autoencoder: torch.nn.Module, config: TrainConfig, folder: Path, dtype=torch.float32) -> None:
    folder = Path(folder) / AUTOENCODER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": "monai.AutoencoderKL",
                                                    **_autoencoder_kwargs(config)}, indent=2))
    state = {k: v.detach().to(dtype).contiguous() for k, v in autoencoder.state_dict().items()}
    save_file(state, folder / "diffusion_pytorch_model.safetensors")


def load_autoencoder(folder: Path, config: TrainConfig) -> torch.nn.Module:
    autoencoder = build_autoencoder(config)
    weights = load_file(Path(folder) / AUTOENCODER_DIR / "diffusion_pytorch_model.safetensors")
    autoencoder.load_state_dict({k: v.float() for k, v in weights.items()})
    return autoencoder.float().eval()
