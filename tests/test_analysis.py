"""End to end: readers answer through the real endpoints; the analysis JSON and the exports are checked
against values computed independently here (scikit-learn, scipy, statsmodels, plain counting)."""

import csv
import hashlib
import io
import json
from itertools import combinations

import numpy as np
import pytest
from django.urls import reverse
from scipy.stats import mannwhitneyu
from sklearn.metrics import cohen_kappa_score, roc_auc_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

from readerstudy.accounts.models import ReaderProfile
from readerstudy.accounts.roles import ANALYST
from readerstudy.studies.models import AssignedCase

from .studies import make_pool, make_user, open_study_for, readers

pytestmark = pytest.mark.django_db


def answer_for(reader_index: int, truth: str, case_id: int) -> dict:
    """A deterministic, varied answer: readers are right most of the time and sometimes unsure."""
    rng = np.random.default_rng(1000 * reader_index + case_id)
    correct = "fake" if truth == "synthetic" else "real"
    wrong = "real" if truth == "synthetic" else "fake"
    label = rng.choice([correct, wrong, "unsure"], p=[0.6, 0.25, 0.15])
    realism = int(rng.integers(1, 4)) if truth == "synthetic" else int(rng.integers(2, 5))
    return {"label": str(label), "confidence": int(rng.integers(1, 6)), "realism": realism,
            "anatomy": int(rng.integers(1, 5))}


@pytest.fixture
def answered(client):
    make_pool(real={("CT", "2d"): 10}, synthetic={("CT", "2d"): 10})
    team = readers(3)
    ReaderProfile.objects.create(user=team[0], years_experience=2)
    ReaderProfile.objects.create(user=team[1], years_experience=12)
    study = open_study_for(team, {("CT", "2d"): 12}, reading={"calibration_cases": 2, "repeat_cases": 2})
    given = []  # (reader, case_id, role, truth, answer)
    for index, reader in enumerate(team):
        client.force_login(reader)
        cases = AssignedCase.objects.filter(assignment__reader=reader).select_related("case__item").order_by("position")
        for case in cases:
            truth = case.case.item.origin
            answer = answer_for(index, truth, case.case.repeat_of_id or case.case_id)
            body = {**answer, "submit": True, "idempotency_key": f"e2e-{case.token}", "duration_ms": 1000}
            response = client.post(reverse("read-answer", args=[case.token]), json.dumps(body),
                                   content_type="application/json")
            assert response.status_code == 200, response.json()
            given.append((reader.username, case.case_id, case.case.role, truth, answer))
    client.force_login(make_user("ana", ANALYST))
    return study, given


def regular(given):
    return [g for g in given if g[2] == "regular"]


def test_detection_figures_match_independent_counts_under_every_unsure_policy(client, answered):
    study, given = answered
    rows = regular(given)
    url = reverse("analysis-json", args=[study.slug])
    data = client.get(url).json()
    assert data["counts"] == {"answers": 36, "readers": 3, "cases": 12, "calibration_answers": 6,
                              "repeat_answers": 6}
    syn = [a["label"] for _, _, _, t, a in rows if t == "synthetic"]
    real = [a["label"] for _, _, _, t, a in rows if t == "real"]
    pooled = data["detection"]["pooled"]
    assert pooled["sensitivity"]["estimate"] == pytest.approx(syn.count("fake") / (syn.count("fake") + syn.count("real")))
    assert pooled["specificity"]["estimate"] == pytest.approx(real.count("real") / (real.count("real") + real.count("fake")))
    assert pooled["coverage"]["answered"] == 36 - syn.count("unsure") - real.count("unsure")
    assert "left out" in pooled["policy_description"]
    lo, hi = pooled["accuracy"]["ci95"]
    assert lo < pooled["accuracy"]["estimate"] < hi

    wrong = client.get(url + "?unsure=wrong").json()["detection"]["pooled"]
    assert wrong["sensitivity"]["estimate"] == pytest.approx(syn.count("fake") / len(syn))
    half = client.get(url + "?unsure=half").json()["detection"]["pooled"]
    assert half["accuracy"]["estimate"] == pytest.approx(
        (syn.count("fake") + real.count("real") + 0.5 * (syn.count("unsure") + real.count("unsure"))) / 36)
    assert half["accuracy"]["p_value_vs_chance"]["undefined"].startswith("no exact test under half credit")
    three = client.get(url + "?unsure=three-class").json()["detection"]["pooled"]
    assert three["ppv"]["estimate"] == pytest.approx(syn.count("fake") / (syn.count("fake") + real.count("fake")))
    assert three["confusion"]["synthetic"]["unsure"] == syn.count("unsure")

    for reader in ("reader1", "reader2", "reader3"):
        mine = [(t, a["label"]) for r, _, _, t, a in rows if r == reader and a["label"] != "unsure"]
        correct = sum((t == "synthetic") == (label == "fake") for t, label in mine)
        assert data["detection"]["per_reader"][reader]["accuracy"]["estimate"] == pytest.approx(correct / len(mine))
    assert set(data["detection"]["by_experience"]) == {"< 5 years", "> 10 years", "experience unknown"}
    assert set(data["detection"]["by_modality"]) == {"CT"}
    assert set(data["detection"]["by_generator"]) == {"test generator v1"}

    bad = client.get(url + "?unsure=ignore")
    assert bad.status_code == 400 and "unknown unsure policy 'ignore'" in bad.json()["error"]
    # The dashboard page shows itself with the defaults and the reason, not raw JSON.
    page = client.get(reverse("analysis", args=[study.slug]) + "?unsure=ignore")
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
    assert "unknown unsure policy &#x27;ignore&#x27;" in page.content.decode()


def test_roc_agreement_and_scores_match_independent_libraries(client, answered):
    study, given = answered
    rows = regular(given)
    data = client.get(reverse("analysis-json", args=[study.slug])).json()

    def score(a):
        return {"fake": 1, "real": -1, "unsure": 0}[a["label"]] * (a["confidence"] if a["label"] != "unsure" else 1)

    for reader in ("reader1", "reader2", "reader3"):
        mine = [(t == "synthetic", score(a)) for r, _, _, t, a in rows if r == reader]
        expected = roc_auc_score([m[0] for m in mine], [m[1] for m in mine])
        assert data["roc"]["per_reader"][reader]["auc"] == pytest.approx(expected)
    mrmc = data["roc"]["mrmc_real_vs_synthetic"]
    assert mrmc["treatment_mean_auc"][0] == pytest.approx(
        np.mean([data["roc"]["per_reader"][r]["auc"] for r in ("reader1", "reader2", "reader3")]))
    assert data["roc"]["mrmc_real_vs_synthetic_delong"]["covariance_method"] == "delong"
    assert data["roc"]["mrmc_generators"]["undefined"].startswith("comparing generators needs")

    labels = {}
    for r, case, _, _, a in rows:
        labels.setdefault(case, {})[r] = a["label"]
    cases = sorted(labels)
    table, _ = aggregate_raters([[labels[c][r] for r in ("reader1", "reader2", "reader3")] for c in cases])
    agreement = data["agreement"]["label"]
    assert agreement["fleiss_kappa"]["kappa"] == pytest.approx(fleiss_kappa(table))
    pairs = {tuple(p["readers"]): p["unweighted"]["kappa"] for p in agreement["cohen_kappa_pairs"]}
    for a, b in combinations(("reader1", "reader2", "reader3"), 2):
        expected = cohen_kappa_score([labels[c][a] for c in cases], [labels[c][b] for c in cases])
        assert pairs[(a, b)] == pytest.approx(expected)
    agree = [labels[c][a] == labels[c][b] for c in cases for a, b in combinations(sorted(labels[c]), 2)]
    assert agreement["percent_agreement"] == pytest.approx(np.mean(agree))
    assert "ci95_bootstrap" in agreement["krippendorff_alpha_nominal"]
    assert data["agreement"]["realism"]["icc"]["default"] == "ICC2"

    per_image = {}
    for _, case, _, truth, a in rows:
        per_image.setdefault((case, truth), []).append(a["realism"])
    real = [np.mean(v) for (c, t), v in per_image.items() if t == "real"]
    synthetic = [np.mean(v) for (c, t), v in per_image.items() if t == "synthetic"]
    expected = mannwhitneyu(real, synthetic, alternative="two-sided", method="asymptotic")
    test = data["scores"]["realism"]["mann_whitney"]
    assert test["U"] == expected.statistic and test["p_value"] == pytest.approx(expected.pvalue)
    assert test["p_holm"] >= test["p_value"]
    assert "slice_consistency" not in data["scores"] or "undefined" in data["scores"]["slice_consistency"]
    intra = data["intra_reader"]["reader1"]
    assert intra["pairs"] == 2


def test_exports_stream_every_answer_with_readable_labels(client, answered):
    study, given = answered
    response = client.get(reverse("analysis-export", args=[study.slug, "answers.csv"]))
    assert response.status_code == 200 and response.streaming
    assert response["Content-Disposition"].startswith(f'attachment; filename="{study.slug}-answers-')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == len(given) == 48
    assert {r["case_role"] for r in rows} == {"regular", "calibration", "repeat"}
    first = rows[0]
    match = [g for g in given if g[0] == first["reader"] and g[1] == int(first["case"])][0]
    assert first["label"] == match[4]["label"]
    assert first["label_text"] == {"fake": "Synthetic", "real": "Real", "unsure": "Unsure"}[match[4]["label"]]
    assert first["truth"] == match[3] and first["modality"] == "CT" and first["generator"] in ("", "test generator v1")
    assert first["realism_text"].startswith("ABCD"[match[4]["realism"] - 1] + ": ")

    cases = list(csv.DictReader(io.StringIO(b"".join(
        client.get(reverse("analysis-export", args=[study.slug, "cases.csv"])).streaming_content).decode())))
    assert len(cases) == 16
    for row in cases:
        mine = [g for g in given if g[1] == int(row["case"])]
        assert int(row["answers"]) == len(mine)
        assert int(row["said_fake"]) == sum(g[4]["label"] == "fake" for g in mine)

    imrmc = b"".join(client.get(reverse("analysis-export", args=[study.slug, "input.imrmc"])).streaming_content)
    lines = imrmc.decode().splitlines()
    data_lines = lines[lines.index("BEGIN DATA:") + 1:]
    assert sum(line.startswith("-1,") for line in data_lines) == 12
    assert len(data_lines) == 12 + 36 and "NR: 3" in lines and "N1: 6" in lines

    frozen = json.loads(b"".join(client.get(reverse("analysis-export", args=[study.slug, "config.json"])).streaming_content))
    digest = hashlib.sha256(json.dumps(study.config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert frozen["config_sha256"] == digest and len(frozen["cases"]) == 16 and len(frozen["readers"]) == 3

    page = client.get(reverse("analysis", args=[study.slug]))
    assert page.status_code == 200 and b"Detection of synthetic images" in page.content
    for name in ("confusion", "ratings", "reader-accuracy", "roc"):
        chart = client.get(reverse("analysis-chart", args=[study.slug, name]))
        assert chart.status_code == 200 and chart.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_readers_cannot_see_analysis_or_exports(client, answered):
    study, _ = answered
    client.force_login(make_user("someone", "reader"))
    for url in (reverse("analysis", args=[study.slug]), reverse("analysis-json", args=[study.slug]),
                reverse("analysis-export", args=[study.slug, "answers.csv"]),
                reverse("analysis-chart", args=[study.slug, "roc"])):
        assert client.get(url).status_code == 403, url


def test_an_empty_study_says_undefined_instead_of_zero(client, db):
    make_pool(real={("CT", "2d"): 2}, synthetic={("CT", "2d"): 2})
    study = open_study_for(readers(1), {("CT", "2d"): 4})
    client.force_login(make_user("ana", ANALYST))
    data = client.get(reverse("analysis-json", args=[study.slug])).json()
    assert data["detection"] == {"undefined": "no submitted answers to regular cases yet"}
    assert client.get(reverse("analysis", args=[study.slug])).status_code == 200


def test_charts_do_not_use_the_pyplot_state_machine():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import os, sys; os.environ['DJANGO_SETTINGS_MODULE'] = 'tests.settings'; import django; django.setup(); "
            "import readerstudy.stats.charts, readerstudy.stats.marks; print('matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(Path(__file__).resolve().parent.parent))
    assert out.stdout.strip() == "False", out.stderr


def test_chart_text_keeps_its_contrast_on_every_cell_colour():
    """Counts on the confusion chart are black on light cells and white on dark ones (>= 4.5:1, WCAG AA)."""
    from matplotlib import colormaps

    from readerstudy.stats.charts import text_colour

    def luminance(rgb):
        f = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb[:3]]
        return 0.2126 * f[0] + 0.7152 * f[1] + 0.0722 * f[2]

    blues = colormaps["Blues"]
    for level in np.linspace(0, 1, 21):
        cell = blues(level)
        fg = (0, 0, 0) if text_colour(cell) == "black" else (1, 1, 1)
        lighter, darker = sorted((luminance(cell), luminance(fg)), reverse=True)
        assert (lighter + 0.05) / (darker + 0.05) >= 4.5, (level, text_colour(cell))


def test_csv_cells_that_spreadsheets_would_run_as_formulas_are_neutralised():
    from readerstudy.stats.exports import csv_lines

    rows = [["=HYPERLINK(\"http://x\",\"click\")", "+1+2", "-2+3", "@SUM(A1)", "\tx", "plain", -3, 2.5, ""]]
    (line,) = list(csv_lines(rows))
    cells = next(csv.reader(io.StringIO(line)))
    assert cells == ["'=HYPERLINK(\"http://x\",\"click\")", "'+1+2", "'-2+3", "'@SUM(A1)", "'\tx", "plain", "-3",
                     "2.5", ""]  # numbers, negative fakeness scores included, stay numbers
