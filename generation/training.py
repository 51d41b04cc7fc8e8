"""DDPM training of the built-in models, with resumable checkpoints and an EMA copy.

A model folder holds `generator.json` (what it is and how it was trained),
`unet/` (EMA weights, save_pretrained layout), `scheduler/` (DDPM noise schedule),
`MODEL_CARD.md`, and while training `checkpoints/last.pt` (everything needed to
resume bit-for-bit: weights, EMA, optimiser, step, random states).
"""

import copy
import datetime
from dataclasses import dataclass
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMScheduler

from readerstudy.jobs.progress import NullProgress

from .config import ConfigError, TrainConfig
from .data import TrainingSet, build_training_set
from .networks import build_autoencoder, build_network, denoise, save_autoencoder, save_network

CHECKPOINT = "checkpoints/last.pt"
META = "generator.json"


def native_bf16_available(device: torch.device) -> bool:
    """bf16 helps only where the hardware computes it natively; emulated it is slower."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def use_bf16(config: TrainConfig, device: torch.device) -> bool:
    if config.precision == "fp32":
        return False
    if config.precision == "bf16":
        return True
    return native_bf16_available(device)


def make_scheduler(config: TrainConfig) -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=config.train_timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type="epsilon",
        clip_sample=True,
    )


def atomic_torch_save(obj, path: Path) -> None:
    """torch.save to `path` through a temporary file, so a crash never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="partial-", suffix=".pt")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def train(config: TrainConfig, folder: Path, progress=None, resume: bool = False, name: str = "", data=None) -> Path:
    """Train (or resume training) the model in `folder`; returns the folder once saved.

    `data` (a TrainingSet) defaults to the real pool items the config selects.
    """
    from accelerate import Accelerator

    config.validate()
    folder = Path(folder)
    progress = progress or NullProgress()
    # Through accelerate: one device here, every GPU and node under `accelerate launch` (the networks
    # wrapped for data-parallel training; bf16 stays the explicit autocast below).
    accelerator = Accelerator(cpu=pick_device().type == "cpu")
    device = accelerator.device
    rank = accelerator.process_index
    bf16 = use_bf16(config, device)
    checkpoint_path = folder / CHECKPOINT
    if resume:
        if not checkpoint_path.exists():
            raise ConfigError(f"nothing to resume: {checkpoint_path} does not exist")
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        saved = TrainConfig.from_dict(state["config"])
        if {**saved.as_dict(), "steps": 0} != {**config.as_dict(), "steps": 0}:
            raise ConfigError("the config differs from the checkpoint's; only 'steps' may change on resume")
    elif checkpoint_path.exists() or (folder / META).exists():
        raise ConfigError(f"{folder} already holds a model; resume it or choose a new folder")

    torch.manual_seed(config.seed)  # the same initial weights in every process
    # Each process draws its own batches; the first as a single process would, so it resumes bit for bit.
    rng = np.random.default_rng(config.seed if rank == 0 else [config.seed, rank])
    data = data if data is not None else build_training_set(config)
    noise_generator = torch.Generator(device="cpu").manual_seed(config.seed + 7919 * rank)
    progress.start(config.steps + (config.autoencoder_steps if config.latent else 0))
    stage_one = None
    if config.latent:  # first the autoencoder; the diffusion model then learns its (scaled) latents
        stage_one = _autoencoder_stage(config, data, accelerator, rng, noise_generator, progress, checkpoint_path,
                                       state if resume else None)
        data = stage_one.latents
    network = build_network(config).to(device)
    ema = copy.deepcopy(network).requires_grad_(False)
    optimiser = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=0.0)
    scheduler = make_scheduler(config)
    step, losses = 0, []
    if resume and "network" in state:
        network.load_state_dict(state["network"])
        ema.load_state_dict(state["ema"])
        optimiser.load_state_dict(state["optimiser"])
        step, losses = state["step"], state["losses"]
        _restore_streams(rng, noise_generator, state, rank, config.seed, step)
    network, optimiser = accelerator.prepare(network, optimiser)

    def checkpoint():
        if not accelerator.is_main_process:
            return
        atomic_torch_save(
            {
                "config": config.as_dict(), "network": accelerator.unwrap_model(network).state_dict(),
                "ema": ema.state_dict(),
                "optimiser": optimiser.state_dict(), "step": step, "losses": losses,
                "numpy_rng": rng.bit_generator.state, "torch_rng": noise_generator.get_state(),
                **(stage_one.checkpoint_part() if stage_one else {}),
            },
            checkpoint_path,
        )

    progress.advance(step)
    alphas = scheduler.alphas_cumprod.to(device)
    network.train()
    while step < config.steps:
        progress.check_cancelled()
        x0, labels = data.batch(rng, config.batch_size)
        x0, labels = x0.to(device), labels.to(device)
        noise = torch.randn(x0.shape, generator=noise_generator).to(device)
        t = torch.randint(0, config.train_timesteps, (x0.shape[0],), generator=noise_generator).to(device)
        a = alphas[t].view(-1, *([1] * (x0.ndim - 1)))
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        for group in optimiser.param_groups:
            group["lr"] = config.learning_rate * min(1.0, (step + 1) / max(1, config.warmup_steps))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            prediction = denoise(network, noisy, t, labels)
        loss = torch.nn.functional.mse_loss(prediction.float(), noise)
        optimiser.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(network.parameters(), 1.0)
        optimiser.step()
        with torch.no_grad():
            decay = min(config.ema_decay, (1 + step) / (10 + step))
            for e, p in zip(ema.parameters(), accelerator.unwrap_model(network).parameters()):
                e.lerp_(p, 1 - decay)
        step += 1
        losses.append(loss.item())
        progress.advance(1, f"step {step}/{config.steps} loss {np.mean(losses[-50:]):.4f}")
        if step % config.checkpoint_every == 0 or step == config.steps:
            checkpoint()

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_model_folder(folder, ema, config, scheduler, data, losses, name=name or folder.name, bf16=bf16,
                          stage_one=stage_one)
    return folder


def _restore_streams(rng, noise_generator, state: dict, rank: int, seed: int, step: int) -> None:
    """Random streams at a checkpoint: the first process's as saved, the others' reseeded at that step."""
    if rank == 0:
        rng.bit_generator.state = state["numpy_rng"]
        noise_generator.set_state(state["torch_rng"])
    else:
        rng.bit_generator.state = np.random.default_rng([seed, rank, step]).bit_generator.state
        noise_generator.manual_seed(seed + 7919 * rank + step)


@dataclass
class AutoencoderStage:
    """The trained autoencoder of a latent model, its latent scale and the training set as latents."""

    autoencoder: torch.nn.Module
    scale_factor: float
    latents: TrainingSet
    losses: list
    pixels: torch.Tensor  # the training volumes themselves (intensity calibration compares with them)

    def checkpoint_part(self) -> dict:
        return {"stage": "diffusion", "autoencoder": self.autoencoder.state_dict(),
                "scale_factor": self.scale_factor, "autoencoder_losses": self.losses}


def _autoencoder_stage(config: TrainConfig, data: TrainingSet, accelerator, rng, noise_generator, progress,
                       checkpoint_path: Path, saved: dict | None) -> AutoencoderStage:
    """Train (or restore) the AutoencoderKL of a latent model: L1 + KL (+ patch-adversarial), checkpointed."""
    device = accelerator.device
    autoencoder = build_autoencoder(config).to(device)
    if saved is not None and saved.get("stage") == "diffusion":  # finished before the checkpoint was written
        autoencoder.load_state_dict(saved["autoencoder"])
        progress.advance(config.autoencoder_steps)
        return AutoencoderStage(autoencoder.eval(), saved["scale_factor"],
                                _latents(autoencoder, data, saved["scale_factor"], device)[0],
                                saved["autoencoder_losses"], data.images)
    optimiser = torch.optim.AdamW(autoencoder.parameters(), lr=config.autoencoder_learning_rate, weight_decay=0.0)
    adversarial = config.adversarial_weight > 0
    if adversarial:
        from monai.losses import PatchAdversarialLoss
        from monai.networks.nets import PatchDiscriminator

        # Each layer halves the volume with a 4-wide kernel: as many as its smallest side allows, up to 3.
        layers = int(max(1, min(3, np.log2(min(config.depth, config.resolution)) - 2)))
        discriminator = PatchDiscriminator(spatial_dims=3, num_layers_d=layers, channels=16, in_channels=1,
                                           out_channels=1, norm="INSTANCE").to(device)
        d_optimiser = torch.optim.AdamW(discriminator.parameters(), lr=config.autoencoder_learning_rate)
        adversarial_loss = PatchAdversarialLoss(criterion="least_squares")
    step, losses = 0, []
    if saved is not None:
        autoencoder.load_state_dict(saved["autoencoder"])
        optimiser.load_state_dict(saved["autoencoder_optimiser"])
        if adversarial:
            discriminator.load_state_dict(saved["discriminator"])
            d_optimiser.load_state_dict(saved["discriminator_optimiser"])
        step, losses = saved["autoencoder_step"], saved["autoencoder_losses"]
        _restore_streams(rng, noise_generator, saved, accelerator.process_index, config.seed, step)
        if accelerator.process_index == 0:
            torch.set_rng_state(saved["torch_global_rng"])  # AutoencoderKL samples its latents with it
    autoencoder, optimiser = accelerator.prepare(autoencoder, optimiser)
    if adversarial:
        discriminator, d_optimiser = accelerator.prepare(discriminator, d_optimiser)
    progress.advance(step)
    autoencoder.train()
    while step < config.autoencoder_steps:
        progress.check_cancelled()
        x, _ = data.batch(rng, config.batch_size)
        x = x.to(device)
        reconstruction, z_mu, z_sigma = autoencoder(x)
        l1 = torch.nn.functional.l1_loss(reconstruction.float(), x)
        kl = 0.5 * torch.sum(z_mu.pow(2) + z_sigma.pow(2) - torch.log(z_sigma.pow(2)) - 1, dim=[1, 2, 3, 4]).mean()
        loss = l1 + config.kl_weight * kl
        if adversarial:
            fake = discriminator(reconstruction.contiguous().float())[-1]
            loss = loss + config.adversarial_weight * adversarial_loss(fake, target_is_real=True, for_discriminator=False)
        optimiser.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(autoencoder.parameters(), 1.0)
        optimiser.step()
        if adversarial:
            d_loss = (adversarial_loss(discriminator(reconstruction.detach().contiguous())[-1], target_is_real=False,
                                       for_discriminator=True)
                      + adversarial_loss(discriminator(x.contiguous())[-1], target_is_real=True,
                                         for_discriminator=True)) / 2
            d_optimiser.zero_grad(set_to_none=True)
            accelerator.backward(d_loss)
            d_optimiser.step()
        step += 1
        losses.append(l1.item())
        progress.advance(1, f"autoencoder step {step}/{config.autoencoder_steps} L1 {np.mean(losses[-50:]):.4f}")
        if accelerator.is_main_process and (step % config.checkpoint_every == 0 or step == config.autoencoder_steps):
            atomic_torch_save({
                "config": config.as_dict(), "stage": "autoencoder",
                "autoencoder": accelerator.unwrap_model(autoencoder).state_dict(),
                "autoencoder_optimiser": optimiser.state_dict(), "autoencoder_step": step,
                "autoencoder_losses": losses, "numpy_rng": rng.bit_generator.state,
                "torch_rng": noise_generator.get_state(), "torch_global_rng": torch.get_rng_state(),
                **({"discriminator": accelerator.unwrap_model(discriminator).state_dict(),
                    "discriminator_optimiser": d_optimiser.state_dict()} if adversarial else {}),
            }, checkpoint_path)
    autoencoder = accelerator.unwrap_model(autoencoder).eval()
    latents, scale = _latents(autoencoder, data, None, device)
    return AutoencoderStage(autoencoder, scale, latents, losses, data.images)


def _latents(autoencoder, data: TrainingSet, scale_factor: float | None, device) -> tuple[TrainingSet, float]:
    """The training volumes as latent means, scaled to unit spread (the scale is kept with the model)."""
    with torch.no_grad():
        means = torch.cat([autoencoder.encode(data.images[i:i + 8].to(device))[0].cpu()
                           for i in range(0, len(data), 8)])
    scale = scale_factor if scale_factor is not None else float(1 / means.std().clamp_min(1e-6))
    return TrainingSet(images=means * scale, labels=data.labels, items=data.items, datasets=data.datasets,
                       groups=data.groups, orientation=data.orientation), scale


def save_model_folder(folder, network, config, scheduler, data, losses, name, bf16, dtype=torch.float32,
                      stage_one: "AutoencoderStage | None" = None) -> None:
    folder = Path(folder)
    save_network(network, config, folder, dtype=dtype)
    if stage_one is not None:
        save_autoencoder(stage_one.autoencoder, config, folder, dtype=dtype)
    scheduler.save_pretrained(folder / "scheduler")
    meta = {
        "format": "readerstudy-generator/1",
        "name": name,
        "dims": config.dims,
        "modalities": config.modalities,
        "resolution": config.resolution,
        "depth": config.depth if config.dims == 3 else 1,
        "config": config.as_dict(),
        "steps_trained": len(losses),
        "final_loss": float(np.mean(losses[-50:])) if losses else None,
        "precision": "bf16" if bf16 else "fp32",
        "training_items": len(data.items),
        "training_images": len(data),
        # Source groups trained on: their real items are never drawn beside this model's samples.
        "training_groups": data.groups,
        # Display orientation of the volumes it makes (A/P/L/R markers need it for real and synthetic alike).
        "orientation": data.orientation,
        "datasets": data.datasets,
        "trained_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
    }
    if stage_one is not None:
        meta["latent"] = {"scale_factor": stage_one.scale_factor, "factor": config.latent_factor,
                          "channels": config.latent_channels, "autoencoder_steps_trained": len(stage_one.losses),
                          "autoencoder_final_l1": float(np.mean(stage_one.losses[-50:])) if stage_one.losses else None}
    if config.calibration_samples:
        from .calibration import calibrate
        from .sampling import LoadedModel

        model = LoadedModel(folder, meta, config, network.eval(), next(network.parameters()).device,
                            stage_one.autoencoder if stage_one else None)
        images, labels = _pixel_set(data, stage_one)
        meta["calibration"] = calibrate(model, images, labels, steps=CALIBRATION_STEPS)
    (folder / META).write_text(json.dumps(meta, indent=2))
    (folder / "MODEL_CARD.md").write_text(model_card(meta))


CALIBRATION_STEPS = 50


def _pixel_set(data: TrainingSet, stage_one) -> tuple[np.ndarray, np.ndarray]:
    """The training images in [-1, 1] and their labels (a latent model's data set holds latents)."""
    images = stage_one.pixels if stage_one is not None else data.images
    return images.numpy(), data.labels.numpy()


def _calibration_line(meta: dict) -> str:
    table = meta.get("calibration")
    if not table:
        return ""
    n = next(iter(table.values()))["samples"]
    return (f"\n- Intensity calibration: a monotone map of its output onto the training images' intensities per "
            f"modality ({', '.join(table)}), from {n} samples each, so CT air, backgrounds and the grey-value "
            "range match real images (generation/calibration.py)")


def _latent_line(meta: dict) -> str:
    latent = meta.get("latent")
    if not latent:
        return ""
    c = meta["config"]
    return (f"\n- Latent diffusion (as Medical Diffusion): a MONAI AutoencoderKL (channels {c['autoencoder_channels']}, "
            f"{latent['channels']} latent channels, {latent['factor']}x smaller along each axis; L1 + KL weight "
            f"{c['kl_weight']}, adversarial weight {c['adversarial_weight']}; {latent['autoencoder_steps_trained']} "
            f"steps, final L1 {latent['autoencoder_final_l1']}), the diffusion model in its latent space "
            f"(scale factor {latent['scale_factor']:.4f})")


def model_card(meta: dict) -> str:
    datasets = "\n".join(f"- {name} — licence: {licence}" for name, licence in meta["datasets"].items())
    kind = "2D image" if meta["dims"] == 2 else f"volume ({meta['depth']} slices)"
    size = f"{meta['resolution']}×{meta['resolution']}"
    return f"""# {meta['name']}

**Not for clinical use.** A research model that makes synthetic medical images for
blinded reader studies. Its output must never be used for diagnosis or treatment.

- Kind: class-conditional DDPM ({kind}, {size}), sampled with DDIM{_latent_line(meta)}{_calibration_line(meta)}
- Classes (modalities): {', '.join(meta['modalities'])}
- Trained: {meta['steps_trained']} steps, batch {meta['config']['batch_size']}, learning rate {meta['config']['learning_rate']},
  EMA {meta['config']['ema_decay']}, seed {meta['config']['seed']}, precision {meta['precision']}, final loss {meta['final_loss']}
- Training data: {meta['training_images']} images from {meta['training_items']} real pool items in
  {len(meta.get('training_groups', []))} source groups (recorded in generator.json: studies never show them as
  real cases beside this model's samples)

## Training data and licences

{datasets}

## Limits

Trained on few images, the model can reproduce its training images closely
(memorisation). The platform checks every sample against its nearest real
training image and flags near-copies, which studies leave out unless a
coordinator allows them with a recorded reason. Pixel statistics, resolution
and noise of synthetic images differ from real ones; all pool items are served through one canonical writer
at one matrix size so that file properties are not a tell.
"""
