"""Sample-size planning by simulation from the model the analysis assumes.

Answers are simulated as the headline analysis sees them: reader r is right on case k with probability
expit(b0 + a_r + c_k), reader effects a ~ N(0, reader_sd^2) and case effects c ~ N(0, case_sd^2) on the
logit scale (the logistic GLMM of `glmm.py`), with b0 set so that the mean accuracy over readers and
cases is the expected one. Each simulated study is analysed by the dashboard's own functions
(`mrmc.score_or_analysis`, readers and cases random, and `mrmc.equivalence_test`), so the powers and
interval widths are those of the analysis the study will get. Seeded: the same inputs give the same plan.
"""

import numpy as np
from scipy import optimize, special

from . import mrmc

MAX_DRAWS = 100_000_000  # readers x cases x simulations: about a minute on one core at most
_nodes, _weights = np.polynomial.hermite_e.hermegauss(60)
_weights = _weights / _weights.sum()


class PlanningError(ValueError):
    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message, self.field = message, field


def mean_accuracy(intercept: float, total_sd: float) -> float:
    """E[expit(b0 + z * sd)] for z ~ N(0, 1): the accuracy averaged over readers and cases."""
    return float(_weights @ special.expit(intercept + total_sd * _nodes))


def intercept_for(accuracy: float, total_sd: float) -> float:
    """The b0 whose mean accuracy over readers and cases is `accuracy`."""
    return float(optimize.brentq(lambda b: mean_accuracy(b, total_sd) - accuracy, -30, 30, xtol=1e-12))


def plan(readers: int, cases: int, accuracy: float, margin: float, reader_sd: float = 0.5, case_sd: float = 1.0,
         simulations: int = 500, seed: int = 0, null: float = 0.5) -> dict:
    """Expected 95 % interval width of the mean accuracy and the power of the difference test (against
    `null`) and of the TOST equivalence test (within null ± margin), each with its Monte Carlo error."""
    _check(readers, cases, accuracy, margin, reader_sd, case_sd, simulations)
    total_sd = float(np.hypot(reader_sd, case_sd))
    b0 = intercept_for(accuracy, total_sd)
    rng = np.random.default_rng(seed)
    widths, differ, equivalent, covered, undefined = [], 0, 0, 0, 0
    for _ in range(simulations):
        logit = b0 + rng.normal(0, reader_sd, (readers, 1)) + rng.normal(0, case_sd, (1, cases))
        correct = (rng.random((readers, cases)) < special.expit(logit)).astype(float)
        result = mrmc.score_or_analysis(correct, null)
        if not isinstance(result, dict) or not isinstance(result["p_value_vs_null"], float):
            undefined += 1  # no variation at all: the analysis would report the figure as undefined
            continue
        low, high = result["ci95"]
        widths.append(high - low)
        covered += low <= accuracy <= high
        differ += result["p_value_vs_null"] < 0.05
        equivalent += mrmc.equivalence_test(result["estimate"], result["se"], result["df"], null, margin)["equivalent"]

    def share(count: int) -> dict:
        p = count / simulations
        return {"estimate": p, "monte_carlo_se": float(np.sqrt(p * (1 - p) / simulations))}

    return {
        "inputs": {"readers": readers, "cases": cases, "accuracy": accuracy, "margin": margin, "null": null,
                   "reader_sd": reader_sd, "case_sd": case_sd, "simulations": simulations, "seed": seed},
        "model": {"intercept": b0, "typical_accuracy": float(special.expit(b0))},
        "ci95_width": {"mean": float(np.mean(widths)), "median": float(np.median(widths)),
                       "p90": float(np.quantile(widths, 0.9))} if widths else None,
        "power_difference": share(differ),
        "power_equivalence": share(equivalent),
        "coverage": share(covered),
        "undefined_share": undefined / simulations,
        "method": "simulated from a logistic model with crossed reader and case effects; each simulated study "
                  "analysed with readers and cases random (OR/Hillis, percent correct) and the TOST against "
                  f"{null} ± margin, at 5 %",
    }


def _check(readers, cases, accuracy, margin, reader_sd, case_sd, simulations):
    if readers < 2:
        raise PlanningError("at least two readers (readers-and-cases inference needs two)", "readers")
    if cases < 4:
        raise PlanningError("at least four cases", "cases")
    if not 0.01 <= accuracy <= 0.99:
        raise PlanningError("the expected accuracy must lie between 0.01 and 0.99", "accuracy")
    if not 0 < margin < 0.5:
        raise PlanningError("the margin must lie between 0 and 0.5", "margin")
    for name, sd in (("reader_sd", reader_sd), ("case_sd", case_sd)):
        if not 0 <= sd <= 5:
            raise PlanningError("a standard deviation on the logit scale between 0 and 5", name)
    if not 100 <= simulations <= 10_000:
        raise PlanningError("between 100 and 10,000 simulations", "simulations")
    if readers * cases * simulations > MAX_DRAWS:
        raise PlanningError(f"readers x cases x simulations is at most {MAX_DRAWS:,}: use fewer simulations",
                            "simulations")
