"""The iMRMC export loads as iMRMC and RJafroc read it (checked with a parser that follows the format)."""

import csv
import io
import json

import pytest
from django.urls import reverse

from readerstudy.accounts.roles import ANALYST
from readerstudy.studies.models import AssignedCase

from .studies import make_pool, make_user, open_study_for, readers

pytestmark = pytest.mark.django_db
KEYS = ("NR", "N0", "N1", "NM")


def parse_imrmc(text: str) -> dict:
    """An iMRMC input file, read strictly as its format says (and with RJafroc's integer case IDs).

    Header: free-text lines, and one line each "NR: n", "N0: n", "N1: n", "NM: n"; a colon anywhere
    else in the header would be read as a setting. Then "BEGIN DATA:" and rows "reader,case,modality,score":
    truth rows have reader -1, modality 0 and score 0 or 1.
    """
    lines = text.splitlines()
    assert "BEGIN DATA:" in lines, "no BEGIN DATA: line"
    begin = lines.index("BEGIN DATA:")
    header = {}
    for line in lines[:begin]:
        if ":" in line:
            key, _, value = line.partition(":")
            assert key.strip() in KEYS and key == key.strip(), f"header line read as a setting: {line!r}"
            assert key not in header, f"{key} given twice"
            header[key] = int(value)
    assert set(header) == set(KEYS), header
    truth, scores = {}, []
    for line in lines[begin + 1:]:
        fields = [f.strip() for f in line.split(",")]
        assert len(fields) == 4 and all(fields), line
        reader, case, modality, score = fields
        case = int(case)  # RJafroc: case IDs must be integers
        if reader == "-1":
            assert modality == "0" and score in ("0", "1"), line
            assert case not in truth, f"truth of case {case} given twice"
            truth[case] = int(score)
        else:
            scores.append((reader, case, modality, float(score)))
    assert all(case in truth for _, case, _, _ in scores), "a score for a case without truth"
    assert header["NR"] == len({r for r, _, _, _ in scores})
    assert header["NM"] == len({m for _, _, m, _ in scores})
    assert header["N0"] == sum(v == 0 for v in truth.values()) and header["N1"] == sum(truth.values())
    return {"header": header, "truth": truth, "scores": scores}


def test_the_imrmc_export_follows_the_format_whatever_the_study_is_called(client):
    make_pool(real={("CT", "2d"): 4}, synthetic={("CT", "2d"): 4})
    team = readers(3)
    study = open_study_for(team, {("CT", "2d"): 8}, name="Lungs: round 2, NR: 99")
    for reader in team[:2]:  # the third reader has not started: not a reader with data
        client.force_login(reader)
        for case in AssignedCase.objects.filter(assignment__reader=reader).order_by("position"):
            body = {"label": "fake" if case.position % 2 else "real", "confidence": 1 + case.position % 5,
                    "realism": 1, "anatomy": 1, "submit": True, "idempotency_key": f"imrmc-{case.pk:05d}"}
            assert client.post(reverse("read-answer", args=[case.token]), json.dumps(body),
                               content_type="application/json").status_code == 200
    client.force_login(make_user("ana", ANALYST))
    response = client.get(reverse("analysis-export", args=[study.slug, "input.imrmc"]))
    assert response["Content-Disposition"].endswith('.imrmc"')
    data = parse_imrmc(b"".join(response.streaming_content).decode())
    assert data["header"] == {"NR": 2, "N0": 4, "N1": 4, "NM": 1}
    assert len(data["scores"]) == 16
    # Case IDs are cases.csv's `case` column, with the same truth.
    cases = {int(r["case"]): r for r in csv.DictReader(io.StringIO(b"".join(
        client.get(reverse("analysis-export", args=[study.slug, "cases.csv"])).streaming_content).decode()))}
    assert set(data["truth"]) == set(cases)
    assert all(data["truth"][c] == int(cases[c]["truth"] == "synthetic") for c in cases)
    # The old link still works and downloads as .imrmc.
    old = client.get(reverse("analysis-export", args=[study.slug, "imrmc.txt"]))
    assert old["Content-Disposition"].endswith('.imrmc"')
