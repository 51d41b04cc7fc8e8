"""Detection of fakes (positive class = synthetic) with an explicit policy for *unsure* answers."""

from collections import Counter

from scipy import stats

from .proportions import proportion
from .undefined import Undefined

POLICIES = {
    "exclude": "Unsure answers are left out; coverage (answered / all) is reported beside every figure.",
    "wrong": "Unsure counts as a wrong answer: a missed fake on synthetic cases, a false alarm on real ones.",
    "half": "Unsure earns half credit: half a correct and half a wrong answer (counts become fractional).",
    "three-class": "Unsure is its own class: sensitivity and specificity use all cases; PPV and NPV only "
                   "the definite answers; accuracy counts unsure as not correct.",
}
LABELS = ("fake", "real", "unsure")


def confusion(truths, labels) -> dict:
    """{"synthetic": {"fake", "real", "unsure"}, "real": {...}} counts; truths are "synthetic"/"real"."""
    table = {truth: dict.fromkeys(LABELS, 0) for truth in ("synthetic", "real")}
    listed = (lambda values: values.tolist() if hasattr(values, "tolist") else values)
    for (truth, label), count in Counter(zip(listed(truths), listed(labels))).items():
        table[truth][label] += count
    return table


def _mover(estimate_a, ci_a, estimate_b, ci_b):
    """Interval for the mean of two independent proportions (Newcombe's MOVER, from their Wilson limits)."""
    if any(isinstance(v, Undefined) for v in (estimate_a, ci_a, estimate_b, ci_b)):
        return Undefined("needs both sensitivity and specificity")
    mean = (estimate_a + estimate_b) / 2
    lower = mean - ((estimate_a - ci_a[0]) ** 2 + (estimate_b - ci_b[0]) ** 2) ** 0.5 / 2
    upper = mean + ((ci_a[1] - estimate_a) ** 2 + (ci_b[1] - estimate_b) ** 2) ** 0.5 / 2
    return (max(0.0, lower), min(1.0, upper))


def detection_metrics(table: dict, policy: str = "exclude", ci_method: str = "wilson") -> dict:
    """Accuracy, sensitivity, specificity, PPV, NPV and balanced accuracy with intervals and tests vs chance."""
    if policy not in POLICIES:
        raise ValueError(f"unknown unsure policy {policy!r}; choose from {', '.join(POLICIES)}")
    s, r = table["synthetic"], table["real"]
    total = sum(s.values()) + sum(r.values())
    unsure = s["unsure"] + r["unsure"]
    if policy == "exclude":
        tp, fn, tn, fp = s["fake"], s["real"], r["real"], r["fake"]
    elif policy == "wrong":
        tp, fn, tn, fp = s["fake"], s["real"] + s["unsure"], r["real"], r["fake"] + r["unsure"]
    elif policy == "half":
        tp, fn = s["fake"] + s["unsure"] / 2, s["real"] + s["unsure"] / 2
        tn, fp = r["real"] + r["unsure"] / 2, r["fake"] + r["unsure"] / 2
    if policy == "three-class":
        n_syn, n_real = sum(s.values()), sum(r.values())
        sens = proportion(s["fake"], n_syn, ci_method)
        spec = proportion(r["real"], n_real, ci_method)
        ppv = proportion(s["fake"], s["fake"] + r["fake"], ci_method, p0=None)
        npv = proportion(r["real"], r["real"] + s["real"], ci_method, p0=None)
        acc = proportion(s["fake"] + r["real"], total, ci_method)
    else:
        sens = proportion(tp, tp + fn, ci_method)
        spec = proportion(tn, tn + fp, ci_method)
        ppv = proportion(tp, tp + fp, ci_method, p0=None)
        npv = proportion(tn, tn + fn, ci_method, p0=None)
        acc = proportion(tp + tn, tp + tn + fp + fn, ci_method)
    if policy == "half":
        # Counts are fractional: binomial intervals do not apply. Accuracy, sensitivity and specificity are
        # means of per-answer scores 1 (right), 1/2 (unsure), 0 (wrong): a t interval for a mean.
        for metric, (right, unsure_n, wrong) in ((sens, (s["fake"], s["unsure"], s["real"])),
                                                 (spec, (r["real"], r["unsure"], r["fake"])),
                                                 (acc, (s["fake"] + r["real"], unsure, s["real"] + r["fake"]))):
            metric["ci95"] = score_mean_ci(right, unsure_n, wrong)
            metric["ci_method"] = "t interval for the mean score (right 1, unsure 1/2, wrong 0)"
            metric["p_value_vs_chance"] = Undefined("no exact test under half credit: answers are no longer "
                                                    "success/failure trials")
        for metric in (ppv, npv):
            metric["ci95"] = Undefined("no interval for a predictive value under half credit "
                                       "(its denominator counts half answers)")
    balanced = (
        (sens["estimate"] + spec["estimate"]) / 2
        if not isinstance(sens["estimate"], Undefined) and not isinstance(spec["estimate"], Undefined)
        else Undefined("needs both real and synthetic cases")
    )
    return {
        "policy": policy, "policy_description": POLICIES[policy], "confusion": table,
        "coverage": {"answered": total - unsure, "total": total,
                     "proportion": (total - unsure) / total if total else Undefined("no answers"),
                     "unsure": unsure},
        "accuracy": acc, "sensitivity": sens, "specificity": spec, "ppv": ppv, "npv": npv,
        "balanced_accuracy": {
            "estimate": balanced,
            "ci95": _mover(sens["estimate"], sens["ci95"], spec["estimate"], spec["ci95"]),
            "ci_method": f"MOVER from {ci_method} limits",
        },
        "ci_method": ci_method,
    }


def score_mean_ci(right: int, half: int, wrong: int, confidence: float = 0.95):
    """Interval for the mean of `right` ones, `half` halves and `wrong` zeros (t, clipped to [0, 1])."""
    n = right + half + wrong
    if n < 2:
        return Undefined("an interval needs at least two answers")
    mean = (right + half / 2) / n
    var = (right * (1 - mean) ** 2 + half * (0.5 - mean) ** 2 + wrong * mean ** 2) / (n - 1)
    if var == 0:
        return Undefined("every answer scored the same: the variance cannot be estimated")
    q = stats.t.ppf(0.5 + confidence / 2, n - 1) * (var / n) ** 0.5
    return (max(0.0, mean - q), min(1.0, mean + q))


def fakeness_score(label: str, confidence: int | None) -> int:
    """Ordinal 'how synthetic' score for ROC: +confidence for fake, -confidence for real, 0 for unsure."""
    weight = confidence or 1
    return {"fake": weight, "real": -weight, "unsure": 0}[label]

