"""The logistic GLMM with crossed reader and case effects, against lme4::glmer (tests/reference_r)."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from readerstudy.stats.glmm import fit_crossed_logit, proportion_for_typical
from readerstudy.stats.undefined import Undefined

REFERENCE = Path(__file__).parent / "reference_r"


def answers():
    with open(REFERENCE / "visual_turing_answers.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("figure, truth", [("accuracy", None), ("sensitivity", "synthetic"), ("specificity", "real")])
def test_the_fit_is_glmers(figure, truth):
    expected = json.loads((REFERENCE / "glmm_crossed.json").read_text())[figure]
    rows = [r for r in answers() if truth is None or r["truth"] == truth]
    fit = fit_crossed_logit([int(r["correct"]) for r in rows], [r["reader"] for r in rows], [r["case"] for r in rows])
    assert fit["n"] == expected["n"]
    assert fit["intercept"] == pytest.approx(expected["intercept"], abs=1e-3)
    assert fit["var_reader"] == pytest.approx(expected["var_reader"], rel=2e-3)
    assert fit["var_case"] == pytest.approx(expected["var_case"], rel=2e-3)
    assert fit["loglik"] == pytest.approx(expected["loglik"], abs=1e-3)
    # glmer's vcov comes from a finite-difference Hessian too; they agree to within 1 %.
    assert fit["se"] == pytest.approx(expected["se"], rel=1e-2)


def test_clustered_answers_widen_the_interval_beyond_the_pooled_binomial():
    rows = answers()
    y = np.array([int(r["correct"]) for r in rows])
    typical = proportion_for_typical(fit_crossed_logit(y, [r["reader"] for r in rows], [r["case"] for r in rows]))
    p = y.mean()
    naive_logit_se = 1 / np.sqrt(len(y) * p * (1 - p))
    assert typical["se"] > 1.5 * naive_logit_se
    low, high = typical["ci95"]
    assert low < typical["estimate"] < high
    assert typical["estimate"] == pytest.approx(1 / (1 + np.exp(-typical["intercept"])))


def test_degenerate_answers_are_undefined():
    readers = ["a", "b"] * 10
    cases = [f"c{i // 2}" for i in range(20)]
    assert isinstance(fit_crossed_logit([1] * 20, readers, cases), Undefined)
    assert "infinite" in fit_crossed_logit([0] * 20, readers, cases).reason
    assert isinstance(fit_crossed_logit([1, 0, 1], ["a"] * 3, ["x", "y", "z"]), Undefined)


def test_a_diverging_fit_is_undefined_not_an_estimate():
    # Every case answered alike by all six readers: case effects have no finite estimate.
    y = np.tile(np.array([1, 1, 0, 1] * 5), 6)
    fit = fit_crossed_logit(y, np.repeat(np.arange(6), 20), np.tile(np.arange(20), 6))
    assert isinstance(fit, Undefined), fit
