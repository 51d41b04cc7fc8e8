"""Empirical (Wilcoxon) ROC AUC with DeLong's variance, and ROC curve points."""

import numpy as np
from scipy import stats

from .undefined import Undefined


def structural_components(pos, neg) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's V10 (per positive) and V01 (per negative): mean of psi over the other class."""
    pos, neg = np.asarray(pos, dtype=float), np.asarray(neg, dtype=float)
    # psi(x, y) = 1 if x > y, 1/2 if equal: counted by binary search in the other class, sorted, instead of
    # forming the positives x negatives matrix (the sums are of halves, so exact either way).
    sorted_pos, sorted_neg = np.sort(pos), np.sort(neg)
    below, up_to = np.searchsorted(sorted_neg, pos, "left"), np.searchsorted(sorted_neg, pos, "right")
    above, from_ = len(pos) - np.searchsorted(sorted_pos, neg, "right"), len(pos) - np.searchsorted(sorted_pos, neg, "left")
    with np.errstate(invalid="ignore", divide="ignore"):
        return (below + 0.5 * (up_to - below)) / len(neg), (above + 0.5 * (from_ - above)) / len(pos)


def empirical_auc(pos, neg) -> float:
    v10, _ = structural_components(pos, neg)
    return float(v10.mean())


def reader_auc(truth, score, confidence: float = 0.95) -> dict | Undefined:
    """AUC of `score` (higher = more likely positive) against boolean `truth`, DeLong SE, ROC points."""
    truth = np.asarray(truth, dtype=bool)
    score = np.asarray(score, dtype=float)
    pos, neg = score[truth], score[~truth]
    if len(pos) == 0 or len(neg) == 0:
        return Undefined("needs both real and synthetic cases")
    v10, v01 = structural_components(pos, neg)
    auc = float(v10.mean())
    thresholds = np.unique(score)[::-1]
    points = [(0.0, 0.0)] + [
        (float((neg >= t).mean()), float((pos >= t).mean())) for t in thresholds
    ]
    result = {"auc": auc, "n_positive": int(len(pos)), "n_negative": int(len(neg)), "roc_points": points}
    if min(len(pos), len(neg)) < 2:
        reason = "DeLong's variance needs at least two cases of each class"
    elif len(thresholds) == 1:
        reason = "every answer has the same score (e.g. all unsure): the AUC's variance cannot be estimated"
    else:
        var = v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg)
        reason = None if var > 0 else "DeLong's variance is zero (the classes are completely separated)"
    if reason:
        return {**result, "se_delong": Undefined(reason), "ci95": Undefined(reason)}
    se = float(np.sqrt(var))
    z = stats.norm.ppf(0.5 + confidence / 2)
    return {**result, "se_delong": se, "ci95": (max(0.0, auc - z * se), min(1.0, auc + z * se))}
