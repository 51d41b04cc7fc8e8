"""Pixel leak audit: what the served pixels of real and synthetic cases say about their origin.

Metadata can be made identical by construction (`canonical`); pixels cannot,
and a weak generator legitimately differs. What must not differ is what the
*platform* does to pixels: framing, resampling, intensity scaling, bit depth,
duplicates. Per stratum, on the pixels readers will be served, this module
measures named features per case, the AUC of each feature for telling real
from synthetic, and a cross-validated classifier on all of them together, each
with a 95% interval. With a null generator (real images through the synthetic
path, `generation.control`) the classifier's interval reaches 0.5 in every
stratum (tests/test_null_generator.py).

Findings that only the platform can cause block opening (exact duplicates); a
feature interval that excludes 0.5, or a classifier interval above 0.5, is a
warning, because a weak generator differs for reasons of its own.
"""

import hashlib
from dataclasses import dataclass, field

import numpy as np

from readerstudy.imaging import canonical
from readerstudy.imaging.pixel_stats import FEATURES, auc_interval, case_features, classifier_auc, excludes_half

__all__ = ["FEATURES", "Case", "auc_interval", "case_features", "classifier_auc", "duplicates", "stratum_report",
           "summarise"]

THUMB = 32
NEAR_DUPLICATE = 0.98
MIN_PER_CLASS = 5


@dataclass
class Case:
    """One case as served: its codes (depth, rows, cols) and who it is (for the coordinator's report)."""

    case_id: int
    item_id: int
    origin: str
    role: str
    codes: np.ndarray | None
    features: dict = field(default_factory=dict)
    digest: str = ""
    thumb: np.ndarray | None = None
    shape: tuple = ()


def summarise(case: Case) -> Case:
    """Features, pixel hash and thumbnail of a case, then its pixels are dropped (a big audit keeps no images)."""
    case.features = case.features or case_features(case.codes)
    case.digest = hashlib.sha256(np.ascontiguousarray(case.codes).tobytes()).hexdigest()
    case.thumb = _thumb(case.codes)
    case.shape = case.codes.shape
    case.codes = None
    return case


def stratum_report(cases: list[Case], seed: int = 0) -> dict:
    """Features, per-feature AUCs and the classifier for one stratum's regular and calibration cases."""
    for case in cases:
        if not case.features:
            case.features = case_features(case.codes)
    real = [c for c in cases if c.origin == "real"]
    synthetic = [c for c in cases if c.origin == "synthetic"]
    names = [n for n in FEATURES if all(n in c.features for c in cases)]
    report = {"n_real": len(real), "n_synthetic": len(synthetic), "features": {}, "warnings": []}
    if min(len(real), len(synthetic)) < MIN_PER_CLASS:
        report["classifier"] = {"undefined": f"needs at least {MIN_PER_CLASS} real and {MIN_PER_CLASS} synthetic "
                                             f"cases (has {len(real)} and {len(synthetic)})"}
    for name in names:
        r = [c.features[name] for c in real]
        s = [c.features[name] for c in synthetic]
        entry = {"label": FEATURES[name],
                 "real_median": round(float(np.median(r)), 4) if r else None,
                 "synthetic_median": round(float(np.median(s)), 4) if s else None}
        if min(len(r), len(s)) >= MIN_PER_CLASS:
            entry.update(auc_interval(s, r))
            entry["warning"] = excludes_half(entry)
            if entry["warning"]:
                report["warnings"].append(f"{FEATURES[name]}: AUC {entry['auc']} "
                                          f"(95% CI {entry['ci95'][0]}-{entry['ci95'][1]})")
        report["features"][name] = entry
    if "classifier" not in report:
        matrix = np.array([[c.features[n] for n in names] for c in real + synthetic], dtype=float)
        truth = np.array([False] * len(real) + [True] * len(synthetic))
        result = classifier_auc(matrix, truth, names, seed=seed)
        # Only "better than chance" is a leak; below chance is cross-validation noise.
        result["warning"] = bool(result["ci95"][0] > 0.5)
        if result["warning"]:
            drivers = ", ".join(FEATURES[d["feature"]] for d in result["drivers"])
            report["warnings"].append(f"a classifier on these features tells real from synthetic: AUC "
                                      f"{result['auc']} (95% CI {result['ci95'][0]}-{result['ci95'][1]}); "
                                      f"driven by {drivers}")
        report["classifier"] = result
    return report


def _thumb(codes: np.ndarray) -> np.ndarray:
    middle = codes[codes.shape[0] // 2][None]
    flat = canonical.frame(middle, THUMB, THUMB, 1).ravel().astype(np.float64)
    flat -= flat.mean()
    norm = np.linalg.norm(flat)
    return flat / norm if norm else flat


def duplicates(cases: list[Case]) -> tuple[list[str], list[str]]:
    """(exact duplicates, near duplicates) among summarised cases, described for the coordinator.

    Exact: identical served pixels. Near: correlation of 32x32 thumbnails of the
    middle slice of at least NEAR_DUPLICATE (same matrix only).
    """
    cases = [c if c.digest else summarise(c) for c in cases]
    exact, by_hash = [], {}
    for case in cases:
        if case.digest in by_hash:
            other = by_hash[case.digest]
            exact.append(f"case {other.case_id} ({other.role}, item #{other.item_id}) and case {case.case_id} "
                         f"({case.role}, item #{case.item_id}) show identical pixels")
        else:
            by_hash[case.digest] = case
    near = []
    by_shape: dict = {}
    for case in cases:
        by_shape.setdefault(case.shape, []).append(case)
    for group in by_shape.values():
        if len(group) < 2:
            continue
        thumbs = np.stack([c.thumb for c in group])
        similarity = thumbs @ thumbs.T
        rows, cols = np.nonzero(np.triu(similarity, k=1) >= NEAR_DUPLICATE)
        for i, j in zip(rows, cols):
            a, b = group[i], group[j]
            if a.digest == b.digest:
                continue
            near.append(f"case {a.case_id} ({a.role}, item #{a.item_id}) and case {b.case_id} ({b.role}, "
                        f"item #{b.item_id}) are near-duplicates (correlation {similarity[i, j]:.3f})")
    return exact, near
