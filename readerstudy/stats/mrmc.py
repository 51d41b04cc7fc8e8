"""Multi-reader multi-case ROC analysis: Obuchowski-Rockette with Hillis (2007) degrees of freedom.

Reader AUCs are empirical (Wilcoxon). Covariances of the AUC estimates come from
the case jackknife (default) or DeLong's structural components. Treatments may
use different but overlapping case sets (e.g. real cases shared, synthetic cases
from each generator): mark cases outside a treatment with NaN; the jackknife
then leaves out each case of the union.
"""

import itertools

import numpy as np
from scipy import stats

from .roc import structural_components
from .undefined import Undefined

# Below this many cases of a class in a treatment, its AUC variance is not estimated (a single case gives a
# jackknife of zero, i.e. a falsely exact interval).
MIN_CASES_PER_CLASS = 2


def _components(ratings: np.ndarray, truth: np.ndarray):
    """Per (t, r): AUC and DeLong components over the cases that treatment holds."""
    t_n, r_n, _ = ratings.shape
    aucs, comps = np.empty((t_n, r_n)), {}
    for t, r in itertools.product(range(t_n), range(r_n)):
        x = ratings[t, r]
        present = ~np.isnan(x)
        v10, v01 = structural_components(x[present & truth], x[present & ~truth])
        aucs[t, r] = v10.mean()
        comps[t, r] = (np.flatnonzero(present & truth), v10, np.flatnonzero(present & ~truth), v01)
    return aucs, comps


def _jackknife_cov(ratings, truth, aucs, comps) -> np.ndarray:
    """Leave-one-case-out covariance, from the exact identity for the Wilcoxon AUC:
    without positive i, AUC = (m AUC - V10_i) / (m - 1); likewise for negatives."""
    t_n, r_n, k_n = ratings.shape
    pseudo = np.repeat(aucs.ravel()[None, :], k_n, axis=0)
    for column, (t, r) in enumerate(itertools.product(range(t_n), range(r_n))):
        pos_idx, v10, neg_idx, v01 = comps[t, r]
        m, n, theta = len(pos_idx), len(neg_idx), aucs[t, r]
        if m > 1:
            pseudo[pos_idx, column] = (m * theta - v10) / (m - 1)
        if n > 1:
            pseudo[neg_idx, column] = (n * theta - v01) / (n - 1)
    centred = pseudo - pseudo.mean(0)
    return (k_n - 1) / k_n * centred.T @ centred


def _delong_cov(ratings, truth, comps) -> np.ndarray:
    if np.isnan(ratings).any():
        raise ValueError("DeLong covariances need every reader to rate every case; use the jackknife")
    t_n, r_n, _ = ratings.shape
    v10 = np.array([comps[t, r][1] for t, r in itertools.product(range(t_n), range(r_n))])
    v01 = np.array([comps[t, r][3] for t, r in itertools.product(range(t_n), range(r_n))])
    return np.cov(v10) / truth.sum() + np.cov(v01) / (~truth).sum()


def covariance_components(cov: np.ndarray, t_n: int, r_n: int) -> dict:
    """Hillis' Var, Cov1 (same reader, other treatment), Cov2 (other reader, same treatment), Cov3 (both differ)."""
    groups = {"Var": [], "Cov1": [], "Cov2": [], "Cov3": []}
    pairs = list(itertools.product(range(t_n), range(r_n)))
    for i, (t1, r1) in enumerate(pairs):
        for j, (t2, r2) in enumerate(pairs):
            key = "Var" if i == j else "Cov1" if r1 == r2 else "Cov2" if t1 == t2 else "Cov3"
            groups[key].append(cov[i, j])
    return {k: float(np.mean(v)) if v else Undefined("needs more treatments or readers") for k, v in groups.items()}


def _single_test(foms: np.ndarray, cov: np.ndarray, alpha: float) -> dict:
    """Hillis (2007) single-test RRRC inference for readers' figures of merit and their covariance matrix:
    var = [MS(R) + r max(Cov2, 0)] / r, df = [MS(R) + r max(Cov2, 0)]^2 / (MS(R)^2 / (r - 1)); the
    interval clipped to [0, 1]; se, df and interval undefined where there is no variance at all."""
    r_n = len(foms)
    mean = float(foms.mean())
    cov2 = float((cov.sum() - np.trace(cov)) / (r_n * (r_n - 1)))
    ms_r = float(((foms - mean) ** 2).sum() / (r_n - 1))
    denom = ms_r + r_n * max(cov2, 0.0)
    out = {"mean": mean, "Cov2": cov2, "MS_R": ms_r, "Var": float(np.trace(cov) / r_n)}
    if denom <= 0:
        reason = "no variance between readers or cases (every reader the same, covariances not positive)"
        return {**out, "se": Undefined(reason), "df": Undefined(reason), "ci95": Undefined(reason)}
    se = float(np.sqrt(denom / r_n))
    df = float(denom**2 / (ms_r**2 / (r_n - 1))) if ms_r > 0 else float("inf")
    q = stats.t.ppf(1 - alpha / 2, df)
    return {**out, "se": se, "df": df, "ci95": (max(0.0, mean - q * se), min(1.0, mean + q * se))}


def _single_treatment(aucs: np.ndarray, cov: np.ndarray, alpha: float) -> dict:
    """One treatment's mean AUC with its single-test interval."""
    test = _single_test(aucs, cov, alpha)
    return {"mean_auc": test["mean"], **{k: test[k] for k in ("se", "df", "ci95", "Cov2", "MS_R")}}


def score_or_analysis(scores, null: float, confidence: float = 0.95, unit: str = "cases") -> dict:
    """Readers and cases random for a figure of merit that is a mean of per-case scores (percent correct,
    hit rate; scores in [0, 1]): the Obuchowski-Rockette single test with Hillis (2007) df.

    `scores` is readers x cases, complete. Covariances of the reader means come from the case jackknife
    (for a mean it equals the sample covariance over cases / cases); `se`, `df` and the t test against
    `null` come with the interval, for equivalence tests.
    """
    scores = np.asarray(scores, dtype=float)
    r_n, k_n = scores.shape
    if r_n < 2:
        return Undefined(f"needs at least two readers who answered the same {unit}")
    if k_n < 2:
        return Undefined(f"needs at least two {unit} answered by every reader")
    theta = scores.mean(axis=1)
    pseudo = (k_n * theta[None, :] - scores.T) / (k_n - 1)  # cases x readers: leave one case out
    centred = pseudo - pseudo.mean(axis=0)
    test = _single_test(theta, (k_n - 1) / k_n * centred.T @ centred, 1 - confidence)
    result = {"estimate": test.pop("mean"), "readers": r_n, unit: k_n, "null": null, **test}
    if isinstance(test["se"], Undefined):
        return {**result, "p_value_vs_null": Undefined(f"no variation between readers or {unit}")}
    t_stat = (result["estimate"] - null) / test["se"]
    return {**result, "t": float(t_stat), "p_value_vs_null": float(2 * stats.t.sf(abs(t_stat), test["df"]))}


def equivalence_test(estimate: float, se, df, null: float, margin: float) -> dict:
    """TOST: is the figure within null ± margin? Two one-sided t tests; equivalent when both reject at 5 %
    (the same as the 90 % interval lying inside the margins)."""
    if isinstance(se, Undefined) or isinstance(df, Undefined):
        return Undefined(f"needs a variance ({se.reason if isinstance(se, Undefined) else df.reason})")
    lower, upper = null - margin, null + margin
    p_lower = float(stats.t.sf((estimate - lower) / se, df))
    p_upper = float(stats.t.cdf((estimate - upper) / se, df))
    q = stats.t.ppf(0.95, df)
    return {"null": null, "margin": margin, "bounds": [lower, upper], "p_lower": p_lower, "p_upper": p_upper,
            "p_value": max(p_lower, p_upper), "ci90": [estimate - q * se, estimate + q * se],
            "equivalent": max(p_lower, p_upper) < 0.05}


def or_analysis(ratings, truth, covariance: str = "jackknife", treatments=None, confidence: float = 0.95):
    """OR/Hillis analysis of ratings[t][r][k] (NaN = case not in treatment t) against truth[k] (1 = positive).

    Returns reader AUCs, treatment means, mean squares, covariance components and,
    with two or more treatments, the random-reader random-case (RRRC) test; with
    one or more, each treatment's mean AUC with its RRRC interval.
    """
    ratings = np.asarray(ratings, dtype=float)
    truth = np.asarray(truth).astype(bool)
    t_n, r_n, _ = ratings.shape
    names = list(treatments) if treatments is not None else [f"treatment{t + 1}" for t in range(t_n)]
    if r_n < 2:
        return Undefined("MRMC analysis needs at least two readers")
    if covariance not in ("jackknife", "delong"):
        raise ValueError("covariance must be 'jackknife' or 'delong'")
    for t in range(t_n):
        present = ~np.isnan(ratings[t]).all(axis=0)
        if min((present & truth).sum(), (present & ~truth).sum()) < MIN_CASES_PER_CLASS:
            return Undefined(f"every treatment needs at least {MIN_CASES_PER_CLASS} cases of each class "
                             f"(real and synthetic) for its variance")
    aucs, comps = _components(ratings, truth)
    cov = _jackknife_cov(ratings, truth, aucs, comps) if covariance == "jackknife" else _delong_cov(ratings, truth, comps)
    comp = covariance_components(cov, t_n, r_n)
    means = aucs.mean(1)
    grand = aucs.mean()
    result = {
        "covariance_method": covariance, "treatments": names,
        "reader_auc": {n: aucs[t].tolist() for t, n in enumerate(names)},
        "treatment_mean_auc": means.tolist(), "components": comp,
    }
    alpha = 1 - confidence
    if t_n == 1:
        result["per_treatment_rrrc"] = {names[0]: _single_treatment(aucs[0], cov, alpha)}
    else:
        # Each treatment's interval is the single-treatment OR analysis of that treatment's own data
        # (Hillis 2007; as MRMCaov): its own Cov2 and MS(R), over the cases it holds.
        result["per_treatment_rrrc"] = {}
        for t, name in enumerate(names):
            present = ~np.isnan(ratings[t]).all(axis=0)
            own = or_analysis(ratings[t:t + 1][:, :, present], truth[present], covariance, [name], confidence)
            result["per_treatment_rrrc"][name] = own if isinstance(own, Undefined) else own["per_treatment_rrrc"][name]
    if t_n < 2:
        result["rrrc"] = Undefined("comparing treatments needs at least two of them")
        return result
    ms_t = r_n * ((means - grand) ** 2).sum() / (t_n - 1)
    reader_means = aucs.mean(0)
    ms_tr = ((aucs - means[:, None] - reader_means[None, :] + grand) ** 2).sum() / ((t_n - 1) * (r_n - 1))
    denom = ms_tr + r_n * max(comp["Cov2"] - comp["Cov3"], 0.0)
    f = ms_t / denom if denom > 0 else np.inf
    ddf = denom**2 / (ms_tr**2 / ((t_n - 1) * (r_n - 1))) if ms_tr > 0 else np.inf
    result.update(MS_T=float(ms_t), MS_TR=float(ms_tr))
    rrrc = {"F": float(f), "df1": t_n - 1, "df2": float(ddf), "p": float(stats.f.sf(f, t_n - 1, ddf))}
    if t_n == 2:
        diff = float(means[0] - means[1])
        se = np.sqrt(2 / r_n * denom)
        q = stats.t.ppf(1 - alpha / 2, ddf)
        rrrc["difference"] = {"estimate": diff, "se": float(se),
                              "ci95": (max(-1.0, float(diff - q * se)), min(1.0, float(diff + q * se)))}
    result["rrrc"] = rrrc
    frrc_denom = comp["Var"] - comp["Cov1"] + (r_n - 1) * (comp["Cov2"] - comp["Cov3"])
    if frrc_denom > 0:
        chi = (t_n - 1) * ms_t / frrc_denom
        result["frrc"] = {"chi2": float(chi), "df": t_n - 1, "p": float(stats.chi2.sf(chi, t_n - 1))}
    return result
