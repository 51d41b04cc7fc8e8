"""Rating scores of real vs synthetic images: distributions, rank tests, effect sizes, Holm correction."""

from collections import Counter

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

from .undefined import Undefined


def distribution(values, scale) -> dict:
    """Counts and proportions of each scale value (the full scale, zeros included)."""
    counts = Counter(values)
    n = len(values)
    return {"n": n, "counts": {str(v): counts.get(v, 0) for v in scale},
            "proportions": {str(v): counts.get(v, 0) / n if n else Undefined("no ratings") for v in scale},
            "median": float(np.median(values)) if n else Undefined("no ratings"),
            "mean": float(np.mean(values)) if n else Undefined("no ratings")}


def mann_whitney(x, y, alternative: str = "two-sided") -> dict | Undefined:
    """Mann-Whitney U (R's wilcox.test convention: exact without ties and n < 50, else normal
    approximation with tie and continuity correction). U is that of `x`. Effect sizes: probability
    of superiority U/(n_x n_y) and rank-biserial correlation 2U/(n_x n_y) - 1.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) == 0 or len(y) == 0:
        return Undefined("one of the groups has no values")
    if np.ptp(np.concatenate([x, y])) == 0:
        return Undefined("all values are equal: no ranks to compare")
    ties = len(np.unique(np.concatenate([x, y]))) < len(x) + len(y)
    method = "exact" if not ties and len(x) < 50 and len(y) < 50 else "asymptotic"
    res = stats.mannwhitneyu(x, y, alternative=alternative, method=method, use_continuity=True)
    u = float(res.statistic)
    return {"U": u, "p_value": float(res.pvalue), "method": method, "n_x": len(x), "n_y": len(y),
            "probability_of_superiority": u / (len(x) * len(y)),
            "rank_biserial": 2 * u / (len(x) * len(y)) - 1, "alternative": alternative}


def wilcoxon_signed_rank(x, y, alternative: str = "two-sided") -> dict | Undefined:
    """Paired Wilcoxon signed-rank test; V is the sum of positive ranks (R's convention)."""
    d = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
    d = d[d != 0]
    if len(d) == 0:
        return Undefined("all paired differences are zero")
    ties = len(np.unique(np.abs(d))) < len(d)
    method = "exact" if not ties and len(d) < 50 else "approx"
    res = stats.wilcoxon(d, alternative=alternative, method=method, correction=method == "approx")
    ranks = stats.rankdata(np.abs(d))
    return {"V": float(ranks[d > 0].sum()), "p_value": float(res.pvalue), "method": method, "n": len(d)}


def holm(p_values: dict) -> dict:
    """Holm-adjusted p-values for the defined entries of {name: p}."""
    names = [k for k, v in p_values.items() if isinstance(v, float)]
    if not names:
        return {}
    adjusted = multipletests([p_values[k] for k in names], method="holm")[1]
    return dict(zip(names, (float(p) for p in adjusted)))
