"""The whole analysis of a study, as one JSON-ready dict, computed from the raw answers.

Regular cases only (calibration cases are excluded from results; repeats feed
intra-reader agreement). Positive class = synthetic. Every figure that cannot be
computed says why (see undefined.py).
"""

import hashlib
from collections import defaultdict
from itertools import combinations

import numpy as np
import pandas as pd

from readerstudy.jobs.progress import NullProgress
from readerstudy.studies.config import is_forced_choice, validate_config
from readerstudy.studies.scales import CRITERIA

from . import agreement, detection, glmm, mrmc, roc, scores
from .data import answer_values, config_hash
from .forced_choice import analyse_forced_choice
from .proportions import proportion
from .undefined import Undefined, to_jsonable

LABEL_CATEGORIES = ["real", "unsure", "fake"]
MIN_GENERATOR_CASES = 5  # synthetic cases per generator before generators are compared
MAX_PAIRWISE_READERS = 10


FRAME_COLUMNS = ["reader", "case_id", "role", "repeat_of", "modality", "dimensionality", "truth", "generator",
                 "label", "confidence", "realism", "anatomy", "slice_consistency", "duration_ms",
                 "years_experience", "is_trainee", "position", "session"]


def answers_frame(study) -> pd.DataFrame:
    """The submitted answers, one row each, with only the columns the analysis reads."""
    read = [c for c in FRAME_COLUMNS if c != "generator"] + ["generator_name", "generator_version"]
    frame = pd.DataFrame(list(answer_values(study, read)), columns=read)
    named = frame["generator_name"].notna() & (frame["generator_name"] != "")
    frame["generator"] = ""
    frame.loc[named, "generator"] = (frame.loc[named, "generator_name"] + " v"
                                     + frame.loc[named, "generator_version"].astype(str))
    return frame[FRAME_COLUMNS]


def _experience_bucket(years, trainee) -> str:
    if trainee:
        return "trainee"
    if years is None or pd.isna(years):
        return "experience unknown"
    return "< 5 years" if years < 5 else "5-10 years" if years <= 10 else "> 10 years"


def _detection(frame: pd.DataFrame, policy: str, ci_method: str) -> dict:
    return detection.detection_metrics(detection.confusion(frame["truth"], frame["label"]), policy, ci_method)


# Per-answer score under each unsure policy: correct 1, wrong 0; unsure as the policy says (None = left out).
UNSURE_SCORE = {"exclude": None, "wrong": 0.0, "half": 0.5, "three-class": 0.0}


def _readers_and_cases(frame: pd.DataFrame, policy: str, margin: float) -> dict:
    """Accuracy, sensitivity and specificity with readers and cases random (OR/Hillis single test on the
    per-answer score), each with the TOST equivalence test of accuracy-like figures against 0.5."""
    truth_synthetic = frame["truth"] == "synthetic"
    correct = np.where(frame["label"] == "unsure", np.nan,
                       ((frame["label"] == "fake") == truth_synthetic).astype(float))
    unsure = UNSURE_SCORE[policy]
    if unsure is not None:
        correct = np.where(frame["label"] == "unsure", unsure, correct)
    scored = frame.assign(score=correct)
    out = {"method": "Obuchowski-Rockette/Hillis single test with percent correct as the figure of merit, "
                     "case jackknife, over the cases every reader answered"
                     + (" (unsure answers left out)" if unsure is None else ""),
           "equivalence_margin": margin}
    for name, rows in (("accuracy", scored), ("sensitivity", scored[truth_synthetic]),
                       ("specificity", scored[~truth_synthetic])):
        matrix = _score_matrix(rows)[3].dropna(axis=1)  # the cases every reader answered
        result = mrmc.score_or_analysis(matrix.to_numpy(), 0.5) if matrix.shape[1] else Undefined(
            "no case was answered by every reader")
        if isinstance(result, dict):
            result["equivalence"] = mrmc.equivalence_test(result["estimate"], result["se"], result["df"], 0.5, margin)
            result["glmm"] = _glmm(rows, unsure)
        out[name] = result
    out["glmm_method"] = ("logistic mixed model, correct ~ 1 + (1 | reader) + (1 | case), Laplace (as lme4::glmer): "
                          "the proportion for a typical reader on a typical case, Wald interval on the logit scale")
    return out


def _glmm(rows: pd.DataFrame, unsure: float | None):
    """The same figure from a logistic GLMM with crossed reader and case effects (binary answers only)."""
    if unsure not in (None, 0.0):
        return Undefined("half credit for unsure answers is not a binary outcome")
    rows = rows.dropna(subset=["score"])
    fit = glmm.fit_crossed_logit(rows["score"].to_numpy(), rows["reader"].to_numpy(), rows["case_id"].to_numpy())
    return fit if isinstance(fit, Undefined) else glmm.proportion_for_typical(fit)


def _ratings_matrix(frame: pd.DataFrame, column: str) -> tuple[list, list, list]:
    """(subjects x readers ratings with None, reader names, case ids) for one answer column."""
    pivot = frame.pivot_table(index="case_id", columns="reader", values=column, aggfunc="first")
    readers, cases = list(pivot.columns), list(pivot.index)
    values = [[None if pd.isna(v) else (v if isinstance(v, str) else int(v)) for v in row] for row in pivot.values]
    return values, readers, cases


def _agreement(frame: pd.DataFrame, column: str, categories: list, ordinal: bool, bootstrap: int, seed: int) -> dict:
    data = frame[frame[column].notna() & (frame[column] != "")]
    if data.empty:
        return Undefined("no answers")
    subjects, readers, _ = _ratings_matrix(data, column)
    if len(readers) < 2:
        return Undefined("agreement needs two or more readers")
    coded = [[None if v is None else categories.index(v) + 1 for v in row] for row in subjects]
    by_rater = [list(col) for col in zip(*coded)]
    domain = list(range(1, len(categories) + 1))
    out = {
        "readers": len(readers), "cases": len(subjects),
        "percent_agreement": agreement.percent_agreement(subjects),
        "all_readers_identical": agreement.all_identical(subjects),
        "convention": agreement.PERCENT_AGREEMENT_CONVENTION,
        "fleiss_kappa": agreement.fleiss_kappa_ratings(subjects, categories),
        "krippendorff_alpha_nominal": agreement.krippendorff_alpha(by_rater, "nominal", domain, bootstrap, seed),
        "gwet_ac1": agreement.gwet_ac(subjects, categories, "unweighted"),
    }
    if ordinal:
        out["krippendorff_alpha_ordinal"] = agreement.krippendorff_alpha(by_rater, "ordinal", domain, bootstrap, seed)
        out["krippendorff_alpha_interval"] = agreement.krippendorff_alpha(by_rater, "interval", domain, bootstrap, seed)
        out["gwet_ac2_quadratic"] = agreement.gwet_ac(subjects, categories, "quadratic")
        complete = [row for row in subjects if all(v is not None for v in row)]
        out["icc"] = agreement.icc(complete) if len(complete) >= 2 else Undefined(
            "the ICC needs two or more cases rated by every reader")
    weightings = ("unweighted", "linear", "quadratic") if ordinal else ("unweighted",)
    codes = np.array([[v or 0 for v in row] for row in coded])
    q = len(categories)
    pairs, means = [], {w: [] for w in weightings}
    detailed = len(readers) <= MAX_PAIRWISE_READERS
    for i, j in combinations(range(len(readers)), 2):
        both = (codes[:, i] > 0) & (codes[:, j] > 0)
        table = np.zeros((q, q))
        np.add.at(table, (codes[both, i] - 1, codes[both, j] - 1), 1)
        for w in weightings:
            value = agreement.kappa_value(table, w)
            if value is not None:
                means[w].append(value)
        if detailed:
            pairs.append({"readers": [readers[i], readers[j]], **{w: agreement.cohen_kappa(table, w) for w in weightings}})
    out["cohen_kappa_mean_pairwise"] = {
        w: float(np.mean(v)) if v else Undefined("no pair of readers has a defined kappa") for w, v in means.items()
    }
    out["cohen_kappa_pairs"] = pairs if detailed else Undefined(
        f"more than {MAX_PAIRWISE_READERS} readers: see the mean pairwise kappa")
    return out


def _intra_reader(answers: pd.DataFrame, config: dict) -> dict:
    """Agreement of each reader with themselves on repeated cases (original vs repeat)."""
    repeats = answers[answers["role"] == "repeat"]
    if repeats.empty:
        return Undefined("the study has no repeated cases")
    originals = answers[answers["role"] == "regular"].set_index(["reader", "case_id"])
    out = {}
    for reader, group in repeats.groupby("reader"):
        first, second = [], []
        for _, row in group.iterrows():
            key = (reader, int(row["repeat_of"]))
            if key in originals.index:
                first.append(originals.loc[key])
                second.append(row)
        if not first:
            out[reader] = Undefined("no repeated case answered twice yet")
            continue
        entry = {"pairs": len(first)}
        table = agreement.contingency([a["label"] for a in first], [b["label"] for b in second], LABEL_CATEGORIES)
        entry["label"] = {"percent_agreement": agreement.percent_agreement_table(table),
                          "cohen_kappa": agreement.cohen_kappa(table)}
        for criterion in config["questions"]["criteria"]:
            scale = [o["value"] for o in config["questions"]["scales"][criterion]]
            a = [None if pd.isna(x[criterion]) else int(x[criterion]) for x in first]
            b = [None if pd.isna(x[criterion]) else int(x[criterion]) for x in second]
            if any(v is not None for v in a):
                entry[criterion] = agreement.cohen_kappa(agreement.contingency(a, b, scale), "quadratic")
        out[reader] = entry
    return out


def _scores(frame: pd.DataFrame, config: dict) -> dict:
    """Per criterion: rating distributions real vs synthetic; Mann-Whitney with the image (mean over readers)."""
    out, p_values = {}, {}
    for criterion in config["questions"]["criteria"]:
        scale = [o["value"] for o in config["questions"]["scales"][criterion]]
        rated = frame[frame[criterion].notna()]
        if rated.empty:
            out[criterion] = Undefined("no ratings")
            continue
        per_image = rated.groupby(["case_id", "truth"])[criterion].mean().reset_index()
        real = per_image[per_image["truth"] == "real"][criterion].to_numpy()
        synthetic = per_image[per_image["truth"] == "synthetic"][criterion].to_numpy()
        test = scores.mann_whitney(real, synthetic)
        out[criterion] = {
            "title": CRITERIA[criterion],
            "scale": [{"value": o["value"], "code": o["code"], "text": o["text"]}
                      for o in config["questions"]["scales"][criterion]],
            "real": scores.distribution([int(v) for v in rated[rated["truth"] == "real"][criterion]], scale),
            "synthetic": scores.distribution([int(v) for v in rated[rated["truth"] == "synthetic"][criterion]], scale),
            "images": {"real": len(real), "synthetic": len(synthetic)},
            "mann_whitney": test,
            "unit": "image (mean rating over readers)",
        }
        p_values[criterion] = test["p_value"] if isinstance(test, dict) else None
    for criterion, p in scores.holm(p_values).items():
        out[criterion]["mann_whitney"]["p_holm"] = p
    return out


def _score_matrix(frame: pd.DataFrame):
    """(readers, cases, truth per case (True = synthetic), readers x cases `score` with NaN where missing)."""
    readers = sorted(frame["reader"].unique())
    cases = sorted(frame["case_id"].unique())
    truth = frame.drop_duplicates("case_id").set_index("case_id").loc[cases, "truth"] == "synthetic"
    pivot = frame.pivot_table(index="reader", columns="case_id", values="score", aggfunc="first").reindex(
        index=readers, columns=cases)
    return readers, cases, truth, pivot


def _roc(frame: pd.DataFrame) -> dict:
    frame = frame.assign(score=[detection.fakeness_score(lab, None if pd.isna(c) else int(c))
                                for lab, c in zip(frame["label"], frame["confidence"])])
    per_reader = {reader: roc.reader_auc(g["truth"] == "synthetic", g["score"]) for reader, g in frame.groupby("reader")}
    readers, cases, truth, pivot = _score_matrix(frame)
    out = {"score": "fake: +confidence, real: -confidence, unsure: 0 (confidence 1 when not asked)",
           "per_reader": per_reader}
    if len(readers) >= 2 and truth.any() and (~truth).any():
        matrix = pivot.to_numpy()[None, :, :]
        out["mrmc_real_vs_synthetic"] = mrmc.or_analysis(matrix, truth.to_numpy(), treatments=["all generators"])
        out["mrmc_real_vs_synthetic_delong"] = (
            mrmc.or_analysis(matrix, truth.to_numpy(), covariance="delong", treatments=["all generators"])
            if not np.isnan(matrix).any() else Undefined("DeLong covariances need every reader to rate every case")
        )
    else:
        out["mrmc_real_vs_synthetic"] = Undefined("needs two or more readers and both real and synthetic cases")
    generators = sorted(g for g in frame["generator"].unique() if g)
    per_generator = frame.drop_duplicates("case_id")["generator"].value_counts()
    few = [g for g in generators if per_generator.get(g, 0) < MIN_GENERATOR_CASES]
    if len(generators) >= 2 and few:
        out["mrmc_generators"] = Undefined(
            f"comparing generators needs at least {MIN_GENERATOR_CASES} synthetic cases of each; "
            + ", ".join(f"{g} has {per_generator.get(g, 0)}" for g in few))
    elif len(generators) >= 2 and len(readers) >= 2:
        case_generator = frame.drop_duplicates("case_id").set_index("case_id").loc[cases, "generator"]
        stacked = []
        for g in generators:
            keep = (case_generator == g) | (case_generator == "")
            stacked.append(np.where(keep.to_numpy()[None, :], pivot.to_numpy(), np.nan))
        out["mrmc_generators"] = mrmc.or_analysis(np.array(stacked), truth.to_numpy(), treatments=generators)
        if isinstance(out["mrmc_generators"], dict):
            out["mrmc_generators"]["note"] = (
                "exploratory: each generator's synthetic cases are its own (a split-plot design) and share the "
                "real ones; OR/Hillis with the cases outside a treatment left out is not a validated "
                "split-plot method")
    else:
        out["mrmc_generators"] = Undefined("comparing generators needs synthetic cases from two or more")
    return out


def _roc_by_rating(frame: pd.DataFrame, config: dict) -> dict:
    """AUC per rating criterion: the rating as a reader's confidence that the image is real (a lower rating
    = more likely synthetic), per reader (DeLong) and with readers and cases random (OR/Hillis)."""
    out = {}
    for criterion in config["questions"]["criteria"]:
        rated = frame[frame[criterion].notna()]
        if rated.empty:
            out[criterion] = Undefined("no ratings")
            continue
        rated = rated.assign(score=-rated[criterion].astype(float))
        readers, _, truth, pivot = _score_matrix(rated)
        out[criterion] = {
            "title": CRITERIA[criterion],
            "score": "minus the rating (the lowest anchor is the most synthetic-looking)",
            "per_reader": {reader: roc.reader_auc(g["truth"] == "synthetic", g["score"])
                           for reader, g in rated.groupby("reader")},
            "mrmc": mrmc.or_analysis(pivot.to_numpy()[None, :, :], truth.to_numpy(), treatments=[criterion])
            if len(readers) >= 2 else Undefined("needs two or more readers"),
        }
    return out


def _reading_behaviour(frame: pd.DataFrame, bins: int = 4) -> dict | Undefined:
    """Accuracy by where a case came in the reader's list (learning, fatigue), by time spent and by session.

    Definite answers only (unsure left out). Bins are quarters of each reader's own list (and of each
    reader's own times), so readers with longer or slower lists weigh alike; the trend is a logistic
    regression of correct on the relative position (0 = first case, 1 = last) with one intercept per reader.
    """
    definite = frame[frame["label"].isin(["fake", "real"])].copy()
    if len(definite) < 2 * bins:
        return Undefined(f"needs at least {2 * bins} definite answers")
    definite["correct"] = ((definite["label"] == "fake") == (definite["truth"] == "synthetic")).astype(int)
    definite["relative"] = definite.groupby("reader")["position"].rank(pct=True, method="first")
    definite["place"] = np.minimum((definite["relative"] * bins).apply(np.ceil).astype(int), bins)
    definite["speed"] = definite.groupby("reader")["duration_ms"].rank(pct=True, method="first").mul(bins).apply(
        np.ceil).astype(int).clip(1, bins)

    def table(column, labels):
        rows = {}
        for value, g in definite.groupby(column):
            rows[labels(value)] = proportion(int(g["correct"].sum()), len(g), p0=None)
        return rows

    out = {
        "unit": "definite answers (unsure left out)",
        "by_place_in_list": table("place", lambda q: f"quarter {q} of the list"),
        "by_time_spent": table("speed", lambda q: f"quarter {q} by time (1 = fastest)"),
        "by_session": table("session", lambda s: f"session {s}"),
    }
    out["trend_over_the_list"] = _position_trend(definite)
    return out


def _position_trend(definite: pd.DataFrame) -> dict | Undefined:
    """Logistic slope of correct on relative position with a per-reader intercept (odds ratio first -> last)."""
    import statsmodels.api as sm

    if definite["correct"].nunique() < 2:
        return Undefined("every definite answer is right (or every one wrong): no trend can be fitted")
    design = pd.get_dummies(definite["reader"], dtype=float)
    design["relative_position"] = definite["relative"].to_numpy()
    try:
        fit = sm.Logit(definite["correct"].to_numpy(), design.to_numpy()).fit(disp=0)
    except Exception as exc:  # perfect separation and similar: no estimate
        return Undefined(f"the logistic fit failed ({type(exc).__name__})")
    slope, se = float(fit.params[-1]), float(fit.bse[-1])
    if not np.isfinite(se):
        return Undefined("the logistic fit has no finite standard error (separation)")
    return {"log_odds_ratio_first_to_last": slope, "se": se,
            "odds_ratio": float(np.exp(slope)),
            "ci95_odds_ratio": [float(np.exp(slope - 1.96 * se)), float(np.exp(slope + 1.96 * se))],
            "p": float(fit.pvalues[-1]), "model": "logit(correct) = reader + slope x relative position"}


class OptionError(ValueError):
    """A bad analysis option (query parameter); the message names it and the choices."""


def analysis_options(params) -> dict:
    """The `unsure` and `ci` query parameters as keyword arguments for `analyse`."""
    from .proportions import METHODS

    policy, ci = params.get("unsure", "exclude"), params.get("ci", "wilson")
    if policy not in detection.POLICIES:
        raise OptionError(f"unknown unsure policy {policy!r}; choose from {', '.join(detection.POLICIES)}")
    if ci not in METHODS:
        raise OptionError(f"unknown interval method {ci!r}; choose from {', '.join(METHODS)}")
    return {"policy": policy, "ci_method": ci}


ANALYSIS_STEPS = 8


def analyse(study, policy: str = "exclude", ci_method: str = "wilson", bootstrap: int = 500, seed: int = 20231,
            progress=None) -> dict:
    """Everything a paper reports about a study, as a JSON-ready dict.

    `progress` (jobs.progress protocol) hears of each of ANALYSIS_STEPS steps and may cancel between them.
    """
    if policy not in detection.POLICIES:
        raise ValueError(f"unknown unsure policy {policy!r}; choose from {', '.join(detection.POLICIES)}")
    progress = progress or NullProgress()
    progress.start(ANALYSIS_STEPS)

    def step(message: str) -> None:
        progress.check_cancelled()
        progress.advance(1, message)

    config = validate_config(study.config)
    answers = answers_frame(study)
    step("answers read")
    regular = answers[answers["role"] == "regular"]
    result = {
        "study": {"name": study.name, "slug": study.slug, "status": study.status, "seed": study.seed,
                  "config_sha256": config_hash(study)},
        "settings": {"positive_class": "synthetic", "unsure_policy": policy,
                     "unsure_policy_description": detection.POLICIES[policy], "ci_method": ci_method,
                     "bootstrap_replicates": bootstrap, "bootstrap_seed": seed,
                     "excluded": "calibration cases; repeats are used only for intra-reader agreement"},
        "counts": {"answers": int(len(regular)), "readers": int(regular["reader"].nunique()),
                   "cases": int(regular["case_id"].nunique()),
                   "calibration_answers": int((answers["role"] == "calibration").sum()),
                   "repeat_answers": int((answers["role"] == "repeat").sum())},
        # What the platform's own pipeline could give away, beside what readers did (see studies/pixel_audit.py).
        "leak_audit": {k: (study.audit or {}).get(k) for k in ("ok", "at", "problems", "warnings", "pixels")},
    }
    if is_forced_choice(config):
        result["design"] = config["design"]
        result["forced_choice"] = analyse_forced_choice(study, config)
        result["settings"]["excluded"] = "calibration trials"
        if isinstance(result["forced_choice"], dict):
            result["counts"] = result["forced_choice"]["counts"]
        result["detection"] = Undefined("a forced-choice study: see forced_choice (hit rate against chance)")
        return to_jsonable(result)
    if regular.empty:
        result["detection"] = Undefined("no submitted answers to regular cases yet")
        return to_jsonable(result)
    by = defaultdict(dict)
    for reader, g in regular.groupby("reader"):
        by["per_reader"][reader] = _detection(g, policy, ci_method)
    for modality, g in regular.groupby("modality"):
        by["by_modality"][modality] = _detection(g, policy, ci_method)
    reals = regular[regular["truth"] == "real"]
    for generator in sorted(g for g in regular["generator"].unique() if g):
        by["by_generator"][generator] = _detection(
            pd.concat([reals, regular[regular["generator"] == generator]]), policy, ci_method)
    buckets = [_experience_bucket(y, t) for y, t in zip(regular["years_experience"], regular["is_trainee"])]
    for bucket, g in regular.assign(bucket=buckets).groupby("bucket"):
        by["by_experience"][bucket] = _detection(g, policy, ci_method)
    margin = config["analysis"]["equivalence_margin"]
    pooled = _detection(regular, policy, ci_method)
    step("accuracy per reader, modality, generator and experience")
    result["detection"] = {"pooled": pooled, **by,
                           "readers_and_cases_random": _readers_and_cases(regular, policy, margin),
                           "note": "pooled figures treat answers as independent; readers_and_cases_random "
                                   "(and roc.mrmc) treat readers and cases as random"}
    step("reader-and-case inference")
    result["roc"] = _roc(regular)
    step("ROC and MRMC")
    result["roc"]["by_rating"] = _roc_by_rating(regular, config)
    step("ROC per rating criterion")
    auc = result["roc"]["mrmc_real_vs_synthetic"]
    if isinstance(auc, dict):
        single = auc["per_treatment_rrrc"]["all generators"]
        auc["equivalence"] = (mrmc.equivalence_test(single["mean_auc"], single["se"], single["df"], 0.5, margin)
                              if isinstance(single, dict) else single)
    result["agreement"] = {"label": _agreement(regular, "label", LABEL_CATEGORIES, False, bootstrap, seed)}
    for criterion in config["questions"]["criteria"]:
        scale = [o["value"] for o in config["questions"]["scales"][criterion]]
        result["agreement"][criterion] = _agreement(regular, criterion, scale, True, bootstrap, seed)
    step("agreement between readers")
    result["intra_reader"] = _intra_reader(answers, config)
    result["reading_behaviour"] = _reading_behaviour(regular)
    step("intra-reader agreement and reading behaviour")
    result["scores"] = _scores(regular, config)
    step("score comparisons")
    return to_jsonable(result)


ANALYSIS_CACHE_SECONDS = 7 * 24 * 3600  # keys name the state analysed, so a stale result is never served


def analysis_state(study, policy: str = "exclude", ci_method: str = "wilson") -> tuple[str, int]:
    """(cache key of the analysis of the study's current state, number of submitted answers)."""
    from django.db.models import Count, Max, Sum

    from readerstudy.reading.models import Read

    # Only what the analysis reads: readers' submitted answers. A draft autosave, a preview, or the
    # telemetry of a revisit changes none of these; every change of an answer bumps its revision
    # (the database refuses one that does not), and a submitted case's decision telemetry is frozen.
    stamp = Read.objects.filter(assigned_case__assignment__study=study, assigned_case__assignment__preview=False,
                                submitted_at__isnull=False).aggregate(
        n=Count("pk"), revisions=Sum("revision"), last=Max("submitted_at"))
    state = (f"{study.pk}|{policy}|{ci_method}|{stamp['n']}|{stamp['revisions']}|{stamp['last']}|"
             f"{config_hash(study)}")
    return "analysis-" + hashlib.sha256(state.encode()).hexdigest(), stamp["n"]


def cached_result(study, key: str) -> dict | None:
    """The analysis stored under `key`, if it is there and is of this study."""
    from django.core.cache import cache

    result = cache.get(key) if key.startswith("analysis-") else None
    return result if isinstance(result, dict) and result.get("study", {}).get("slug") == study.slug else None


def analyse_into_cache(study, key: str, policy: str = "exclude", ci_method: str = "wilson", progress=None) -> dict:
    """`analyse` the study now and keep the result under `key`."""
    from django.core.cache import cache

    result = analyse(study, policy=policy, ci_method=ci_method, progress=progress)
    cache.set(key, result, ANALYSIS_CACHE_SECONDS)
    return result


def cached_analysis(study, policy: str = "exclude", ci_method: str = "wilson") -> dict:
    """`analyse`, computed here unless the current state's result is cached (commands, benchmarks)."""
    key, _ = analysis_state(study, policy, ci_method)
    return cached_result(study, key) or analyse_into_cache(study, key, policy, ci_method)


def _workers_share_the_cache() -> bool:
    """Whether a worker's result would reach this process: not with a dummy cache, nor with a
    per-process (locmem) one while jobs run in another process. Then the request computes it."""
    from django.conf import settings
    from django.core.cache import caches
    from django.core.cache.backends.dummy import DummyCache
    from django.core.cache.backends.locmem import LocMemCache

    cache = caches["default"]  # the backend itself (django.core.cache.cache is a proxy)
    if isinstance(cache, DummyCache):
        return False
    return not isinstance(cache, LocMemCache) or "immediate" in settings.TASKS["default"]["BACKEND"].lower()


def analysis_or_job(study, user=None, policy: str = "exclude", ci_method: str = "wilson"):
    """(key, result, None) when the analysis of the current state is cached or small enough to compute
    now (settings.ANALYSIS_INLINE_ANSWERS); otherwise (key, None, job), the one job computing it."""
    from django.conf import settings

    from readerstudy.jobs.models import Job
    from readerstudy.jobs.queue import create_job

    key, answers = analysis_state(study, policy, ci_method)
    if (result := cached_result(study, key)) is not None:
        return key, result, None
    if answers <= settings.ANALYSIS_INLINE_ANSWERS or not _workers_share_the_cache():
        return key, analyse_into_cache(study, key, policy, ci_method), None
    # A computation of this very state that failed is reported, not started again on every reload.
    failed = Job.objects.filter(single_flight_key=key, status=Job.Status.FAILED).order_by("-created_at").first()
    if failed is not None:
        return key, None, failed
    job = create_job(Job.Kind.ANALYSIS, {"study_id": study.pk, "study_slug": study.slug, "policy": policy,
                                         "ci_method": ci_method},
                     user, title=f"Analysis of {study.name} ({answers:,} answers)", single_flight_key=key)
    return key, None, job
