"""Generation jobs: sample from a generator into the pool, checked for memorisation.

Used by the `generate` command, the coordinator page and the background task.
A job is resumable: samples are keyed by seed, so a retry after a failure,
cancel or crash makes only the samples that are missing.
"""

import numpy as np

from readerstudy.imaging import storage
from readerstudy.imaging.models import Modality
from readerstudy.jobs.models import Job
from readerstudy.jobs.queue import create_job

from .config import ConfigError
from .models import Generator
from .pool import add_synthetic_item
from .quality import assess_item, diversity, reference_set

CHUNK = 4


def validate_request(generator: Generator, modality: str, n: int, seed: int, steps: int, prompt: str = "") -> None:
    if modality not in Modality.values:
        raise ConfigError(f"unknown modality {modality!r}")
    if generator.modalities and modality not in generator.modalities:
        raise ConfigError(f"{generator} makes {', '.join(generator.modalities)}, not {modality}")
    if generator.is_control and prompt:
        raise ConfigError("the real-as-synthetic control takes no prompt")
    if generator.kind in (Generator.Kind.EXTERNAL, Generator.Kind.DRR):
        raise ConfigError(f"{generator} is not a model that can be sampled ({generator.get_kind_display()})")
    if not 1 <= n <= 10000:
        raise ConfigError("the number of samples must be between 1 and 10000")
    if not 1 <= steps <= 1000:
        raise ConfigError("steps must be between 1 and 1000")
    if seed < 0 or seed + n >= 2**63:
        raise ConfigError("seed must be a non-negative 63-bit integer")
    if prompt and generator.kind != Generator.Kind.LOCAL_PIPELINE:
        raise ConfigError("only local pipelines take text prompts")


def generate_samples(generator: Generator, modality: str, seeds: list[int], steps: int, prompt: str = "",
                     on_step=None) -> np.ndarray:
    """Samples in [0, 1] for the given seeds, from a built-in model or a local pipeline."""
    # Imported here: torch and diffusers take seconds to import, and the web
    # processes that import this module only ever queue jobs.
    if generator.kind == Generator.Kind.LOCAL_PIPELINE:
        from .pipelines import run_pipeline

        return run_pipeline(generator.path, seeds, steps, prompt)
    from .sampling import load_model, sample

    return sample(load_model(generator.path), modality, seeds, steps, on_step=on_step)


def run_generation(job, reporter) -> dict:
    p = job.params
    generator = Generator.objects.get(pk=p["generator_id"])
    modality, n, seed, steps, prompt = p["modality"], p["n"], p["seed"], p["steps"], p.get("prompt", "")
    validate_request(generator, modality, n, seed, steps, prompt)
    if generator.is_control:
        from .control import run_control

        return run_control(job, generator, reporter)
    seeds = [seed + i for i in range(n)]
    done = set(job.generated_items.values_list("seed", flat=True))
    todo = [s for s in seeds if s not in done]
    reporter.start(n)
    if done:
        reporter.advance(len(done), f"{len(done)} samples already made; continuing")
    reference = reference_set(modality)
    for start in range(0, len(todo), CHUNK):
        reporter.check_cancelled()
        chunk = todo[start : start + CHUNK]

        def on_step(k, total, chunk=chunk):
            reporter.advance(0, f"seeds {chunk[0]}–{chunk[-1]}: denoising step {k} of {total}")

        for s, array in zip(chunk, generate_samples(generator, modality, chunk, steps, prompt, on_step)):
            item = add_synthetic_item(array, modality=modality, generator=generator, seed=s, prompt=prompt, job=job)
            quality = assess_item(item, reference)
            flag = " NEAR-COPY" if quality.get("near_copy") else ""
            reporter.advance(1, f"seed {s}: nearest real similarity {quality.get('nearest_real_similarity')}{flag}")
    items = list(job.generated_items.order_by("seed"))
    div = diversity([np.asarray(storage.load_master(i.master_file)) for i in items])
    return {
        "items": [i.pk for i in items],
        "diversity": div,
        "near_copies": sum(1 for i in items if i.quality.get("near_copy")),
        "summary": f"{len(items)} {modality} samples from {generator}; diversity {div}; "
        f"{sum(1 for i in items if i.quality.get('near_copy'))} flagged as near-copies",
    }


def create_generation_job(generator, modality, n, seed, steps, prompt="", user=None, enqueue=False) -> Job:
    """A generation job (validated); with `enqueue`, queued for the worker once the row is committed."""
    validate_request(generator, modality, n, seed, steps, prompt)
    return create_job(
        Job.Kind.GENERATE, user=user, enqueue=enqueue,
        title=f"{n} {modality} samples from {generator} (seed {seed})",
        params={"generator_id": generator.pk, "modality": modality, "n": n, "seed": seed, "steps": steps,
                "prompt": prompt},
    )
