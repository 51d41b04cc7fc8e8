"""Forced-choice designs (2AFC, 4AFC quartets): matched trials, balanced per-reader placement,
blinded panels, answers, and the hit rate against chance."""

import io
import json
import re
from collections import Counter

import numpy as np
import pydicom
import pytest
from django.test import Client
from django.urls import reverse

from readerstudy.imaging.models import Origin
from readerstudy.reading.answers import AnswerError, save_answer
from readerstudy.stats.analysis import analyse
from readerstudy.stats.mrmc import score_or_analysis
from readerstudy.stats.undefined import Undefined
from readerstudy.studies.config import StudyConfigError, validate_config
from readerstudy.studies.models import AssignedCase, StudyCase
from readerstudy.studies.progress import study_progress

from .studies import make_pool, open_study_for, readers

pytestmark = pytest.mark.django_db
FC_QUESTIONS = {"confidence": True, "template": "none"}


def forced_study(team, alternatives=4, trials=4, calibration=1, strata=None):
    return open_study_for(team, strata or {("XR", "2d"): trials}, questions=FC_QUESTIONS,
                          design={"kind": "forced_choice", "alternatives": alternatives},
                          reading={"calibration_cases": calibration})


def trials_of(reader):
    out = {}
    for row in (AssignedCase.objects.filter(assignment__reader=reader).select_related("case__item")
                .order_by("position", "panel")):
        out.setdefault(row.position, []).append(row)
    return out


def test_trials_are_matched_by_stratum_and_the_real_image_is_placed_in_balance_per_reader():
    make_pool(real={("XR", "2d"): 6, ("CT", "2d"): 4}, synthetic={("XR", "2d"): 16, ("CT", "2d"): 10})
    team = readers(3)
    study = forced_study(team, alternatives=4, strata={("XR", "2d"): 4, ("CT", "2d"): 2})
    cases = list(study.cases.select_related("item"))
    by_trial = {}
    for case in cases:
        by_trial.setdefault(case.trial, []).append(case)
    assert len(by_trial) == 7  # 6 regular, 1 calibration
    for members in by_trial.values():
        assert sorted(m.item.origin for m in members) == ["real", "synthetic", "synthetic", "synthetic"]
        assert len({(m.item.modality, m.item.dimensionality) for m in members}) == 1  # one stratum
        assert len({m.role for m in members}) == 1
        assert len({m.item.source_group for m in members}) == 4
    placements = []
    for reader in team:
        trials = trials_of(reader)
        assert len(trials) == 7 and all(len(panels) == 4 for panels in trials.values())
        roles = [panels[0].case.role for _, panels in sorted(trials.items())]
        assert roles[0] == StudyCase.Role.CALIBRATION and set(roles[1:]) == {StudyCase.Role.REGULAR}
        real_panels = [next(p.panel for p in panels if p.case.item.origin == Origin.REAL)
                       for _, panels in sorted(trials.items()) if panels[0].case.role == StudyCase.Role.REGULAR]
        assert sorted(Counter(real_panels).values()) == [1, 1, 2, 2]  # 6 trials over 4 panels: 2,2,1,1
        placements.append([(p.case.trial, tuple(x.case_id for x in panels))
                           for p, panels in ((panels[0], panels) for panels in trials.values())])
    assert len({tuple(p) for p in placements}) == 3  # every reader their own order and placement
    assert all(r.total == 7 and r.done == 0 for r in study_progress(study))


def test_forced_choice_configurations_say_what_does_not_fit():
    base = {"design": {"kind": "forced_choice", "alternatives": 2}}
    with pytest.raises(StudyConfigError, match="set the rating template to none"):
        validate_config(base)
    with pytest.raises(StudyConfigError, match="repeated trials"):
        validate_config({**base, "questions": FC_QUESTIONS, "reading": {"repeat_cases": 2}})
    with pytest.raises(StudyConfigError, match="between 2 and 4"):
        validate_config({"design": {"kind": "forced_choice", "alternatives": 5}, "questions": FC_QUESTIONS})
    assert validate_config({**base, "questions": FC_QUESTIONS, "reading": {"calibration_cases": 3}})
    with pytest.raises(StudyConfigError, match="even number"):  # single design: half real, half synthetic
        validate_config({"reading": {"calibration_cases": 3}})


def test_a_trial_looks_the_same_whichever_panel_is_real_and_answers_are_kept():
    make_pool(real={("XR", "2d"): 3}, synthetic={("XR", "2d"): 3}, size=48)
    (reader,) = readers(1)
    study = forced_study([reader], alternatives=2, trials=2, calibration=1)
    client = Client()
    client.force_login(reader)
    trials = trials_of(reader)
    states = {}
    for position, panels in sorted(trials.items()):
        lead = panels[0]
        # Other panels' tokens serve images, but are not pages or answer addresses.
        assert client.get(reverse("read-case", args=[panels[1].token])).status_code == 404
        if position == 1:
            state = client.get(reverse("read-state", args=[lead.token])).json()
            states[position] = state
            assert [p["letter"] for p in state["case"]["panels"]] == ["A", "B"]
            assert state["questions"]["label"] is None and [o["key"] for o in state["questions"]["choice"]] == ["a", "b"]
            files = [client.get(p["image_ids"][0].removeprefix("wadouri:")) for p in state["case"]["panels"]]
            assert all(f.status_code == 200 for f in files)
            uids = [pydicom.dcmread(io.BytesIO(f.content)).SOPInstanceUID for f in files]
            assert len(set(uids)) == 2 and len({len(f.content) for f in files}) == 1
            text = json.dumps(state)
            for panel in panels:
                assert str(panel.case.item.public_id) not in text and str(panel.case.item_id) not in text.split('"')
        url = reverse("read-answer", args=[lead.token])
        refused = client.post(url, json.dumps({"label": "real", "submit": True, "idempotency_key": f"x{position}-label"}),
                              content_type="application/json")
        assert refused.status_code == 400 and "choice" in refused.json()["error"]
        missing = client.post(url, json.dumps({"confidence": 3, "submit": True, "idempotency_key": f"x{position}-missing"}),
                              content_type="application/json")
        assert missing.status_code == 400 and "missing choice" in missing.json()["error"]
        real_panel = next(p.panel for p in panels if p.case.item.origin == Origin.REAL)
        body = {"choice": real_panel if position != 2 else 1 - real_panel, "confidence": 4, "submit": True,
                "idempotency_key": f"x{position}-answer"}
        reply = client.post(url, json.dumps(body), content_type="application/json").json()
        assert reply["answer"]["choice"] == body["choice"] and reply["answer"]["submitted"]
        if lead.case.role == StudyCase.Role.CALIBRATION:
            assert reply["feedback"] == {"real_panel": real_panel, "your_choice": real_panel}
        else:
            assert reply["feedback"] is None
    # Changing a finished trial's choice keeps the old one as a revision.
    lead = trials[3][0]
    client.post(reverse("read-answer", args=[lead.token]), json.dumps(
        {"choice": 0 if lead.read.answers["choice"] else 1, "confidence": 4, "submit": True, "idempotency_key": "x3-change"}),
        content_type="application/json")
    lead.read.refresh_from_db()
    assert lead.read.revisions.count() == 1 and lead.read.revisions.get().snapshot["answers"]["choice"] != \
        lead.read.answers["choice"]
    with pytest.raises(AnswerError, match="cannot clear choice"):
        save_answer(AssignedCase.objects.get(pk=lead.pk), {"confidence": 4, "idempotency_key": "x3-clearing"})

    result = analyse(study)
    fc = result["forced_choice"]
    assert fc["chance"] == 0.5 and fc["pooled"]["n"] == 2  # the calibration trial is left out
    assert result["detection"] == {"undefined": "a forced-choice study: see forced_choice (hit rate against chance)"}
    assert fc["readers_and_trials_random"] == {"undefined": "needs at least two readers who answered the same trials"}


def test_hit_rates_per_reader_pooled_and_with_readers_and_trials_random():
    make_pool(real={("XR", "2d"): 6}, synthetic={("XR", "2d"): 6})
    team = readers(3)
    study = forced_study(team, alternatives=2, trials=6, calibration=0)
    hits_wanted = {team[0].pk: 6, team[1].pk: 3, team[2].pk: 4}
    for reader in team:
        for position, panels in sorted(trials_of(reader).items()):
            real = next(p.panel for p in panels if p.case.item.origin == Origin.REAL)
            hit = position <= hits_wanted[reader.pk]
            save_answer(panels[0], {"choice": real if hit else 1 - real, "confidence": 3, "submit": True,
                                    "idempotency_key": f"hits-{reader.pk}-{position}"})
    fc = analyse(study)["forced_choice"]
    assert [fc["per_reader"][r.username]["x"] for r in team] == [6, 3, 4]
    assert fc["per_reader"]["reader1"]["p_value_vs_chance"] == pytest.approx(2 * 0.5 ** 6)
    assert fc["pooled"]["x"] == 13 and fc["pooled"]["n"] == 18
    rr = fc["readers_and_trials_random"]
    assert rr["readers"] == 3 and rr["trials"] == 6 and rr["estimate"] == pytest.approx(13 / 18)
    assert 0 <= rr["ci95"][0] < rr["estimate"] < rr["ci95"][1] <= 1
    assert sum(fc["choices_by_panel"].values()) == 18


def test_readers_and_trials_random_inference():
    rng = np.random.default_rng(5)
    hits = (rng.random((4, 30)) < 0.6).astype(float)
    result = score_or_analysis(hits, 0.5, unit="trials")
    # The trial jackknife of a mean is the sample covariance over trials / trials.
    cov = np.cov(hits) / hits.shape[1]
    assert result["Cov2"] == pytest.approx((cov.sum() - np.trace(cov)) / 12)
    assert result["MS_R"] == pytest.approx(np.var(hits.mean(1), ddof=1))
    # Under the null (readers at chance, trials easier or harder for everyone), the interval
    # covers chance about 95 % of the time, where the pooled binomial ignores the clustering.
    covered, pooled_covered = 0, 0
    from readerstudy.stats.proportions import proportion_ci
    for _ in range(300):
        ease = rng.normal(0, 1.2, 40)
        p = 1 / (1 + np.exp(-ease))  # population mean 0.5 by symmetry
        sample = (rng.random((5, 40)) < p[None, :]).astype(float)
        r = score_or_analysis(sample, 0.5, unit="trials")
        covered += r["ci95"][0] <= 0.5 <= r["ci95"][1]
        lo, hi = proportion_ci(sample.sum(), sample.size)
        pooled_covered += lo <= 0.5 <= hi
    assert 0.90 <= covered / 300 <= 0.99, covered
    assert pooled_covered / 300 < covered / 300
    assert isinstance(score_or_analysis(np.ones((3, 5)), 0.5, unit="trials")["se"], Undefined)


def test_readers_with_the_real_image_on_different_sides_get_the_same_page_and_data():
    make_pool(real={("CT", "2d"): 4}, synthetic={("CT", "2d"): 4}, size=48)
    team = readers(6)
    study = forced_study(team, alternatives=2, calibration=0, strata={("CT", "2d"): 4})
    sides = {(reader, position): (panels, next(p.panel for p in panels if p.case.item.origin == Origin.REAL))
             for reader in team for position, panels in trials_of(reader).items()}
    # The first position where two readers have the real image on different sides (answering in
    # order, readers can open only their first trial).
    position = min(p for (_, p), (_, side) in sides.items()
                   if {s for (_, q), (_, s) in sides.items() if q == p} == {0, 1})
    by_side = {}
    for (reader, p), (panels, side) in sides.items():
        if p == position:
            by_side.setdefault(side, (reader, panels))
    seen = []
    for reader, panels in by_side.values():
        for earlier in range(1, position):  # answer the trials before it
            save_answer(trials_of(reader)[earlier][0], {"choice": 0, "confidence": 2, "submit": True,
                                                        "idempotency_key": f"before-{reader.pk}-{earlier}"})
        client = Client()
        client.force_login(reader)
        pages = [client.get(reverse(name, args=[panels[0].token])).content.decode()
                 for name in ("read-case", "read-state")]
        text = "\n".join(pages).replace(reader.username, "<user>")
        for row in AssignedCase.objects.filter(assignment__reader=reader):
            text = text.replace(row.token, f"<token {row.position}.{row.panel}>")
        seen.append(re.sub(r'name="csrf-token" content="[^"]+"|name="csrfmiddlewaretoken" value="[^"]+"',
                           "<csrf>", text))
    assert seen[0] == seen[1]
    assert study.status == "open"


def test_the_dashboard_and_exports_of_a_forced_choice_study():
    import csv

    from .studies import make_user

    make_pool(real={("XR", "2d"): 4}, synthetic={("XR", "2d"): 4})
    team = readers(2)
    study = forced_study(team, alternatives=2, calibration=0, strata={("XR", "2d"): 4})
    for reader in team:
        for position, panels in sorted(trials_of(reader).items()):
            save_answer(panels[0], {"choice": position % 2, "confidence": 2, "submit": True,
                                    "idempotency_key": f"dash-{reader.pk}-{position}"})
    client = Client()
    client.force_login(make_user("ana", "analyst"))
    page = client.get(reverse("analysis", args=[study.slug])).content.decode()
    assert "Forced choice: which image is real?" in page and "Readers and trials random" in page
    assert "Detection of synthetic images" not in page
    rows = list(csv.DictReader(io.StringIO(b"".join(
        client.get(reverse("analysis-export", args=[study.slug, "answers.csv"])).streaming_content).decode())))
    assert len(rows) == 8 and {r["reader"] for r in rows} == {"reader1", "reader2"}
    for r in rows:
        truths = r["panel_truths"].split(";")
        assert truths.count("real") == 1 and r["real_panel"] == "AB"[truths.index("real")]
        assert r["hit"] == str(int(r["choice"] == r["real_panel"]))
    fc = client.get(reverse("analysis-json", args=[study.slug])).json()["forced_choice"]
    assert fc["pooled"]["x"] == sum(int(r["hit"]) for r in rows)
    imrmc = b"".join(client.get(reverse("analysis-export", args=[study.slug, "imrmc.txt"])).streaming_content)
    assert b"forced-choice study has none" in imrmc
