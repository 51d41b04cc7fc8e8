"""Training and sampling throughput of generation/ beside a plain diffusers loop doing the same work.

Run by hand (not in CI), from the repository root:

    .venv/bin/python bench/generation_bench.py [--steps 20] [--write docs/benchmarks.md]

Both sides use the same UNet2DModel configuration (the demo model's), batch size,
image size and DDPM/DDIM schedules. "Ours" is generation.training.train (random
crops, gradient clipping, EMA, checkpoint at the end) and generation.sampling.sample
(per-sample seeded noise); "plain" is the textbook diffusers loop.
"""

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "readerstudy.settings")
os.environ.setdefault("READERSTUDY_DATA_DIR", tempfile.mkdtemp(prefix="bench-"))

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from diffusers import DDIMScheduler, DDPMScheduler  # noqa: E402

from generation.config import TrainConfig  # noqa: E402
from generation.data import TrainingSet  # noqa: E402
from generation.networks import build_network  # noqa: E402
from generation.sampling import load_model, sample  # noqa: E402
from generation.training import train  # noqa: E402


def synthetic_training_set(config: TrainConfig, n: int = 256) -> TrainingSet:
    size = config.resolution
    images = torch.rand(n, 1, size, size) * 2 - 1
    return TrainingSet(images=images, labels=torch.randint(0, len(config.modalities), (n,)), items=[], datasets={})


class Timer:
    """Progress sink that starts the clock after a warm-up of `skip` steps."""

    def __init__(self, skip):
        self.skip, self.count, self.t0 = skip, 0, None

    def start(self, total):
        pass

    def advance(self, n=1, message=""):
        self.count += n
        if self.count == self.skip:
            self.t0 = time.perf_counter()

    def check_cancelled(self):
        pass


def bench_ours_train(config, steps, warmup):
    folder = Path(tempfile.mkdtemp()) / "m"
    timer = Timer(warmup)
    config = TrainConfig.from_dict({**config.as_dict(), "steps": steps + warmup, "checkpoint_every": 10**9})
    train(config, folder, progress=timer, data=synthetic_training_set(config))
    elapsed = time.perf_counter() - timer.t0
    return steps * config.batch_size / elapsed, folder


def bench_plain_train(config, steps, warmup):
    torch.manual_seed(0)
    unet = build_network(config)
    scheduler = DDPMScheduler(num_train_timesteps=config.train_timesteps, beta_schedule=config.beta_schedule)
    optimiser = torch.optim.AdamW(unet.parameters(), lr=config.learning_rate)
    r, b = config.resolution, config.batch_size
    for i in range(steps + warmup):
        if i == warmup:
            t0 = time.perf_counter()
        x = torch.rand(b, 1, r, r) * 2 - 1
        labels = torch.randint(0, len(config.modalities), (b,))
        noise = torch.randn_like(x)
        t = torch.randint(0, config.train_timesteps, (b,))
        pred = unet(scheduler.add_noise(x, noise, t), t, class_labels=labels).sample
        loss = torch.nn.functional.mse_loss(pred, noise)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return steps * b / (time.perf_counter() - t0)


def bench_ours_sample(folder, n, steps):
    model = load_model(folder)
    sample(model, model.config.modalities[0], [0], steps=2)  # warm-up
    t0 = time.perf_counter()
    sample(model, model.config.modalities[0], list(range(n)), steps=steps, batch_size=n)
    return n / (time.perf_counter() - t0)


def bench_plain_sample(folder, n, steps):
    model = load_model(folder)
    scheduler = DDIMScheduler.from_pretrained(folder / "scheduler")
    scheduler.set_timesteps(steps)
    r = model.config.resolution
    labels = torch.zeros(n, dtype=torch.int64)
    t0 = time.perf_counter()
    x = torch.randn(n, 1, r, r, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(model.network(x, t, class_labels=labels).sample, t, x).prev_sample
    return n / (time.perf_counter() - t0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--sample-steps", type=int, default=25)
    parser.add_argument("--config", default="data/models/demo-2d.json")
    parser.add_argument("--write", help="append the results to this markdown file")
    args = parser.parse_args()
    config = TrainConfig.from_file(args.config)
    config = TrainConfig.from_dict({**config.as_dict(), "precision": "fp32"})
    torch.set_num_threads(torch.get_num_threads())
    ours_train, folder = bench_ours_train(config, args.steps, args.warmup)
    plain_train = bench_plain_train(config, args.steps, args.warmup)
    ours_sample = bench_ours_sample(folder, args.samples, args.sample_steps)
    plain_sample = bench_plain_sample(folder, args.samples, args.sample_steps)
    params = sum(p.numel() for p in build_network(config).parameters()) / 1e6
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), platform.processor())
    device = "CUDA " + torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({cpu}, {torch.get_num_threads()} threads)"
    lines = [
        f"## Generation throughput — {datetime.date.today().isoformat()}",
        "",
        f"Machine: {device}; torch {torch.__version__}; model {args.config} ({params:.2f} M parameters, "
        f"{config.resolution}x{config.resolution}, batch {config.batch_size}, fp32). "
        f"Command: `.venv/bin/python bench/generation_bench.py --steps {args.steps} --samples {args.samples} "
        f"--sample-steps {args.sample_steps}`.",
        "",
        "| work | generation/ (ours) | plain diffusers loop | ours / plain |",
        "|---|---|---|---|",
        f"| training, images/s | {ours_train:.2f} | {plain_train:.2f} | {ours_train / plain_train:.2f} |",
        f"| DDIM sampling ({args.sample_steps} steps), images/s | {ours_sample:.2f} | {plain_sample:.2f} | {ours_sample / plain_sample:.2f} |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        path = Path(args.write)
        if not path.exists():
            path.write_text("# Benchmarks\n\nMeasured by hand with the scripts in `bench/`; newest results last.\n\n")
        with open(path, "a") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
