"""Single proportions: Wilson (default), Wilson with continuity correction, Clopper-Pearson; exact binomial test."""

import math

from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from .undefined import Undefined

METHODS = ("wilson", "clopper-pearson", "wilson-cc")


def _wilson_cc(x: float, n: float, z: float) -> tuple[float, float]:
    """Newcombe (1998) method 4: Wilson score interval with continuity correction."""
    p, q = x / n, 1 - x / n
    denominator = 2 * (n + z * z)
    lower = (2 * n * p + z * z - 1 - z * math.sqrt(z * z - 2 - 1 / n + 4 * p * (n * q + 1))) / denominator
    upper = (2 * n * p + z * z + 1 + z * math.sqrt(z * z + 2 - 1 / n + 4 * p * (n * q - 1))) / denominator
    return (0.0 if x == 0 else max(0.0, lower), 1.0 if x == n else min(1.0, upper))


def proportion_ci(x: float, n: float, method: str = "wilson", confidence: float = 0.95):
    """Two-sided interval for x successes in n trials (x may be fractional, e.g. half credit)."""
    if method not in METHODS:
        raise ValueError(f"unknown interval method {method!r}; choose from {', '.join(METHODS)}")
    if n <= 0:
        return Undefined("no observations")
    if method == "wilson-cc":
        return _wilson_cc(x, n, stats.norm.ppf(0.5 + confidence / 2))
    lower, upper = proportion_confint(x, n, alpha=1 - confidence, method="wilson" if method == "wilson" else "beta")
    return (float(max(0.0, lower)), float(min(1.0, upper)))


def binomial_test(x: float, n: float, p0: float = 0.5, alternative: str = "two-sided"):
    """Exact binomial test (R's binom.test convention); undefined for fractional counts or n = 0."""
    if n <= 0:
        return Undefined("no observations")
    if x != int(x) or n != int(n):
        return Undefined("the exact test needs whole counts (half credit gives fractional ones)")
    return float(stats.binomtest(int(x), int(n), p0, alternative=alternative).pvalue)


def proportion(x: float, n: float, method: str = "wilson", confidence: float = 0.95, p0: float | None = 0.5) -> dict:
    """Estimate, counts, interval (and optionally the test against p0) of one proportion."""
    result = {
        "estimate": x / n if n > 0 else Undefined("no observations"),
        "x": x, "n": n, "ci_method": method,
        "ci95" if confidence == 0.95 else f"ci{round(confidence * 100)}": proportion_ci(x, n, method, confidence),
    }
    if p0 is not None:
        result["p_value_vs_chance"] = binomial_test(x, n, p0)
    return result
