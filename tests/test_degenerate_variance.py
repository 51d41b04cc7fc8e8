"""Degenerate data get an undefined variance with the reason, never a falsely exact interval (issue 13, point 3)."""

import json

import numpy as np
import pytest
from django.urls import reverse

from readerstudy.accounts.roles import ANALYST
from readerstudy.stats import mrmc, roc
from readerstudy.stats.data import answer_rows
from readerstudy.stats.undefined import Undefined
from readerstudy.studies.models import AssignedCase

from .studies import make_pool, make_user, open_study_for, readers


def test_one_case_of_a_class_all_ties_and_complete_separation_have_no_delong_interval():
    one = roc.reader_auc([True, False, False, False], [3, 1, 2, 1])
    assert one["auc"] == 1.0 and one["se_delong"] == Undefined("DeLong's variance needs at least two cases of each class")
    assert isinstance(one["ci95"], Undefined)
    tied = roc.reader_auc([True, True, False, False], [0, 0, 0, 0])  # all unsure
    assert tied["auc"] == 0.5 and "same score" in tied["se_delong"].reason
    separated = roc.reader_auc([True, True, False, False], [5, 4, -3, -5])
    assert separated["auc"] == 1.0 and "completely separated" in separated["ci95"].reason
    usual = roc.reader_auc([True, True, True, False, False, False], [5, 1, 3, -1, 2, -4])
    assert isinstance(usual["se_delong"], float) and 0 <= usual["ci95"][0] < usual["ci95"][1] <= 1


def test_mrmc_needs_two_cases_of_each_class_and_says_when_there_is_no_variance():
    truth = [1, 0, 0, 0, 0]
    ratings = np.random.default_rng(1).normal(size=(1, 3, 5))
    assert mrmc.or_analysis(ratings, truth) == Undefined(
        "every treatment needs at least 2 cases of each class (real and synthetic) for its variance")
    tied = np.zeros((1, 3, 6))
    single = mrmc.or_analysis(tied, [1, 1, 1, 0, 0, 0])["per_treatment_rrrc"]["treatment1"]
    assert single["mean_auc"] == 0.5 and isinstance(single["ci95"], Undefined)


def test_mrmc_intervals_are_clipped_to_0_1():
    rng = np.random.default_rng(4)
    truth = np.array([1] * 4 + [0] * 4, dtype=bool)
    ratings = np.where(truth, 2.0, -2.0)[None, None, :] + rng.normal(0, 0.1, (1, 4, 8))
    ratings[0, 0, :] = rng.normal(0, 3, 8)  # one reader far worse: a wide interval around a high mean
    single = mrmc.or_analysis(ratings, truth)["per_treatment_rrrc"]["treatment1"]
    assert single["ci95"][1] == 1.0 and single["mean_auc"] + 2 * single["se"] > 1


@pytest.mark.django_db
def test_a_generator_with_one_synthetic_case_gets_no_comparison(client):
    from generation.models import Generator

    from readerstudy.imaging.models import PoolItem

    make_pool(real={("CT", "2d"): 6}, synthetic={("CT", "2d"): 6})
    other = Generator.objects.create(name="second", version="1", kind=Generator.Kind.EXTERNAL, modalities=["CT"])
    moved = PoolItem.objects.filter(origin="synthetic").order_by("pk").first()
    PoolItem.objects.filter(pk=moved.pk).update(generator=other)
    team = readers(2)
    study = open_study_for(team, {("CT", "2d"): 12})
    for reader in team:
        client.force_login(reader)
        for case in AssignedCase.objects.filter(assignment__reader=reader).order_by("position"):
            body = {"label": "fake", "confidence": 1 + case.position % 5, "realism": 1, "anatomy": 1,
                    "submit": True, "idempotency_key": f"degenerate-{case.pk:05d}"}
            client.post(reverse("read-answer", args=[case.token]), json.dumps(body), content_type="application/json")
    client.force_login(make_user("ana", ANALYST))
    result = client.get(reverse("analysis-json", args=[study.slug])).json()["roc"]["mrmc_generators"]
    assert result == {"undefined": "comparing generators needs at least 5 synthetic cases of each; second v1 has 1"}


def test_half_credit_intervals_are_t_intervals_of_the_mean_score():
    from scipy import stats

    from readerstudy.stats.detection import detection_metrics

    table = {"synthetic": {"fake": 7, "unsure": 4, "real": 3}, "real": {"real": 6, "unsure": 2, "fake": 4}}
    result = detection_metrics(table, "half")
    scores = np.array([1] * 7 + [0.5] * 4 + [0] * 3)  # synthetic cases: sensitivity
    half = stats.t.ppf(0.975, len(scores) - 1) * scores.std(ddof=1) / np.sqrt(len(scores))
    assert result["sensitivity"]["estimate"] == pytest.approx(scores.mean())
    assert result["sensitivity"]["ci95"] == pytest.approx((scores.mean() - half, scores.mean() + half))
    assert "t interval" in result["accuracy"]["ci_method"]
    assert isinstance(result["ppv"]["ci95"], Undefined) and isinstance(result["sensitivity"]["p_value_vs_chance"],
                                                                       Undefined)


def test_percent_agreement_states_its_convention_and_all_identical_is_beside_it():
    from readerstudy.stats import agreement

    ratings = [["a", "a", "a"], ["a", "b", None], ["b", None, None], ["a", "a", "b"]]
    assert agreement.percent_agreement(ratings) == pytest.approx((3 + 0 + 1) / (3 + 1 + 3))
    assert agreement.all_identical(ratings) == pytest.approx(1 / 3)  # the case rated once does not count
    assert "pairs of readers who rated the same case" in agreement.PERCENT_AGREEMENT_CONVENTION


def test_equivalence_to_chance_is_two_one_sided_tests():
    from scipy import stats

    result = mrmc.equivalence_test(0.52, 0.02, 12.0, 0.5, 0.10)
    assert result["p_lower"] == pytest.approx(stats.t.sf((0.52 - 0.40) / 0.02, 12))
    assert result["p_upper"] == pytest.approx(stats.t.cdf((0.52 - 0.60) / 0.02, 12))
    assert result["equivalent"] and result["ci90"][0] > 0.40 and result["ci90"][1] < 0.60
    wide = mrmc.equivalence_test(0.52, 0.08, 12.0, 0.5, 0.10)
    assert not wide["equivalent"] and wide["p_value"] > 0.05  # cannot tell either way: not shown equivalent
    assert isinstance(mrmc.equivalence_test(0.5, Undefined("x"), 3.0, 0.5, 0.1), Undefined)


@pytest.mark.django_db
def test_readers_and_cases_random_accuracy_with_equivalence_on_the_dashboard(client):
    make_pool(real={("CT", "2d"): 6}, synthetic={("CT", "2d"): 6})
    team = readers(3)
    study = open_study_for(team, {("CT", "2d"): 12}, analysis={"equivalence_margin": 0.15})
    rng = np.random.default_rng(2)
    for reader in team:
        client.force_login(reader)
        # In reading order: the same answers on every database and in every run of the suite.
        for case in (AssignedCase.objects.filter(assignment__reader=reader).select_related("case__item")
                     .order_by("position")):
            label = ["fake", "real", "unsure"][rng.integers(0, 3)]
            body = {"label": label, "confidence": 3, "realism": 1, "anatomy": 1, "submit": True,
                    "idempotency_key": f"equiv-{case.pk:05d}"}
            client.post(reverse("read-answer", args=[case.token]), json.dumps(body), content_type="application/json")
    client.force_login(make_user("ana", ANALYST))
    for policy in ("exclude", "wrong", "half", "three-class"):
        data = client.get(reverse("analysis-json", args=[study.slug]) + f"?unsure={policy}").json()
        rc = data["detection"]["readers_and_cases_random"]
        assert rc["equivalence_margin"] == 0.15
        for name in ("accuracy", "sensitivity", "specificity"):
            m = rc[name]
            if "undefined" in m:
                continue
            if "undefined" in m["ci95"]:  # an estimate whose variance cannot be estimated: said, not zero
                assert isinstance(m["ci95"]["undefined"], str) and 0 <= m["estimate"] <= 1, (policy, name)
                continue
            assert 0 <= m["ci95"][0] <= m["estimate"] <= m["ci95"][1] <= 1, (policy, name)
            assert m["equivalence"]["bounds"] == pytest.approx([0.35, 0.65])
    # The accuracy under "wrong" is the readers' mean percent correct over the cases all answered.
    wrong = client.get(reverse("analysis-json", args=[study.slug]) + "?unsure=wrong").json()
    acc = wrong["detection"]["readers_and_cases_random"]["accuracy"]
    per_reader = [v["accuracy"]["estimate"] for v in wrong["detection"]["per_reader"].values()]
    assert acc["estimate"] == pytest.approx(np.mean(per_reader))
    # Beside it, the logistic GLMM with crossed reader and case effects on the same binary answers.
    from readerstudy.stats.glmm import fit_crossed_logit

    rows = [r for r in answer_rows(study) if r["role"] == "regular"]
    direct = fit_crossed_logit([r["label"] != "unsure" and (r["label"] == "fake") == (r["truth"] == "synthetic")
                                for r in rows], [r["reader"] for r in rows], [r["case_id"] for r in rows])
    if "undefined" in acc["glmm"]:
        assert isinstance(direct, Undefined)
    else:
        assert acc["glmm"]["intercept"] == pytest.approx(direct["intercept"])
        assert acc["glmm"]["ci95"][0] < acc["glmm"]["estimate"] < acc["glmm"]["ci95"][1]
    half = client.get(reverse("analysis-json", args=[study.slug]) + "?unsure=half").json()
    assert "binary" in half["detection"]["readers_and_cases_random"]["accuracy"]["glmm"]["undefined"]
    page = client.get(reverse("analysis", args=[study.slug])).content.decode()
    assert "Headline: Readers and cases random; equivalence to chance (0.5 ± 0.15)" in page
    assert "Logistic GLMM (typical reader and case)" in page


@pytest.mark.django_db
def test_an_auc_per_rating_criterion_reads_a_low_rating_as_synthetic(client):
    from scipy import stats

    make_pool(real={("CT", "2d"): 6}, synthetic={("CT", "2d"): 6})
    team = readers(2)
    study = open_study_for(team, {("CT", "2d"): 12})
    rng = np.random.default_rng(8)
    given = {}
    for reader in team:
        client.force_login(reader)
        for case in AssignedCase.objects.filter(assignment__reader=reader).select_related("case__item"):
            synthetic = case.case.item.origin == "synthetic"
            realism = int(np.clip(rng.integers(1, 4) + (0 if synthetic else 1), 1, 4))
            given.setdefault(reader.username, []).append((synthetic, realism))
            body = {"label": "fake", "confidence": 2, "realism": realism, "anatomy": 1 if synthetic else 4,
                    "submit": True, "idempotency_key": f"rating-{case.pk:05d}"}
            client.post(reverse("read-answer", args=[case.token]), json.dumps(body), content_type="application/json")
    client.force_login(make_user("ana", ANALYST))
    by_rating = client.get(reverse("analysis-json", args=[study.slug])).json()["roc"]["by_rating"]
    for reader, rows in given.items():
        syn = [r for s, r in rows if s]
        real = [r for s, r in rows if not s]
        u = stats.mannwhitneyu(real, syn).statistic  # P(real rated higher) + ties / 2
        assert by_rating["realism"]["per_reader"][reader]["auc"] == pytest.approx(u / (len(syn) * len(real)))
    anatomy = by_rating["anatomy"]
    assert all(a["auc"] == 1.0 for a in anatomy["per_reader"].values())  # anatomy separates completely
    assert "completely separated" in anatomy["per_reader"]["reader1"]["ci95"]["undefined"]
    assert by_rating["realism"]["mrmc"]["per_treatment_rrrc"]["realism"]["mean_auc"] > 0.5
    assert "From the ratings" in client.get(reverse("analysis", args=[study.slug])).content.decode()


def test_icc_of_raters_who_agree_exactly_is_one_without_an_interval():
    from readerstudy.stats import agreement

    result = agreement.icc([[1, 1], [3, 3], [4, 4], [2, 2]])
    assert result["ICC2"]["value"] == pytest.approx(1.0) and result["ICC3"]["value"] == pytest.approx(1.0)
    assert isinstance(result["ICC2"]["ci95"], Undefined) and isinstance(result["ICC3"]["F"], Undefined)
    shifted = agreement.icc([[1, 2], [3, 4], [4, 5], [2, 3]])  # consistent, not in absolute agreement
    assert shifted["ICC3"]["value"] == pytest.approx(1.0) and shifted["ICC2"]["value"] < 1
    assert isinstance(shifted["ICC1"]["ci95"], tuple)  # the one-way form still has its residual


@pytest.mark.django_db
def test_reading_behaviour_shows_learning_over_the_list(client):
    make_pool(real={("CT", "2d"): 10}, synthetic={("CT", "2d"): 10})
    team = readers(4)
    study = open_study_for(team, {("CT", "2d"): 20}, questions={"confidence": False, "template": "none"})
    rng = np.random.default_rng(3)
    for reader in team:
        client.force_login(reader)
        for case in AssignedCase.objects.filter(assignment__reader=reader).select_related("case__item"):
            right = rng.random() < 0.3 + 0.6 * (case.position - 1) / 19  # better and better
            truth = case.case.item.origin == "synthetic"
            label = "fake" if truth == right else "real"
            body = {"label": label, "submit": True, "idempotency_key": f"behaviour-{case.pk:05d}",
                    "duration_ms": 1000 + 100 * case.position}
            client.post(reverse("read-answer", args=[case.token]), json.dumps(body), content_type="application/json")
    client.force_login(make_user("ana", ANALYST))
    b = client.get(reverse("analysis-json", args=[study.slug])).json()["reading_behaviour"]
    places = b["by_place_in_list"]
    assert sum(r["n"] for r in places.values()) == 80 and set(b["by_session"]) == {"session 1"}
    assert places["quarter 4 of the list"]["estimate"] > places["quarter 1 of the list"]["estimate"]
    trend = b["trend_over_the_list"]
    assert trend["odds_ratio"] > 1 and trend["p"] < 0.05
    assert "Reading behaviour" in client.get(reverse("analysis", args=[study.slug])).content.decode()


@pytest.mark.django_db
def test_the_cached_analysis_is_recomputed_for_submitted_answers_only(monkeypatch):
    from readerstudy.reading.answers import save_answer
    from readerstudy.stats import analysis

    make_pool(real={("CT", "2d"): 2}, synthetic={("CT", "2d"): 2})
    (reader,) = readers(1)
    study = open_study_for([reader], {("CT", "2d"): 4}, questions={"confidence": False, "template": "none"},
                           reading={"allow_back": True})
    runs = []
    real_analyse = analysis.analyse
    monkeypatch.setattr(analysis, "analyse", lambda *a, **k: runs.append(1) or real_analyse(*a, **k))
    first, second = AssignedCase.objects.filter(assignment__reader=reader).order_by("position")[:2]
    save_answer(first, {"label": "fake", "submit": True, "idempotency_key": "cache-0001"})
    analysis.cached_analysis(study)
    save_answer(second, {"label": "real", "idempotency_key": "cache-0002"})  # a draft autosave
    analysis.cached_analysis(study)
    assert len(runs) == 1
    save_answer(second, {"label": "real", "submit": True, "idempotency_key": "cache-0003"})
    analysis.cached_analysis(study)
    assert len(runs) == 2
    # A revisit of a finished case sends telemetry only: the answers are unchanged, so is the analysis.
    save_answer(first, {"label": "fake", "duration_ms": 9000, "slices_visited": [1], "idempotency_key": "cache-0004"})
    analysis.cached_analysis(study)
    assert len(runs) == 2
    save_answer(first, {"label": "real", "submit": True, "idempotency_key": "cache-0005"})  # an edit
    analysis.cached_analysis(study)
    assert len(runs) == 3
