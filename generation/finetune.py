"""Fine-tune a user's local Stable Diffusion pipeline on pool images with text prompts.

The RoentGen / "Spot the Fake Lungs" recipe: the pipeline's VAE and text encoder stay frozen; the UNet
learns to denoise the latents of real pool images captioned with text, either through LoRA adapters
(`peft`, the default: small, fast, little memory) or whole (`method=full`). Training runs through
Hugging Face `accelerate`, so the same code uses one CPU, one GPU (bf16/fp16 with `mixed_precision`)
or several GPUs and nodes under `accelerate launch`.

Images are framed exactly as served (`canonical.frame_codes` at the pipeline's resolution, the whole
field of view), grey repeated to the VAE's three channels. A caption is the item's own `prompt` where
the coordinator set one, else the config's template over modality, body part and data set.

The result is a new, self-contained pipeline folder: the base pipeline's files (hard-linked where the
file system allows) with the trained UNet (LoRA fused into it; the adapter alone kept in `lora/`),
`finetune.json` (config, data, source groups trained on) and `MODEL_CARD.md`. `checkpoints/last.pt`
resumes training bit for bit.
"""

import datetime
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from readerstudy.imaging import canonical, storage
from readerstudy.imaging.importing import content_slices
from readerstudy.imaging.models import Modality, Origin, PoolItem
from readerstudy.jobs.progress import NullProgress

from .config import ConfigError, config_from_dict

META = "finetune.json"
CHECKPOINT = "checkpoints/last.pt"
MODALITY_WORDS = {"XR": "x-ray", "CT": "CT", "MR": "MRI"}
LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]


@dataclass
class FinetuneConfig:
    modalities: list[str] = field(default_factory=lambda: ["XR"])
    datasets: list[str] = field(default_factory=list)  # data set names; empty: every real data set
    method: str = "lora"  # lora (peft adapters on the UNet's attention) | full (every UNet weight)
    lora_rank: int = 8
    lora_alpha: int = 8
    steps: int = 1000
    batch_size: int = 4
    learning_rate: float = 1e-4
    resolution: int = 0  # 0: the pipeline's own (UNet sample size x VAE scale)
    caption: str = "{modality} of the {body_part}"  # fields: modality, body_part, dataset
    seed: int = 0
    checkpoint_every: int = 100
    mixed_precision: str = "no"  # accelerate: no | fp16 | bf16 (GPUs)
    max_slices_per_volume: int = 8  # content slices taken from each volume (0: every one)

    @classmethod
    def from_dict(cls, data: dict) -> "FinetuneConfig":
        return config_from_dict(cls, data)

    def as_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        def need(condition, message):
            if not condition:
                raise ConfigError(message)

        need(isinstance(self.modalities, list) and self.modalities, "modalities must be a non-empty list")
        for m in self.modalities:
            need(m in Modality.values, f"unknown modality {m!r}; choose from {', '.join(Modality.values)}")
        need(self.method in ("lora", "full"), f"method must be lora or full, got {self.method!r}")
        need(isinstance(self.lora_rank, int) and 1 <= self.lora_rank <= 256, "lora_rank must be 1-256")
        need(isinstance(self.lora_alpha, int) and self.lora_alpha >= 1, "lora_alpha must be at least 1")
        need(isinstance(self.steps, int) and self.steps >= 1, "steps must be a positive whole number")
        need(isinstance(self.batch_size, int) and 1 <= self.batch_size <= 1024, "batch_size must be 1-1024")
        need(isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < 1,
             "learning_rate must be between 0 and 1")
        need(isinstance(self.resolution, int) and (self.resolution == 0 or 8 <= self.resolution <= 2048),
             "resolution must be 0 (the pipeline's own) or 8-2048")
        need(self.mixed_precision in ("no", "fp16", "bf16"), "mixed_precision must be no, fp16 or bf16")
        need(isinstance(self.checkpoint_every, int) and self.checkpoint_every >= 1, "checkpoint_every must be >= 1")
        need(isinstance(self.max_slices_per_volume, int) and self.max_slices_per_volume >= 0,
             "max_slices_per_volume must be 0 (every content slice) or more")
        try:
            self.caption.format(modality="x", body_part="x", dataset="x")
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise ConfigError(f"caption must be a template over {{modality}}, {{body_part}} and {{dataset}} ({exc})"
                              ) from None


def caption_for(item: PoolItem, template: str) -> str:
    """The item's own caption (its `prompt`) if set, else the template filled from its provenance."""
    if item.prompt:
        return item.prompt
    return template.format(modality=MODALITY_WORDS[item.modality], body_part=item.body_part or "body",
                           dataset=item.dataset.name if item.dataset_id else "")


@dataclass
class CaptionedImages:
    """Training images as served codes (N, R, R) uint16 with a caption index each."""

    codes: np.ndarray
    caption_of: np.ndarray
    captions: list[str]
    items: list[int]
    groups: list[str]
    datasets: dict

    def __len__(self):
        return len(self.codes)


def captioned_images(config: FinetuneConfig, resolution: int) -> CaptionedImages:
    """Every real pool image of the config's modalities (content slices of volumes), framed as served."""
    qs = PoolItem.objects.filter(origin=Origin.REAL, modality__in=config.modalities).select_related("dataset")
    if config.datasets:
        qs = qs.filter(dataset__name__in=config.datasets)
    items = list(qs.order_by("id"))
    if not items:
        scope = f" in data sets {', '.join(config.datasets)}" if config.datasets else ""
        raise ConfigError(f"no real {', '.join(config.modalities)} images{scope} in the pool to fine-tune on")
    images, caption_of, numbers = [], [], {}  # caption -> its number, in order of first use
    for item in items:
        codes = np.asarray(storage.load_master(item.master_file))
        number = numbers.setdefault(caption_for(item, config.caption), len(numbers))
        for k in content_slices(codes, config.max_slices_per_volume):
            images.append(canonical.frame_codes(codes[k][None], resolution, resolution, 1)[0])
            caption_of.append(number)
    return CaptionedImages(np.stack(images), np.array(caption_of), list(numbers), [i.pk for i in items],
                           sorted({i.source_group for i in items}),
                           {i.dataset.name: i.dataset.licence for i in items})


def _to_pixels(codes: np.ndarray):
    """Served codes to the VAE's input: (B, 3, R, R) in [-1, 1]."""
    import torch

    unit = torch.from_numpy(codes.astype(np.float32) / canonical.CODE_MAX)
    return (unit * 2 - 1)[:, None].repeat(1, 3, 1, 1)


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)  # the base's frozen parts are never written: sharing them saves gigabytes
    except OSError:
        shutil.copy2(src, dst)


def finetune(base, folder, config: FinetuneConfig, progress=None, resume: bool = False, name: str = "") -> Path:
    """Fine-tune the pipeline in `base` into the new folder `folder` (or resume training there).

    Returns the folder. Under `accelerate launch` every process trains and only the first saves.
    """
    import torch
    from accelerate import Accelerator
    from diffusers import DDPMScheduler, DiffusionPipeline

    from .training import atomic_torch_save

    config.validate()
    base, folder = Path(base), Path(folder)
    progress = progress or NullProgress()
    checkpoint_path = folder / CHECKPOINT
    if resume:
        if not checkpoint_path.exists():
            raise ConfigError(f"nothing to resume: {checkpoint_path} does not exist")
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        if {**state["config"], "steps": 0} != {**config.as_dict(), "steps": 0}:
            raise ConfigError("the config differs from the checkpoint's; only 'steps' may change on resume")
        base = Path(state["base"])
    elif folder.exists() and any(folder.iterdir()):
        raise ConfigError(f"{folder} is not empty; resume it or choose a new folder")
    if not (base / "model_index.json").exists():
        raise ConfigError(f"{base} is not a diffusers pipeline folder: model_index.json is missing")
    try:
        pipe = DiffusionPipeline.from_pretrained(base, local_files_only=True, use_safetensors=True)
    except Exception as exc:  # diffusers raises many types for broken folders
        raise ConfigError(f"{base} could not be loaded as a diffusers pipeline: {str(exc)[:300]}") from None
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        if getattr(pipe, part, None) is None:
            raise ConfigError(f"{base} is not a text-to-image Stable Diffusion pipeline: it has no {part}")
    unet, vae, text_encoder, tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
    resolution = config.resolution or unet.config.sample_size * vae_scale
    if resolution % vae_scale:
        raise ConfigError(f"resolution must be a multiple of {vae_scale} for this pipeline's VAE")

    accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=not torch.cuda.is_available())
    # Under `accelerate launch` each process draws its own batches (the first as a single process would,
    # so one process resumes bit for bit); only the first writes checkpoints and the folder.
    rank = accelerator.process_index
    torch.manual_seed(config.seed + rank)
    rng = np.random.default_rng(config.seed if rank == 0 else [config.seed, rank])
    generator = torch.Generator(device="cpu").manual_seed(config.seed + 7919 * rank)
    data = captioned_images(config, resolution)
    vae.requires_grad_(False).eval()
    text_encoder.requires_grad_(False).eval()
    if config.method == "lora":
        from peft import LoraConfig

        unet.requires_grad_(False)
        unet.add_adapter(LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, init_lora_weights="gaussian",
                                    target_modules=LORA_TARGETS))
    else:
        unet.requires_grad_(True)
    trainable = [p for p in unet.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
    step, losses = 0, []
    if resume:
        missing = set(state["trainable"]) - {n for n, p in unet.named_parameters() if p.requires_grad}
        if missing:
            raise ConfigError(f"the checkpoint does not fit this pipeline ({len(missing)} weights unknown)")
        with torch.no_grad():
            for n, p in unet.named_parameters():
                if n in state["trainable"]:
                    p.copy_(state["trainable"][n])
        optimiser.load_state_dict(state["optimiser"])
        step, losses = state["step"], state["losses"]
        if rank == 0:
            rng.bit_generator.state = state["numpy_rng"]
            generator.set_state(state["torch_rng"])
        else:
            rng = np.random.default_rng([config.seed, rank, step])
            generator.manual_seed(config.seed + 7919 * rank + step)
    unet, optimiser = accelerator.prepare(unet, optimiser)
    device = accelerator.device
    vae.to(device)
    text_encoder.to(device)
    with torch.no_grad():
        ids = tokenizer(data.captions, padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids.to(device)
        embeddings = text_encoder(ids)[0]

    def checkpoint():
        if not accelerator.is_main_process:
            return
        model = accelerator.unwrap_model(unet)
        atomic_torch_save({"base": str(base.resolve()), "config": config.as_dict(), "step": step, "losses": losses,
                      "trainable": {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad},
                      "optimiser": optimiser.state_dict(), "numpy_rng": rng.bit_generator.state,
                      "torch_rng": generator.get_state()}, checkpoint_path)

    progress.start(config.steps)
    progress.advance(step)
    unet.train()
    while step < config.steps:
        progress.check_cancelled()
        index = rng.integers(0, len(data), size=config.batch_size)
        pixels = _to_pixels(data.codes[index]).to(device)
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.sample(generator=generator) * vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=generator).to(device)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(index),), generator=generator).to(device)
        noisy = noise_scheduler.add_noise(latents, noise, t)
        target = (noise_scheduler.get_velocity(latents, noise, t)
                  if noise_scheduler.config.prediction_type == "v_prediction" else noise)
        with accelerator.autocast():
            prediction = unet(noisy, t, encoder_hidden_states=embeddings[torch.as_tensor(data.caption_of[index])]).sample
        loss = torch.nn.functional.mse_loss(prediction.float(), target.float())
        optimiser.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(trainable, 1.0)
        optimiser.step()
        step += 1
        losses.append(loss.item())
        progress.advance(1, f"step {step}/{config.steps} loss {np.mean(losses[-50:]):.4f}")
        if step % config.checkpoint_every == 0 or step == config.steps:
            checkpoint()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _save_folder(base, folder, accelerator.unwrap_model(unet), config, data, losses, name or folder.name,
                     resolution)
    return folder


def _save_folder(base: Path, folder: Path, unet, config: FinetuneConfig, data: CaptionedImages, losses, name,
                 resolution) -> None:
    """The base pipeline's files with the trained UNet, its meta and model card."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in base.iterdir():
        target = folder / entry.name
        if entry.name in ("unet", "lora", "checkpoints", META, "MODEL_CARD.md") or target.exists():
            continue
        if entry.is_dir():
            shutil.copytree(entry, target, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, target)
    if config.method == "lora":
        unet.save_lora_adapter(folder / "lora", safe_serialization=True)  # the adapter alone, to reuse
        unet.fuse_lora(lora_scale=1.0)
        unet.unload_lora()
    shutil.rmtree(folder / "unet", ignore_errors=True)
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    meta = {
        "format": "readerstudy-finetune/1", "name": name, "base": str(base.resolve()), "config": config.as_dict(),
        "resolution": resolution, "steps_trained": len(losses),
        "final_loss": float(np.mean(losses[-50:])) if losses else None,
        "training_items": len(data.items), "training_images": len(data), "captions": data.captions[:50],
        # Source groups trained on: studies never show their real items beside this model's samples.
        "training_groups": data.groups, "datasets": data.datasets,
        "trained_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    (folder / META).write_text(json.dumps(meta, indent=2))
    (folder / "MODEL_CARD.md").write_text(model_card(meta))


def read_meta(folder) -> dict:
    path = Path(folder) / META
    if not path.exists():
        raise ConfigError(f"{folder} is not a fine-tuned pipeline folder: {META} is missing (did training finish?)")
    return json.loads(path.read_text())


def model_card(meta: dict) -> str:
    c = meta["config"]
    method = (f"LoRA (peft) on the UNet's attention projections, rank {c['lora_rank']}, alpha {c['lora_alpha']}, "
              "fused into the saved UNet (the adapter alone is in lora/)" if c["method"] == "lora"
              else "every UNet weight")
    datasets = "\n".join(f"- {name} — licence: {licence}" for name, licence in meta["datasets"].items())
    captions = "\n".join(f"- {text}" for text in meta["captions"][:10])
    return f"""# {meta['name']}

**Not for clinical use.** A Stable Diffusion pipeline fine-tuned on pool images for blinded reader
studies. Its output must never be used for diagnosis or treatment.

- Base pipeline: `{meta['base']}` (its own licence applies to the weights)
- Fine-tuned: {method}; {meta['steps_trained']} steps, batch {c['batch_size']}, learning rate {c['learning_rate']},
  seed {c['seed']}, mixed precision {c['mixed_precision']}, final loss {meta['final_loss']}
- Images: {meta['training_images']} at {meta['resolution']}x{meta['resolution']} (framed as served) from
  {meta['training_items']} real pool items in {len(meta['training_groups'])} source groups (recorded in
  finetune.json: studies never show them as real cases beside this model's samples)

## Captions (prompts it learned)

{captions}

## Training data and licences

{datasets}
"""
