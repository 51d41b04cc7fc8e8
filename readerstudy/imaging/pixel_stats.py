"""Pixel statistics of served images: named features per image, their AUCs for telling two groups apart,
and a cross-validated classifier on all of them with a calibrated interval.

Shared by the leak audit of a study (studies/pixel_audit.py: real vs synthetic cases as served) and the
realism number of a generator (generation/realism.py: held-out real items vs its samples).
"""

import numpy as np
from scipy import stats

from . import canonical

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
BORDER = 2


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


def excludes_half(result: dict) -> bool:
    """Whether an AUC's interval lies wholly on one side of 0.5."""
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
