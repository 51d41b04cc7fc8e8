"""Inter- and intra-reader agreement.

Cohen's kappa comes from statsmodels (large-sample ASE of Fleiss, Cohen & Everitt
1969, as SAS prints it); Krippendorff's alpha from the `krippendorff` package.
Fleiss' kappa with per-category values and its H0 standard error (Fleiss, Nee &
Landis 1979), Gwet's AC1/AC2 (Gwet 2014, as irrCAC computes them) and the
Shrout-Fleiss / McGraw-Wong ICCs are written here because no maintained library
gives them with missing ratings, standard errors and intervals.

Weighted statistics always use the full rating scale passed in `categories`,
not only the categories that happen to occur.
"""

from collections import Counter

import krippendorff
import numpy as np
from scipy import stats
from statsmodels.stats.inter_rater import cohens_kappa as sm_cohens_kappa

from .undefined import Undefined

WEIGHTINGS = ("unweighted", "linear", "quadratic")


# --- weights ---------------------------------------------------------------------

def weight_matrix(categories, kind: str) -> np.ndarray:
    """Agreement weights over the full scale: identity, linear, quadratic or (Gwet) ordinal."""
    if kind in ("unweighted", "identity", None):
        return np.eye(len(categories))
    values = np.asarray(categories, dtype=float)
    q = len(values)
    span = values.max() - values.min() if q > 1 else 1.0
    diff = np.abs(values[:, None] - values[None, :])
    if kind == "linear":
        return 1 - diff / span
    if kind == "quadratic":
        return 1 - (diff / span) ** 2
    if kind == "ordinal":
        idx = np.arange(q)
        n_kl = np.abs(idx[:, None] - idx[None, :]) + 1
        w = n_kl * (n_kl - 1) / 2
        return 1 - w / w.max()
    raise ValueError(f"unknown weighting {kind!r}")


# --- two raters --------------------------------------------------------------------

def contingency(a, b, categories) -> np.ndarray:
    """Rater A (rows) x rater B (columns) counts over the full category list; pairs with a missing value drop."""
    index = {c: i for i, c in enumerate(categories)}
    pairs = [(index[x], index[y]) for x, y in zip(a, b) if x is not None and y is not None]
    table = np.zeros((len(categories), len(categories)))
    if pairs:
        rows, cols = zip(*pairs)
        np.add.at(table, (list(rows), list(cols)), 1)
    return table


def kappa_value(table, weighting: str = "unweighted") -> float | None:
    """Cohen's kappa alone (no standard errors), for summaries over many reader pairs; None if undefined."""
    table = np.asarray(table, dtype=float)
    n = table.sum()
    if n == 0:
        return None
    weights = weight_matrix(range(table.shape[0]), weighting)
    p = table / n
    pa = (weights * p).sum()
    pe = (weights * np.outer(p.sum(1), p.sum(0))).sum()
    return None if pe >= 1 - 1e-12 else float((pa - pe) / (1 - pe))


def percent_agreement_table(table) -> float | Undefined:
    table = np.asarray(table, dtype=float)
    n = table.sum()
    return float(np.trace(table) / n) if n else Undefined("no pairs rated by both")


def cohen_kappa(table, weighting: str = "unweighted", confidence: float = 0.95) -> dict | Undefined:
    """Cohen's kappa of a square table (full scale), with ASE, CI, z (ASE under H0) and p-values.

    Also gives Gwet's (2014) linearised variance and t-based interval (irrCAC's kappa2.table),
    which some software reports instead of the ASE.
    """
    table = np.asarray(table, dtype=float)
    n = table.sum()
    if n == 0:
        return Undefined("no cases rated by both readers")
    weights = weight_matrix(range(table.shape[0]), weighting)
    p = table / n
    rows, cols = p.sum(1), p.sum(0)
    pa = float((weights * p).sum())
    pe = float((weights * np.outer(rows, cols)).sum())
    if pe >= 1 - 1e-12:
        return Undefined("chance agreement is 1: both readers used a single category")
    res = sm_cohens_kappa(table, wt=None if weighting == "unweighted" else weighting)
    kappa = float(res["kappa"])
    z = stats.norm.ppf(0.5 + confidence / 2)
    ase, ase0 = float(res["std_kappa"]), float(res["std_kappa0"])
    # Gwet's variance (irrCAC kappa2.table), t quantile with n-1 degrees of freedom.
    pi_row, pi_col = weights @ cols, weights.T @ rows
    term = (p * (weights - (1 - kappa) * (pi_row[:, None] + pi_col[None, :])) ** 2).sum()
    var_gwet = (term - (pa - 2 * (1 - kappa) * pe) ** 2) / (n * (1 - pe) ** 2)
    se_gwet = float(np.sqrt(max(var_gwet, 0.0)))
    t = stats.t.ppf(0.5 + confidence / 2, n - 1) if n > 1 else np.nan
    return {
        "kappa": kappa, "weighting": weighting, "po": pa, "pe": pe, "n": int(n),
        "se": ase, "ci95": (kappa - z * ase, kappa + z * ase),
        "se_H0": ase0, "z": kappa / ase0 if ase0 > 0 else Undefined("zero variance under H0"),
        "p_two_sided": float(res["pvalue_two_sided"]), "p_one_sided": float(res["pvalue_one_sided"]),
        "se_gwet": se_gwet, "ci95_gwet": (kappa - t * se_gwet, min(1.0, kappa + t * se_gwet)),
    }


# --- many raters -------------------------------------------------------------------

def _counts(ratings, categories) -> np.ndarray:
    """subjects x raters (None = missing) -> subjects x categories counts."""
    index = {c: i for i, c in enumerate(categories)}
    counts = np.zeros((len(ratings), len(categories)))
    for i, row in enumerate(ratings):
        for value in row:
            if value is not None:
                counts[i, index[value]] += 1
    return counts


def fleiss_kappa(counts, categories=None) -> dict | Undefined:
    """Fleiss' kappa from a subjects x categories count table.

    With the same number of ratings per subject this is Fleiss (1971), with
    per-category kappas and the Fleiss-Nee-Landis z. With missing ratings it is
    Gwet's generalisation (agreement over subjects rated at least twice, chance
    from per-subject category shares), which reduces to Fleiss' when complete.
    """
    counts = np.asarray(counts, dtype=float)
    r = counts.sum(1)
    keep = r >= 1
    counts, r = counts[keep], r[keep]
    n_subjects, q = counts.shape
    if n_subjects == 0 or (r >= 2).sum() == 0:
        return Undefined("no subject was rated by two or more readers")
    two = r >= 2
    pa = float(np.mean((counts[two] * (counts[two] - 1)).sum(1) / (r[two] * (r[two] - 1))))
    pi = (counts / r[:, None]).mean(0)
    pe = float((pi ** 2).sum())
    if pe >= 1 - 1e-12:
        return Undefined("every rating fell in one category")
    kappa = (pa - pe) / (1 - pe)
    per_subject = (counts * (counts - 1)).sum(1) / np.where(two, r * (r - 1), 1)
    result = {"kappa": float(kappa), "pa": pa, "pe": pe, "n_subjects": int(n_subjects),
              "category_totals": counts.sum(0).astype(int).tolist(),
              "per_subject_agreement": [float(v) if t else None for v, t in zip(per_subject, two)]}
    equal = np.all(r == r[0])
    if equal:
        m, n = r[0], n_subjects
        p_j = counts.sum(0) / (n * m)
        q_j = 1 - p_j
        pq = p_j * q_j
        with np.errstate(divide="ignore", invalid="ignore"):
            per = 1 - (counts * (m - counts)).sum(0) / (n * m * (m - 1) * pq)
        labels = categories if categories is not None else range(1, q + 1)
        result["category_kappas"] = {
            str(c): float(k) if pq[j] > 0 else Undefined("category never or always used")
            for j, (c, k) in enumerate(zip(labels, per))
        }
        se0 = np.sqrt(2) / (pq.sum() * np.sqrt(n * m * (m - 1))) * np.sqrt(pq.sum() ** 2 - (pq * (q_j - p_j)).sum())
        result["se_H0"] = float(se0)
        result["z"] = float(kappa / se0)
        result["p_value"] = float(2 * stats.norm.sf(abs(kappa / se0)))
    else:
        result["note"] = "missing ratings: Gwet's generalisation; no per-category kappas or H0 z"
    return result


def fleiss_kappa_ratings(ratings, categories) -> dict | Undefined:
    """Fleiss' kappa from subjects x raters ratings (None = missing)."""
    return fleiss_kappa(_counts(ratings, categories), categories)


def gwet_ac(ratings, categories, weighting: str = "unweighted", confidence: float = 0.95) -> dict | Undefined:
    """Gwet's AC1 (unweighted) or AC2 (weighted) for subjects x raters ratings with missing values.

    Follows irrCAC's gwet.ac1.raw: variance by linearisation over subjects, t(n-1)
    interval capped at 1.
    """
    counts = _counts(ratings, categories)
    r = counts.sum(1)
    keep = r >= 1
    counts, r = counts[keep], r[keep]
    n, q = counts.shape
    two = r >= 2
    n2 = int(two.sum())
    if n2 == 0:
        return Undefined("no subject was rated by two or more readers")
    if q < 2:
        return Undefined("needs at least two categories")
    w = weight_matrix(categories, weighting)
    counts_w = counts @ w.T
    denom = r * (r - 1)
    denom_safe = np.where(denom == 0, 1, denom)
    pa_i = ((counts * (counts_w - 1)).sum(1)) / denom_safe
    pa = float(pa_i[two].sum() / n2)
    pi = (counts / r[:, None]).mean(0)
    t_w = w.sum() / (q * (q - 1))
    pe = float(t_w * (pi * (1 - pi)).sum())
    if pe >= 1 - 1e-12:
        return Undefined("chance agreement is 1")
    coef = (pa - pe) / (1 - pe)
    ac_i = (n / n2) * (pa_i - pe * two) / (1 - pe)
    pe_i = t_w * (counts @ (1 - pi)) / r
    ac_i_x = ac_i - 2 * (1 - coef) * (pe_i - pe) / (1 - pe)
    var = ((ac_i_x - coef) ** 2).sum() / (n * (n - 1)) if n > 1 else np.nan
    se = float(np.sqrt(var))
    tq = stats.t.ppf(0.5 + confidence / 2, n - 1) if n > 1 else np.nan
    return {
        "coef": float(coef), "pa": pa, "pe": pe, "se": se, "weighting": weighting,
        "ci95": (float(coef - tq * se), float(min(1.0, coef + tq * se))),
        "p_value": float(2 * stats.t.sf(abs(coef / se), n - 1)) if se > 0 else Undefined("zero variance"),
        "n_subjects": int(n),
    }


def gwet_ac_table(table, categories=None, weighting: str = "unweighted", confidence: float = 0.95) -> dict | Undefined:
    """AC1/AC2 for two raters from a contingency table (rows rater A), as irrCAC's gwet.ac1.table."""
    table = np.asarray(table, dtype=float)
    n, q = table.sum(), table.shape[0]
    if n == 0:
        return Undefined("no cases rated by both readers")
    w = weight_matrix(categories if categories is not None else range(1, q + 1), weighting)
    p = table / n
    pa = float((w * p).sum())
    pi = (p.sum(1) + p.sum(0)) / 2
    t_w = w.sum() / (q * (q - 1))
    pe = float(t_w * (pi * (1 - pi)).sum())
    if pe >= 1 - 1e-12:
        return Undefined("chance agreement is 1")
    coef = (pa - pe) / (1 - pe)
    term = (p * (w - 2 * (1 - coef) * t_w * (1 - (pi[:, None] + pi[None, :]) / 2)) ** 2).sum()
    se = float(np.sqrt(max((term - (pa - 2 * (1 - coef) * pe) ** 2) / (n * (1 - pe) ** 2), 0.0)))
    tq = stats.t.ppf(0.5 + confidence / 2, n - 1)
    return {
        "coef": float(coef), "pa": pa, "pe": pe, "se": se, "weighting": weighting,
        "ci95": (float(coef - tq * se), float(min(1.0, coef + tq * se))),
        "p_value": float(2 * stats.t.sf(abs(coef / se), n - 1)) if se > 0 else Undefined("zero variance"),
        "n_subjects": int(n),
    }


def unit_coincidences(data: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-unit coincidence matrices (units x V x V) of raters x units data (NaN = missing).

    Units with fewer than two values contribute zeros (they are unpairable).
    """
    counts = np.stack([(data == v).sum(0) for v in values], axis=1).astype(float)  # units x V
    m = counts.sum(1)
    pairable = m >= 2
    out = np.zeros((data.shape[1], len(values), len(values)))
    c = counts[pairable]
    out[pairable] = (c[:, :, None] * c[:, None, :] - np.einsum("uv,vw->uvw", c, np.eye(len(values)))) / (
        m[pairable] - 1)[:, None, None]
    return out


def alpha_from_coincidences(o: np.ndarray, values: np.ndarray, level: str) -> float:
    """Krippendorff's alpha from a coincidence matrix: 1 - D_o / D_e with the level's metric."""
    n_c = o.sum(1)
    n = n_c.sum()
    v = np.asarray(values, dtype=float)
    if level == "nominal":
        delta = 1 - np.eye(len(v))
    elif level == "interval":
        delta = (v[:, None] - v[None, :]) ** 2
    elif level == "ratio":
        with np.errstate(divide="ignore", invalid="ignore"):
            delta = np.nan_to_num(((v[:, None] - v[None, :]) / (v[:, None] + v[None, :])) ** 2)
    elif level == "ordinal":
        cum = np.cumsum(n_c)
        lo, hi = np.minimum.outer(np.arange(len(v)), np.arange(len(v))), np.maximum.outer(np.arange(len(v)),
                                                                                        np.arange(len(v)))
        between = cum[hi] - np.where(lo > 0, cum[lo - 1], 0)
        delta = (between - (n_c[:, None] + n_c[None, :]) / 2) ** 2
    else:
        raise ValueError(f"unknown level {level!r}")
    expected = (np.outer(n_c, n_c) * delta).sum() / (n - 1)
    return float(1 - (o * delta).sum() / expected) if expected > 0 else float("nan")


def krippendorff_alpha(ratings_by_rater, level: str = "nominal", value_domain=None,
                       bootstrap: int = 0, seed: int = 20231, confidence: float = 0.95) -> dict | Undefined:
    """Krippendorff's alpha for raters x units data (None = missing), with an optional bootstrap CI.

    The estimate comes from the `krippendorff` package. The bootstrap resamples
    units (cases) with a fixed seed; each replicate's alpha is computed from the
    resampled units' coincidence matrices, which is exact and fast.
    """
    data = np.array([[np.nan if v is None else float(v) for v in row] for row in ratings_by_rater], dtype=float)
    pairable = (~np.isnan(data)).sum(0)
    if (pairable >= 2).sum() == 0:
        return Undefined("no unit has two or more ratings")
    observed = data[~np.isnan(data)]
    if len(np.unique(observed)) < 2:
        return Undefined("all ratings are the same value: no variation to assess")
    domain = None if value_domain is None else [float(v) for v in value_domain]
    alpha = float(krippendorff.alpha(reliability_data=data, level_of_measurement=level, value_domain=domain))
    result = {"alpha": alpha, "level": level, "n_pairable_values": int(pairable[pairable >= 2].sum())}
    if bootstrap:
        values = np.array(domain if domain is not None else np.unique(observed))
        per_unit = unit_coincidences(data, values)[pairable >= 2]
        rng = np.random.default_rng(seed)
        units = len(per_unit)
        weights = np.stack([np.bincount(rng.integers(0, units, units), minlength=units) for _ in range(bootstrap)])
        replicates = (weights @ per_unit.reshape(units, -1)).reshape(bootstrap, len(values), len(values))
        draws = np.array([alpha_from_coincidences(o, values, level) for o in replicates])
        draws = draws[np.isfinite(draws)]
        if len(draws):
            tail = (1 - confidence) / 2 * 100
            result["ci95_bootstrap"] = tuple(float(x) for x in np.percentile(draws, [tail, 100 - tail]))
            result["bootstrap"] = {"replicates": int(len(draws)), "seed": seed, "unit": "case"}
    return result


PERCENT_AGREEMENT_CONVENTION = (
    "percent agreement: the share of agreeing pairs among all pairs of readers who rated the same case "
    "(missing ratings leave their pairs out; a case rated by one reader counts not at all); all identical: "
    "the share of cases rated by two or more readers on which every rating is the same")


def all_identical(ratings) -> float | Undefined:
    """Share of subjects with two or more ratings on which all ratings agree (None = missing)."""
    rated = [[v for v in row if v is not None] for row in ratings]
    rated = [row for row in rated if len(row) >= 2]
    return sum(len(set(row)) == 1 for row in rated) / len(rated) if rated else Undefined(
        "no subject was rated by two or more readers")


def percent_agreement(ratings) -> float | Undefined:
    """Mean pairwise agreement over subjects x raters ratings (None = missing)."""
    agree = total = 0
    for row in ratings:
        counts = Counter(v for v in row if v is not None)
        n = sum(counts.values())
        total += n * (n - 1) // 2  # every pair of ratings of the subject
        agree += sum(c * (c - 1) // 2 for c in counts.values())  # pairs that agree
    return agree / total if total else Undefined("no subject was rated by two or more readers")


# --- ICC -------------------------------------------------------------------------

def icc(ratings, confidence: float = 0.95) -> dict | Undefined:
    """Shrout & Fleiss (1979) / McGraw & Wong (1996) ICCs for a complete targets x raters matrix.

    Keys: ICC1 (one-way random), ICC2 = ICC(A,1) two-way random absolute agreement
    (the default the platform reports), ICC3 = ICC(C,1) consistency, and their
    average-measure forms ICC1k, ICC2k, ICC3k; each with F test and interval.
    """
    x = np.asarray(ratings, dtype=float)
    if x.ndim != 2 or np.isnan(x).any():
        return Undefined("the ICC needs a complete targets x raters matrix (no missing ratings)")
    n, k = x.shape
    if n < 2 or k < 2:
        return Undefined("the ICC needs at least two targets and two raters")
    grand = x.mean()
    ss_rows = k * ((x.mean(1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(0) - grand) ** 2).sum()
    ss_total = ((x - grand) ** 2).sum()
    ss_err = ss_total - ss_rows - ss_cols
    bms, jms = ss_rows / (n - 1), ss_cols / (k - 1)
    ems = ss_err / ((n - 1) * (k - 1))
    wms = (ss_cols + ss_err) / (n * (k - 1))
    if bms == 0 and ems == 0:
        return Undefined("no variation between targets or raters")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = _icc_forms(bms, jms, ems, wms, n, k, 1 - confidence)
    # Raters who agree exactly leave no residual variance: the ICC is still defined, its F test and
    # interval are not (they divide by it).
    for zero, forms in ((ems == 0, ("ICC3", "ICC3k", "ICC2", "ICC2k")), (wms == 0, ("ICC1", "ICC1k"))):
        if zero:
            reason = "no residual variance (the raters agree exactly): no F test or interval"
            for form in forms:
                out[form].update({key: Undefined(reason) for key in ("F", "p", "ci95") if key in out[form]})
    return out


def _icc_forms(bms, jms, ems, wms, n, k, a) -> dict:
    out = {"anova": {"BMS": bms, "JMS": jms, "EMS": ems, "WMS": wms, "n_targets": n, "n_raters": k}}

    f1 = bms / wms
    df1, df2 = n - 1, n * (k - 1)
    fl, fu = f1 / stats.f.ppf(1 - a / 2, df1, df2), f1 * stats.f.ppf(1 - a / 2, df2, df1)
    out["ICC1"] = {"value": (bms - wms) / (bms + (k - 1) * wms), "F": f1, "df1": df1, "df2": df2,
                   "p": stats.f.sf(f1, df1, df2), "ci95": ((fl - 1) / (fl + k - 1), (fu - 1) / (fu + k - 1))}
    out["ICC1k"] = {"value": (bms - wms) / bms, "ci95": (1 - 1 / fl, 1 - 1 / fu)}

    f3 = bms / ems
    df2 = (n - 1) * (k - 1)
    fl, fu = f3 / stats.f.ppf(1 - a / 2, df1, df2), f3 * stats.f.ppf(1 - a / 2, df2, df1)
    out["ICC3"] = {"value": (bms - ems) / (bms + (k - 1) * ems), "F": f3, "df1": df1, "df2": df2,
                   "p": stats.f.sf(f3, df1, df2), "ci95": ((fl - 1) / (fl + k - 1), (fu - 1) / (fu + k - 1))}
    out["ICC3k"] = {"value": (bms - ems) / bms, "ci95": (1 - 1 / fl, 1 - 1 / fu)}

    icc2 = (bms - ems) / (bms + (k - 1) * ems + k * (jms - ems) / n)
    fj = jms / ems
    vn = (k - 1) * (n - 1) * (k * icc2 * fj + n * (1 + (k - 1) * icc2) - k * icc2) ** 2
    vd = (n - 1) * k**2 * icc2**2 * fj**2 + (n * (1 + (k - 1) * icc2) - k * icc2) ** 2
    v = vn / vd
    f2u, f2l = stats.f.ppf(1 - a / 2, n - 1, v), stats.f.ppf(1 - a / 2, v, n - 1)
    lower = n * (bms - f2u * ems) / (f2u * (k * jms + (k * n - k - n) * ems) + n * bms)
    upper = n * (f2l * bms - ems) / (k * jms + (k * n - k - n) * ems + n * f2l * bms)
    out["ICC2"] = {"value": icc2, "F": f3, "df1": df1, "df2": df2, "p": stats.f.sf(f3, df1, df2),
                   "ci95": (lower, upper)}
    out["ICC2k"] = {"value": (bms - ems) / (bms + (jms - ems) / n),
                    "ci95": (lower * k / (1 + lower * (k - 1)), upper * k / (1 + upper * (k - 1)))}
    out["default"] = "ICC2"
    return out
