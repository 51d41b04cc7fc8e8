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
from scipy import stats

from readerstudy.imaging import canonical

FEATURES = {
    "p1": "1st percentile of grey values",
    "median": "median grey value",
    "p99": "99th percentile of grey values",
    "spread": "standard deviation of grey values",
    "at_lowest_code": "share of pixels at the lowest code",
    "at_highest_code": "share of pixels at the highest code",
    "empty_codes": "share of unused grey codes between the 1st and 99th percentile",
    "high_frequency": "share of spectral power above half the Nyquist frequency",
    "border_offset": "border mean minus image mean (in standard deviations)",
    "border_spread": "border standard deviation / image standard deviation",
    "slice_correlation": "correlation of neighbouring slices (volumes)",
}
THUMB = 32
NEAR_DUPLICATE = 0.98
MIN_PER_CLASS = 5
BORDER = 2


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


def case_features(codes: np.ndarray) -> dict:
    """The named features (FEATURES) of one served case."""
    codes = np.asarray(codes)
    values = codes.astype(np.float32)
    flat = values.ravel()
    p1, median, p99 = (float(v) for v in np.percentile(flat, (1, 50, 99)))
    spread = float(flat.std()) or 1.0
    lo, hi = int(p1), int(p99)
    counts = np.bincount(codes.ravel().astype(np.int64), minlength=canonical.CODE_MAX + 1)[lo:hi + 1]
    border = np.concatenate([values[:, :BORDER].ravel(), values[:, -BORDER:].ravel(),
                             values[:, :, :BORDER].ravel(), values[:, :, -BORDER:].ravel()])
    out = {
        "p1": p1, "median": median, "p99": p99, "spread": float(flat.std()),
        "at_lowest_code": float((codes == 0).mean()),
        "at_highest_code": float((codes == canonical.CODE_MAX).mean()),
        "empty_codes": float((counts == 0).mean()) if counts.size else 0.0,
        "high_frequency": _high_frequency(values),
        "border_offset": float((border.mean() - flat.mean()) / spread),
        "border_spread": float(border.std() / spread),
    }
    if codes.shape[0] > 1:
        out["slice_correlation"] = _slice_correlation(values)
    return out


def _high_frequency(values: np.ndarray) -> float:
    """Mean over slices of the power share beyond half the Nyquist frequency (upsampled images have little)."""
    d, h, w = values.shape
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.rfftfreq(w), indexing="ij")
    high = np.hypot(fy, fx) > 0.25
    shares = []
    for plane in values:
        power = np.abs(np.fft.rfft2(plane - plane.mean())) ** 2
        total = power.sum()
        shares.append(float(power[high].sum() / total) if total > 0 else 0.0)
    return float(np.mean(shares))


def _slice_correlation(values: np.ndarray) -> float:
    flat = values.reshape(values.shape[0], -1).astype(np.float64)
    flat -= flat.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(flat, axis=1)
    norms[norms == 0] = 1
    z = flat / norms[:, None]
    return float(np.mean(np.sum(z[1:] * z[:-1], axis=1)))


def auc_interval(pos, neg, confidence: float = 0.95) -> dict:
    """Empirical AUC (P(pos > neg) + ties / 2) with DeLong's variance and a Wald interval clipped to [0, 1]."""
    pos, neg = np.asarray(pos, dtype=float), np.asarray(neg, dtype=float)
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(1), psi.mean(0)
    auc = float(v10.mean())
    se = float(np.sqrt(v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg)))
    z = stats.norm.ppf(0.5 + confidence / 2)
    lo, hi = float(max(0.0, auc - z * se)), float(min(1.0, auc + z * se))
    return {"auc": round(auc, 4), "ci95": [round(lo, 4), round(hi, 4)]}


def _excludes_half(result: dict) -> bool:
    lo, hi = result["ci95"]
    return bool(lo > 0.5 or hi < 0.5)


SHRINKAGE = 0.5
PERMUTATIONS = 200


def _halves(rng, synthetic: np.ndarray, repeats: int) -> list:
    """`repeats` random stratified splits into two halves, as (train, test) index pairs (both ways)."""
    splits = []
    for _ in range(repeats):
        halves = [[], []]
        for label in (False, True):
            members = rng.permutation(np.flatnonzero(synthetic == label))
            halves[0] += list(members[: len(members) // 2])
            halves[1] += list(members[len(members) // 2:])
        a, b = np.array(halves[0]), np.array(halves[1])
        splits += [(a, b), (b, a)]
    return splits


def _cv_scores(matrix: np.ndarray, synthetic: np.ndarray, splits: list) -> np.ndarray:
    """Out-of-fold scores of a shrinkage linear discriminant, averaged over the splits."""
    scores, seen = np.zeros(len(synthetic)), np.zeros(len(synthetic))
    for train, test in splits:
        x, y = matrix[train], synthetic[train]
        mean, sd = x.mean(0), x.std(0)
        sd[sd == 0] = 1
        z = (x - mean) / sd
        centred = np.where(y[:, None], z - z[y].mean(0), z - z[~y].mean(0))
        covariance = (1 - SHRINKAGE) * (centred.T @ centred) / max(len(z) - 2, 1) + SHRINKAGE * np.eye(z.shape[1])
        weights = np.linalg.solve(covariance, z[y].mean(0) - z[~y].mean(0))
        scores[test] += ((matrix[test] - mean) / sd) @ weights
        seen[test] += 1
    return scores / np.maximum(seen, 1)


def _auc(scores: np.ndarray, synthetic: np.ndarray) -> float:
    ranks = stats.rankdata(scores)
    n1 = int(synthetic.sum())
    n0 = len(synthetic) - n1
    return float((ranks[synthetic].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def classifier_auc(matrix: np.ndarray, synthetic: np.ndarray, names: list[str], seed: int = 0,
                   repeats: int = 10, permutations: int = PERMUTATIONS) -> dict:
    """Cross-validated AUC of a linear classifier real vs synthetic on the features, with a calibrated interval.

    The classifier is a shrinkage linear discriminant on standardised features,
    scored out of fold over `repeats` random stratified halvings (both ways).
    Out-of-fold scores are not independent, so DeLong's interval would be too
    narrow; the interval here inverts a permutation test instead: the same
    procedure on `permutations` relabelled copies gives the AUC's null
    distribution (which also carries cross-validation's small bias below 0.5),
    and the 95% interval is AUC - (q97.5 - 0.5) .. AUC + (0.5 - q2.5). It contains
    0.5 exactly when the permutation test does not reject at the 5% level.
    Drivers are the standardised discriminant weights on all cases.
    """
    rng = np.random.default_rng(seed)
    matrix = np.asarray(matrix, dtype=float)
    observed = _auc(_cv_scores(matrix, synthetic, _halves(rng, synthetic, repeats)), synthetic)
    null = np.empty(permutations)
    for b in range(permutations):
        labels = rng.permutation(synthetic)
        null[b] = _auc(_cv_scores(matrix, labels, _halves(rng, labels, repeats)), labels)
    lo_q, hi_q = np.quantile(null, (0.025, 0.975))
    interval = [float(max(0.0, observed - (hi_q - 0.5))), float(min(1.0, observed + (0.5 - lo_q)))]
    weights = _cv_scores(matrix, synthetic, [(np.arange(len(synthetic)), np.arange(len(synthetic)))])
    z = (matrix - matrix.mean(0)) / np.where(matrix.std(0) == 0, 1, matrix.std(0))
    direction = np.array([np.corrcoef(z[:, j], weights)[0, 1] if z[:, j].std() else 0.0 for j in range(z.shape[1])])
    order = np.argsort(-np.abs(direction))
    return {
        "auc": round(observed, 4), "ci95": [round(interval[0], 4), round(interval[1], 4)],
        "p_value": round(float((1 + np.sum(null >= observed)) / (1 + permutations)), 4),
        "null_median": round(float(np.median(null)), 4),
        "drivers": [{"feature": names[i], "weight": round(float(direction[i]), 3)} for i in order[:3]],
        "method": f"shrinkage LDA, {repeats}x2-fold cross-validation, interval from {permutations} permutations",
    }


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
            entry["warning"] = _excludes_half(entry)
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
