"""A realism number for every generator: can a simple detector tell its samples from held-out real images?

Per stratum (modality, 2D or volume) of the generator's samples:

- **Detector AUC** (a classifier two-sample test): the pixel features of the leak audit plus two texture
  features, measured at one served framing (`canonical.frame_codes`, the framing every study serves),
  fed to the cross-validated shrinkage discriminant of `imaging.pixel_stats.classifier_auc`, with its
  permutation interval. 0.5 = this detector cannot tell; 1 = it always can. Real images are the items of
  the stratum outside the source groups the generator was trained on (held out); where there are too
  few, all real items, and the report says so (a memorising model then looks better than it is).
- **Memorisation rate**: the share of samples whose nearest real image (any, training data included)
  correlates at or above `quality.NEAR_COPY_THRESHOLD`.
- **Diversity**: 1 - mean pairwise correlation of the samples' middle slices.

Computed by a job (`Job.Kind.REALISM`), kept in `Generator.realism`, shown on the Generators pages and
appended to the model card.
"""

import datetime

import numpy as np

from readerstudy.imaging import canonical, storage
from readerstudy.imaging.models import Dimensionality, Origin, PoolItem

from . import quality

# imaging.pixel_stats (scipy) is imported where a measurement runs: the Generators pages show reports only.

MAX_PER_CLASS = 200
MIN_PER_CLASS = 5
MAX_MATRIX = 128
MAX_DEPTH = 16
TEXTURE = {
    "edge_strength": "mean gradient magnitude (in standard deviations)",
    "fine_texture": "mean absolute Laplacian (in standard deviations)",
}


def texture_features(codes: np.ndarray) -> dict:
    """Edge and fine-texture strength of the middle slice, scale-free (smooth blobs and noise differ here)."""
    plane = codes[codes.shape[0] // 2].astype(np.float64)
    spread = plane.std() or 1.0
    gy, gx = np.gradient(plane)
    laplacian = (np.roll(plane, 1, 0) + np.roll(plane, -1, 0) + np.roll(plane, 1, 1) + np.roll(plane, -1, 1)
                 - 4 * plane)[1:-1, 1:-1]
    return {"edge_strength": float(np.hypot(gx, gy).mean() / spread),
            "fine_texture": float(np.abs(laplacian).mean() / spread)}


def _framing(items: list[PoolItem], volume: bool) -> tuple[int, int, int]:
    """The matrix both classes are compared at: no item upsampled (as studies frame), capped for speed."""
    size = min(MAX_MATRIX, *(min(item.master_shape[1:]) for item in items))
    depth = min(MAX_DEPTH, *(item.master_shape[0] for item in items)) if volume else 1
    return size, size, depth


def _sample(queryset, rng) -> list[PoolItem]:
    items = list(queryset.only("id", "master_file", "master_shape", "modality", "source_group"))
    if len(items) > MAX_PER_CLASS:
        items = [items[i] for i in sorted(rng.choice(len(items), MAX_PER_CLASS, replace=False))]
    return items


def stratum_realism(generator, modality: str, dimensionality: str, seed: int = 0, progress=None,
                    references: dict | None = None) -> dict:
    """The detector AUC, memorisation rate and diversity of one stratum of the generator's samples.

    `references` keeps each modality's real thumbnails (`quality.reference_set`) across strata.
    """
    from readerstudy.imaging.pixel_stats import FEATURES, case_features, classifier_auc

    rng = np.random.default_rng(seed)
    synthetic = _sample(generator.items.filter(modality=modality, dimensionality=dimensionality).order_by("id"), rng)
    real_items = PoolItem.objects.filter(origin=Origin.REAL, modality=modality, dimensionality=dimensionality)
    trained_on = set(generator.config.get("training_groups", []))
    held_out = _sample(real_items.exclude(source_group__in=trained_on).order_by("id"), rng)
    real, real_are_held_out = (held_out, True) if len(held_out) >= MIN_PER_CLASS else (
        _sample(real_items.order_by("id"), rng), False)
    out = {"n_synthetic": len(synthetic), "n_real": len(real), "real_held_out": real_are_held_out}
    if not real_are_held_out:
        out["note"] = ("fewer than {} real items outside the generator's training data: compared with all real "
                       "items, training images included (flatters a memorising model)").format(MIN_PER_CLASS)
    if min(len(synthetic), len(real)) < MIN_PER_CLASS:
        out["detector"] = {"undefined": f"needs at least {MIN_PER_CLASS} real and {MIN_PER_CLASS} synthetic items "
                                        f"(has {len(real)} and {len(synthetic)})"}
        return out
    rows, cols, depth = _framing(real + synthetic, dimensionality == Dimensionality.VOLUME)
    out["matrix"] = [rows, cols, depth]
    features, samples = [], []
    for n, item in enumerate(real + synthetic):
        codes = canonical.frame_codes(np.asarray(storage.load_master(item.master_file)), rows, cols, depth)
        features.append({**case_features(codes), **texture_features(codes)})
        if n >= len(real):
            samples.append(codes)
        if progress is not None:
            progress.check_cancelled()
    names = [n for n in (*FEATURES, *TEXTURE) if all(n in f for f in features)]
    matrix = np.array([[f[n] for n in names] for f in features])
    truth = np.array([False] * len(real) + [True] * len(synthetic))
    detector = classifier_auc(matrix, truth, names, seed=seed)
    labels = {**FEATURES, **TEXTURE}
    detector["drivers"] = [{**d, "label": labels[d["feature"]]} for d in detector["drivers"]]
    out["detector"] = detector
    references = {} if references is None else references
    if modality not in references:
        references[modality] = quality.reference_set(modality)
    reference = references[modality]
    nearest = [quality.nearest_real(codes, reference) for codes in samples]
    similarities = [n["nearest_real_similarity"] for n in nearest if n["nearest_real_similarity"] is not None]
    out["memorisation"] = {
        "near_copy_rate": round(float(np.mean([bool(n["near_copy"]) for n in nearest])), 4) if similarities else None,
        "median_nearest_similarity": round(float(np.median(similarities)), 4) if similarities else None,
        "threshold": quality.NEAR_COPY_THRESHOLD,
    }
    out["diversity"] = quality.diversity(samples)
    return out


def realism_report(generator, seed: int = 0, progress=None) -> dict:
    """`stratum_realism` for every stratum the generator has samples in, with the time it was measured."""
    strata = sorted(set(generator.items.values_list("modality", "dimensionality")))
    references = {}  # a modality's 2D and volume strata compare with the same real images
    if progress is not None:
        progress.start(len(strata))
    report = {"measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "seed": seed, "strata": {}}
    for modality, dimensionality in strata:
        report["strata"][f"{modality}/{dimensionality}"] = stratum_realism(generator, modality, dimensionality,
                                                                           seed, progress, references)
        if progress is not None:
            progress.advance(1, f"{modality}/{dimensionality}")
    if not strata:
        report["undefined"] = "the generator has no samples in the pool yet"
    return report


def headline(report: dict) -> dict | None:
    """The detector result of the stratum with the most samples (what the Generators list shows)."""
    measured = [(s["n_synthetic"], key, s) for key, s in (report or {}).get("strata", {}).items()
                if "auc" in s.get("detector", {})]
    if not measured:
        return None
    _, key, stratum = max(measured)
    return {"stratum": key, **stratum["detector"], "near_copy_rate": stratum["memorisation"]["near_copy_rate"],
            "diversity": stratum["diversity"]}


def model_card_section(report: dict) -> str:
    """The realism report as a Markdown section for the model card."""
    if not report or not report.get("strata"):
        return ""
    lines = ["## Realism (measured by the platform)", "",
             f"Measured {report['measured_at']} (seed {report['seed']}). Detector AUC: a cross-validated linear "
             "classifier on pixel and texture features telling held-out real images from this model's samples "
             "at one served framing (0.5 = it cannot tell, 1 = it always can).", "",
             "| stratum | samples / real | detector AUC (95% CI) | near-copy rate | diversity |",
             "|---|---|---|---|---|"]
    for key, s in report["strata"].items():
        d = s.get("detector", {})
        auc = f"{d['auc']} ({d['ci95'][0]}–{d['ci95'][1]})" if "auc" in d else d.get("undefined", "")
        memo = s.get("memorisation", {}).get("near_copy_rate")
        real = f"{s['n_real']}{'' if s['real_held_out'] else ' (not held out)'}"
        lines.append(f"| {key} | {s['n_synthetic']} / {real} | {auc} | {'' if memo is None else memo} | "
                     f"{'' if s.get('diversity') is None else s['diversity']} |")
    return "\n".join(lines) + "\n"


def create_realism_job(generator, user=None, seed: int = 0):
    """Queue the measurement of `generator` (joined if one is already queued or running)."""
    from readerstudy.jobs.models import Job
    from readerstudy.jobs.queue import create_job

    return create_job(Job.Kind.REALISM, {"generator_id": generator.pk, "seed": seed}, user,
                      title=f"Realism of {generator}", single_flight_key=f"realism-{generator.pk}")


def run_realism_job(job, reporter) -> dict:
    """Job work: measure the generator and keep the report on it."""
    from .models import Generator

    generator = Generator.objects.get(pk=job.params["generator_id"])
    report = realism_report(generator, seed=job.params.get("seed", 0), progress=reporter)
    Generator.objects.filter(pk=generator.pk).update(realism=report)
    best = headline(report)
    summary = (f"detector AUC {best['auc']} (95% CI {best['ci95'][0]}-{best['ci95'][1]}) on {best['stratum']}"
               if best else report.get("undefined", "no stratum could be measured"))
    return {"summary": summary, "generator_id": generator.pk}
