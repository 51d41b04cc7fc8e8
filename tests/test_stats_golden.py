"""Golden tests: every published data set in ../shared/reference/stats/ reproduced within its tolerance."""

import json
from pathlib import Path

import numpy as np
import pytest

from readerstudy.stats import agreement, mrmc, proportions, scores

SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference" / "stats"
COPY = Path(__file__).parent / "reference_stats"  # the same files, for checkouts without ../shared
REFERENCE = SHARED if SHARED.is_dir() else COPY
FILES = sorted(REFERENCE.glob("*.json"))


def load(name):
    return json.loads((REFERENCE / name).read_text())


def close(actual, expected, tol):
    if isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            close(a, e, tol)
    else:
        assert abs(float(actual) - float(expected)) <= tol + 1e-12, (actual, expected, tol)


def test_every_reference_file_has_a_golden_test():
    covered = {
        "binomial_test_mendel", "cohen_irr_anxiety_weighted", "cohen_sas_3x3", "cohen_wikipedia_2x2",
        "fleiss1971_diagnoses", "fleiss_wikipedia_14raters", "gwet_table_3x3_abstractors", "gwet_table_4x4_diagnosis",
        "krippendorff2004_binary_2obs", "krippendorff2011_4obs_12units", "krippendorff_wikipedia_3coders_15units",
        "newcombe1998_single_proportion_ci", "shrout_fleiss1979_icc", "vandyke_mrmc_or",
        "wilcoxon_mannwhitney_R_examples",
    }
    assert FILES, f"no reference files under {REFERENCE}"
    assert {json.loads(f.read_text())["id"] for f in FILES} <= covered


@pytest.mark.skipif(not SHARED.is_dir(), reason="no ../shared/reference/stats to compare the copy with")
def test_the_copy_under_tests_matches_the_shared_reference():
    assert sorted(p.name for p in COPY.glob("*.json")) == sorted(p.name for p in SHARED.glob("*.json"))
    for path in SHARED.glob("*.json"):
        assert (COPY / path.name).read_bytes() == path.read_bytes(), path.name


def test_binomial_test_and_clopper_pearson():
    d = load("binomial_test_mendel.json")
    i, e, tol = d["input"], d["expected"], d["tolerance"]
    close(proportions.binomial_test(i["x"], i["n"], i["p0"], i["alternative"]), e["p_value"], tol["p_value"])
    close(proportions.proportion(i["x"], i["n"], p0=None)["estimate"], e["estimate"], tol["estimate"])
    close(proportions.proportion_ci(i["x"], i["n"], "clopper-pearson"), e["ci95_clopper_pearson"],
          tol["ci95_clopper_pearson"])


def test_newcombe_single_proportion_intervals():
    d = load("newcombe1998_single_proportion_ci.json")
    methods = {"wilson": "wilson", "wilson_cc": "wilson-cc", "clopper_pearson": "clopper-pearson"}
    for case in d["input"]["cases"]:
        expected = d["expected"][f"{case['x']}/{case['n']}"]
        for key, method in methods.items():
            close(proportions.proportion_ci(case["x"], case["n"], method), expected[key], d["tolerance"][key])


def test_cohen_kappa_wikipedia_2x2():
    d = load("cohen_wikipedia_2x2.json")
    for name, table in d["input"]["tables"].items():
        result = agreement.cohen_kappa(table)
        for key, value in d["expected"][name].items():
            close(result[key], value, d["tolerance"][key])


def test_cohen_kappa_sas_ase_ci_and_tests():
    d = load("cohen_sas_3x3.json")
    tol = d["tolerance"]["all"]
    for weighting in ("unweighted", "linear"):
        r, e = agreement.cohen_kappa(d["input"]["table"], weighting), d["expected"][weighting]
        close(r["kappa"], e["kappa"], tol)
        close(r["se"], e["ase"], tol)
        close(r["ci95"], e["ci95"], tol)
        close(r["se_H0"], e["ase_H0"], tol)
        close(r["z"], e["z"], tol)
        close(r["p_one_sided"], e["p_one_sided"], tol)
        close(r["p_two_sided"], e["p_two_sided"], tol)


def test_weighted_cohen_kappa_irr_anxiety():
    d = load("cohen_irr_anxiety_weighted.json")
    ratings = np.array(d["input"]["ratings"])
    a, b = ratings[:, d["input"]["use_columns"][0]], ratings[:, d["input"]["use_columns"][1]]
    # irr weighs over the observed levels only; the platform passes the full scale. Reproduce irr by
    # passing its levels, and show the full 1-6 scale gives a different (documented) value.
    levels = d["input"]["irr_category_levels_used"]
    table = agreement.contingency(a, b, levels)
    tol = d["tolerance"]
    for weighting, key in [("unweighted", "unweighted"), ("linear", "linear_irr_observed_levels"),
                           ("quadratic", "quadratic_irr_observed_levels")]:
        r, e = agreement.cohen_kappa(table, weighting), d["expected"][key]
        close(r["kappa"], e["kappa"], tol["kappa"])
        close(r["z"], e["z"], tol["z"])
        close(r["p_two_sided"], e["p"], tol["p"])
    full = agreement.cohen_kappa(agreement.contingency(a, b, [1, 2, 3, 4, 5, 6]), "linear")
    assert abs(full["kappa"] - d["expected"]["linear_irr_observed_levels"]["kappa"]) > 1e-3


@pytest.mark.parametrize("name", ["gwet_table_3x3_abstractors.json", "gwet_table_4x4_diagnosis.json"])
def test_gwet_tables_cohen_and_ac1_ac2(name):
    d = load(name)
    tol = d["tolerance"]["all"]
    table = d["input"]["table"]
    for weighting, expected in d["expected"]["cohen"].items():
        r = agreement.cohen_kappa(table, weighting)
        close(r["kappa"], expected["kappa"], tol)
        if "se" in expected:
            close(r["se_gwet"], expected["se"], tol)
        if "ci95" in expected:
            close(r["ci95_gwet"], expected["ci95"], tol)
    for key, weighting in [("ac1", "unweighted"), ("ac2_linear", "linear"), ("ac2_quadratic", "quadratic")]:
        r, expected = agreement.gwet_ac_table(table, weighting=weighting), d["expected"]["gwet"][key]
        close(r["coef"], expected["coef"], tol)
        if "se" in expected:
            close(r["se"], expected["se"], tol)
        if "ci95" in expected:
            close(r["ci95"], expected["ci95"], tol)


def test_fleiss_1971_with_category_kappas_and_z():
    d = load("fleiss1971_diagnoses.json")
    r = agreement.fleiss_kappa_ratings(d["input"]["ratings"], d["input"]["categories"])
    e, tol = d["expected"], d["tolerance"]
    close(r["kappa"], e["kappa"], tol["kappa"])
    close(r["z"], e["z_H0_kappa0"], tol["z_H0_kappa0"])
    close(r["pa"], e["pa"], tol["pa"])
    close(r["pe"], e["pe"], tol["pe"])
    assert r["p_value"] < 1e-12
    assert r["category_totals"] == e["category_totals"]
    for category, value in e["category_kappas"].items():
        close(r["category_kappas"][category], value, tol["category_kappas"])


def test_fleiss_wikipedia_counts():
    d = load("fleiss_wikipedia_14raters.json")
    r, e, tol = agreement.fleiss_kappa(d["input"]["table"]), d["expected"], d["tolerance"]
    close(r["kappa"], e["kappa"], tol["kappa"])
    close(r["pa"], e["P_bar"], tol["P_bar"])
    close(r["pe"], e["Pe_bar"], tol["Pe_bar"])
    close(r["per_subject_agreement"], e["per_subject_P"], tol["per_subject_P"])


def test_krippendorff_2004_binary():
    d = load("krippendorff2004_binary_2obs.json")
    ratings = d["input"]["ratings"]
    close(agreement.krippendorff_alpha(ratings)["alpha"], d["expected"]["nominal"], d["tolerance"]["nominal"])
    close(agreement.percent_agreement([list(u) for u in zip(*ratings)]), d["expected"]["percent_agreement"],
          d["tolerance"]["percent_agreement"])


def test_krippendorff_2011_with_missing_and_gwet_and_generalised_fleiss():
    d = load("krippendorff2011_4obs_12units.json")
    ratings, domain, e, tol = d["input"]["ratings"], d["input"]["value_domain"], d["expected"], d["tolerance"]["all"]
    for level, value in e["krippendorff_alpha"].items():
        r = agreement.krippendorff_alpha(ratings, level, domain)
        close(r["alpha"], value, tol)
        assert r["n_pairable_values"] == e["krippendorff_n_pairable_values"]
    subjects = [list(u) for u in zip(*ratings)]
    for key, weighting in [("ac1", "unweighted"), ("ac2_linear", "linear"), ("ac2_quadratic", "quadratic"),
                           ("ac2_ordinal", "ordinal")]:
        r = agreement.gwet_ac(subjects, domain, weighting)
        for field, value in e["gwet_irrCAC"][key].items():
            close(r["coef" if field == "coef" else field], value, tol)
    fleiss = agreement.fleiss_kappa_ratings(subjects, domain)
    for field in ("pa", "pe"):
        close(fleiss[field], e["fleiss_generalized_irrCAC"][field], tol)
    close(fleiss["kappa"], e["fleiss_generalized_irrCAC"]["coef"], tol)


def test_krippendorff_wikipedia_and_bootstrap_is_reproducible():
    d = load("krippendorff_wikipedia_3coders_15units.json")
    ratings, domain = d["input"]["ratings"], d["input"]["value_domain"]
    close(agreement.krippendorff_alpha(ratings, "nominal", domain)["alpha"], d["expected"]["nominal"],
          d["tolerance"]["all"])
    close(agreement.krippendorff_alpha(ratings, "interval", domain)["alpha"], d["expected"]["interval"],
          d["tolerance"]["all"])
    a = agreement.krippendorff_alpha(ratings, "interval", domain, bootstrap=300, seed=5)
    b = agreement.krippendorff_alpha(ratings, "interval", domain, bootstrap=300, seed=5)
    assert a["ci95_bootstrap"] == b["ci95_bootstrap"]
    assert a["ci95_bootstrap"][0] < a["alpha"] < a["ci95_bootstrap"][1]


def test_shrout_fleiss_icc():
    d = load("shrout_fleiss1979_icc.json")
    r, e, tol = agreement.icc(d["input"]["ratings"]), d["expected"], d["tolerance"]
    for form in ("ICC1", "ICC2", "ICC3", "ICC1k", "ICC2k", "ICC3k"):
        close(r[form]["value"], e[form]["value"], tol["value"])
        close(r[form]["ci95"], e[form]["ci95"], tol["ci95"])
        close(r[form]["value"], e["exact_from_anova"][form], tol["exact_from_anova"])
        for key in ("F", "p"):
            if key in e[form]:
                close(r[form][key], e[form][key], tol[key])
        for key in ("df1", "df2"):
            if key in e[form]:
                assert r[form][key] == e[form][key]
    assert r["default"] == "ICC2"


def test_van_dyke_mrmc_obuchowski_rockette_hillis():
    d = load("vandyke_mrmc_or.json")
    r, e, tol = mrmc.or_analysis(d["input"]["ratings"], d["input"]["truth"]), d["expected"], d["tolerance"]
    for t, name in enumerate(["treatment1", "treatment2"]):
        close(r["reader_auc"][f"treatment{t + 1}"], e["reader_auc"][name], tol["auc"])
    close(r["treatment_mean_auc"], e["treatment_mean_auc"], tol["auc"])
    close(r["MS_T"], e["MS_T"], tol["variance_components"])
    close(r["MS_TR"], e["MS_TR"], tol["variance_components"])
    jk = e["jackknife"]
    close(r["components"]["Var"], jk["Error"], tol["variance_components"])
    for key in ("Cov1", "Cov2", "Cov3"):
        close(r["components"][key], jk[key], tol["variance_components"])
    close(r["rrrc"]["F"], jk["RRRC"]["F"], tol["jackknife_RRRC_rounded"])
    close(r["rrrc"]["df2"], jk["RRRC"]["df2"], tol["jackknife_RRRC_rounded"])
    close(r["rrrc"]["p"], jk["RRRC"]["p"], tol["jackknife_RRRC_rounded"])


def test_wilcoxon_and_mann_whitney_r_examples():
    d = load("wilcoxon_mannwhitney_R_examples.json")
    i, e, tol = d["input"], d["expected"], d["tolerance"]
    paired = scores.wilcoxon_signed_rank(i["paired"]["x"], i["paired"]["y"], i["paired"]["alternative"])
    assert paired["V"] == e["paired"]["V"]
    close(paired["p_value"], e["paired"]["p_value"], tol["p_value"])
    for key in ("two_sample", "two_sample_ties"):
        r = scores.mann_whitney(i[key]["x"], i[key]["y"], i[key].get("alternative", "two-sided"))
        assert r["U"] == e[key]["W"]
        close(r["p_value"], e[key]["p_value"], tol["p_value"])


def test_bootstrap_alpha_from_coincidences_equals_the_krippendorff_package():
    """The fast per-replicate alpha must agree with the library on the published data sets and random data."""
    import krippendorff

    rng = np.random.default_rng(3)
    random_data = rng.integers(1, 6, size=(6, 40)).astype(float)
    random_data[rng.random(random_data.shape) < 0.2] = np.nan
    cases = [(load("krippendorff2011_4obs_12units.json")["input"]["ratings"], [1, 2, 3, 4, 5]),
             (load("krippendorff_wikipedia_3coders_15units.json")["input"]["ratings"], [1, 2, 3, 4]),
             ([[None if np.isnan(v) else v for v in row] for row in random_data], [1, 2, 3, 4, 5])]
    for ratings, domain in cases:
        data = np.array([[np.nan if v is None else v for v in row] for row in ratings], dtype=float)
        o = agreement.unit_coincidences(data, np.array(domain, dtype=float)).sum(0)
        for level in ("nominal", "ordinal", "interval", "ratio"):
            expected = krippendorff.alpha(reliability_data=data, level_of_measurement=level, value_domain=domain)
            assert agreement.alpha_from_coincidences(o, np.array(domain, dtype=float), level) == pytest.approx(
                expected, abs=1e-9), level


@pytest.mark.parametrize("covariance", ["jackknife", "delong"])
def test_each_treatments_interval_is_the_or_analysis_of_its_own_data(covariance):
    """Per-treatment intervals use that treatment's own Cov2 and MS(R) (Hillis 2007, MRMCaov), not Cov2
    averaged over treatments: on the Van Dyke data each equals the analysis of that treatment alone."""
    d = load("vandyke_mrmc_or.json")
    ratings = np.array(d["input"]["ratings"], dtype=float)
    both = mrmc.or_analysis(ratings, d["input"]["truth"], covariance, ["t1", "t2"])
    pooled_cov2 = both["components"]["Cov2"]
    for t, name in enumerate(["t1", "t2"]):
        alone = mrmc.or_analysis(ratings[t:t + 1], d["input"]["truth"], covariance, [name])
        mine, own = both["per_treatment_rrrc"][name], alone["per_treatment_rrrc"][name]
        for key in ("mean_auc", "se", "df", "Cov2", "MS_R"):
            assert mine[key] == pytest.approx(own[key], rel=1e-12), key
        assert mine["ci95"] == pytest.approx(own["ci95"], rel=1e-12)
        assert own["Cov2"] == pytest.approx(alone["components"]["Cov2"], rel=1e-12)
        assert abs(own["Cov2"] - pooled_cov2) > 1e-6  # the averaged Cov2 would have given another interval
