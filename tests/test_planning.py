"""Sample-size planning by simulation (stats/planning.py): the page, the API and the numbers."""

import numpy as np
import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from readerstudy.accounts.roles import ANALYST, COORDINATOR
from readerstudy.stats import planning

from .studies import make_pool, make_user, open_study_for, readers


def test_the_mean_accuracy_is_the_expected_one():
    for accuracy, sd in ((0.5, 1.1), (0.7, 1.1), (0.9, 0.3), (0.6, 0.0)):
        b0 = planning.intercept_for(accuracy, sd)
        assert planning.mean_accuracy(b0, sd) == pytest.approx(accuracy, abs=1e-9)
        # The same by brute force.
        z = np.random.default_rng(1).normal(size=400_000)
        assert np.mean(1 / (1 + np.exp(-(b0 + sd * z)))) == pytest.approx(accuracy, abs=3e-3)


def test_a_plan_is_seeded_and_behaves_as_a_test_should():
    at_chance = planning.plan(6, 120, 0.5, 0.10, simulations=400, seed=3)
    assert at_chance == planning.plan(6, 120, 0.5, 0.10, simulations=400, seed=3)
    assert at_chance != planning.plan(6, 120, 0.5, 0.10, simulations=400, seed=4)
    # At chance the difference test rejects about 5 % of the time and the interval covers about 95 %.
    assert at_chance["power_difference"]["estimate"] < 0.10
    assert 0.90 <= at_chance["coverage"]["estimate"] <= 0.99
    # Readers who can tell are found; more cases narrow the interval and make equivalence easier to show.
    telling = planning.plan(6, 120, 0.70, 0.10, simulations=200, seed=3)
    assert telling["power_difference"]["estimate"] > 0.9 and telling["power_equivalence"]["estimate"] < 0.05
    # Where readers differ (reader SD 0.5), more readers narrow the interval and make equivalence easier
    # to show; more cases alone barely help. Where they hardly differ, more cases do.
    more_readers = planning.plan(24, 120, 0.5, 0.10, simulations=200, seed=3)
    assert more_readers["ci95_width"]["mean"] < 0.6 * at_chance["ci95_width"]["mean"]
    assert more_readers["power_equivalence"]["estimate"] > at_chance["power_equivalence"]["estimate"] + 0.2
    more_cases = planning.plan(6, 480, 0.5, 0.10, simulations=200, seed=3)
    assert more_cases["ci95_width"]["mean"] > 0.85 * at_chance["ci95_width"]["mean"]
    alike, alike_more_cases = (planning.plan(6, k, 0.5, 0.10, reader_sd=0.05, simulations=200, seed=3)
                               for k in (120, 480))
    assert alike_more_cases["ci95_width"]["mean"] < 0.65 * alike["ci95_width"]["mean"]


def test_impossible_plans_are_refused_with_the_field():
    for kwargs, field in (({"readers": 1}, "readers"), ({"cases": 2}, "cases"), ({"accuracy": 1.0}, "accuracy"),
                          ({"margin": 0.5}, "margin"), ({"simulations": 10}, "simulations"),
                          ({"readers": 500, "cases": 100_000}, "simulations")):
        args = {"readers": 5, "cases": 100, "accuracy": 0.5, "margin": 0.1, **kwargs}
        with pytest.raises(planning.PlanningError) as caught:
            planning.plan(**args)
        assert caught.value.field == field


@pytest.mark.django_db
def test_the_planning_page_and_the_api_give_the_same_plan(client):
    coordinator = make_user("coord", COORDINATOR)
    client.force_login(coordinator)
    page = client.get(reverse("sample-size"))
    assert page.status_code == 200 and 'name="readers"' in page.content.decode()
    query = "?readers=4&cases=60&accuracy=0.55&margin=0.1&simulations=200&seed=9"
    page = client.get(reverse("sample-size") + query).content.decode()
    expected = planning.plan(4, 60, 0.55, 0.1, simulations=200, seed=9)
    assert f"{expected['power_equivalence']['estimate']:.3f}" in page
    assert f"{expected['ci95_width']['mean']:.3f}" in page
    bad = client.get(reverse("sample-size") + "?readers=1&cases=60").content.decode()
    assert "at least two readers" in bad.lower() or "greater than or equal to 2" in bad

    api = APIClient()
    api.force_authenticate(make_user("ana", ANALYST))
    response = api.post(reverse("api:api-sample-size"), {"readers": 4, "cases": 60, "accuracy": 0.55,
                                                         "simulations": 200, "seed": 9}, format="json")
    assert response.status_code == 200
    assert response.json()["power_equivalence"] == pytest.approx(expected["power_equivalence"])
    refused = api.post(reverse("api:api-sample-size"), {"readers": 500, "cases": 100_000}, format="json")
    assert refused.status_code == 400 and "simulations" in refused.json()["detail"]
    reader = APIClient()
    reader.force_authenticate(readers(1)[0])
    assert reader.post(reverse("api:api-sample-size"), {}, format="json").status_code == 403


@pytest.mark.django_db
def test_the_study_form_links_to_a_plan_prefilled_with_the_study(client):
    make_pool(real={("CT", "2d"): 4}, synthetic={("CT", "2d"): 4})
    from readerstudy.studies.lifecycle import create_study
    from readerstudy.studies.config import validate_config

    coordinator = make_user("coord", COORDINATOR)
    study = create_study(name="Planned", instructions="", created_by=coordinator, config=validate_config(
        {"strata": [{"modality": "CT", "dimensionality": "2d", "cases": 8}], "analysis": {"equivalence_margin": 0.15}}))
    client.force_login(coordinator)
    page = client.get(reverse("study-edit", args=[study.slug])).content.decode()
    assert reverse("sample-size") + "?cases=8&amp;margin=0.15" in page
    assert f'href="{reverse("sample-size")}?"' in client.get(reverse("study-create")).content.decode()
