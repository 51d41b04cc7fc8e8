"""REST API: the permission matrix (every endpoint x every role), token log-in, reading through the API."""

import json

import pytest
from django.core.cache import cache
from django.urls import reverse
from rest_framework.test import APIClient

from generation.models import Generator
from readerstudy.accounts.roles import ANALYST, COORDINATOR
from readerstudy.imaging.models import Dataset, PoolItem
from readerstudy.jobs.models import Job
from readerstudy.reading.models import Read
from readerstudy.studies.models import AssignedCase, Study

from .studies import make_pool, make_user, open_study_for, readers

pytestmark = pytest.mark.django_db
ROLES = ["anonymous", "reader_other", "reader_this", "analyst", "coordinator", "admin"]


@pytest.fixture
def world(db):
    cache.clear()
    make_pool(real={("CT", "2d"): 6}, synthetic={("CT", "2d"): 6})
    reader_this, reader_other = readers(2)
    study = open_study_for([reader_this], {("CT", "2d"): 4}, name="Study A")
    other = open_study_for([reader_other], {("CT", "2d"): 2}, name="Study B")
    admin = make_user("root")
    admin.is_superuser = admin.is_staff = True
    admin.save()
    users = {"anonymous": None, "reader_other": reader_other, "reader_this": reader_this,
             "analyst": make_user("ana", ANALYST), "coordinator": make_user("coord", COORDINATOR), "admin": admin}
    token = AssignedCase.objects.get(assignment__reader=reader_this, assignment__study=study, position=1).token
    job = Job.objects.create(kind=Job.Kind.GENERATE, title="t", status=Job.Status.SUCCEEDED)
    return {"study": study, "other": other, "users": users, "token": token, "job": job,
            "item": PoolItem.objects.first(), "dataset": Dataset.objects.first(),
            "generator": Generator.objects.exclude(kind=Generator.Kind.CONTROL).first()}


def call(user, method, url, body=None):
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return getattr(client, method)(url, data=json.dumps(body) if body is not None else None,
                                   content_type="application/json")


STAFF_READ = {"anonymous": 401, "reader_other": 403, "reader_this": 403, "analyst": 200, "coordinator": 200,
              "admin": 200}


def staff_write(ok):
    return {"anonymous": 401, "reader_other": 403, "reader_this": 403, "analyst": 403, "coordinator": ok,
            "admin": ok}


OWN_CASE = {"anonymous": 401, "reader_other": 404, "reader_this": 200, "analyst": 404, "coordinator": 404,
            "admin": 404}
ANY_USER = {"anonymous": 401, **{r: 200 for r in ROLES[1:]}}

MATRIX = [
    ("get", lambda w: "/api/v1/datasets/", STAFF_READ, None),
    ("get", lambda w: f"/api/v1/datasets/{w['dataset'].pk}/", STAFF_READ, None),
    ("get", lambda w: "/api/v1/pool/?modality=CT&origin=real", STAFF_READ, None),
    ("get", lambda w: f"/api/v1/pool/{w['item'].pk}/", STAFF_READ, None),
    ("get", lambda w: "/api/v1/generators/", STAFF_READ, None),
    ("get", lambda w: f"/api/v1/generators/{w['generator'].pk}/", STAFF_READ, None),
    # An imported (external) set cannot be sampled: allowed roles reach validation and get 400.
    ("post", lambda w: f"/api/v1/generators/{w['generator'].pk}/generate/", staff_write(400),
     {"modality": "CT", "count": 2}),
    ("get", lambda w: "/api/v1/jobs/", STAFF_READ, None),
    ("get", lambda w: f"/api/v1/jobs/{w['job'].pk}/", STAFF_READ, None),
    ("post", lambda w: f"/api/v1/jobs/{w['job'].pk}/cancel/", staff_write(409), None),
    ("post", lambda w: f"/api/v1/jobs/{w['job'].pk}/retry/", staff_write(409), None),
    ("get", lambda w: "/api/v1/studies/", STAFF_READ, None),
    ("get", lambda w: f"/api/v1/studies/{w['study'].slug}/", STAFF_READ, None),
    ("patch", lambda w: f"/api/v1/studies/{w['study'].slug}/", staff_write(400), {"name": "renamed"}),
    ("post", lambda w: f"/api/v1/studies/{w['study'].slug}/prepare/", staff_write(400), None),
    ("post", lambda w: f"/api/v1/studies/{w['study'].slug}/audit/", staff_write(202), None),
    ("get", lambda w: f"/api/v1/studies/{w['study'].slug}/readers/", STAFF_READ, None),
    ("post", lambda w: f"/api/v1/studies/{w['study'].slug}/readers/", staff_write(200),
     {"readers": ["reader2"]}),
    ("get", lambda w: f"/api/v1/studies/{w['study'].slug}/progress/", STAFF_READ, None),
    ("get", lambda w: f"/api/v1/studies/{w['study'].slug}/analysis/", STAFF_READ, None),
    ("get", lambda w: f"/api/v1/studies/{w['study'].slug}/exports/answers.csv", STAFF_READ, None),
    ("get", lambda w: f"/api/v1/studies/{w['study'].slug}/exports/config.json", STAFF_READ, None),
    ("post", lambda w: f"/api/v1/studies/{w['study'].slug}/open/", staff_write(400), None),
    ("delete", lambda w: f"/api/v1/studies/{w['study'].slug}/readers/", staff_write(200), {"readers": ["reader2"]}),
    ("post", lambda w: "/api/v1/studies/", staff_write(201),
     {"name": "Matrix", "config": {"strata": [{"modality": "CT", "dimensionality": "2d", "cases": 2}]}}),
    ("post", lambda w: "/api/v1/pool/upload", {**staff_write(400), "analyst": 403}, None),
    ("get", lambda w: "/api/v1/reading/studies", ANY_USER, None),
    ("put", lambda w: f"/api/v1/reading/cases/{w['token']}/answer", OWN_CASE,
     {"label": "unsure", "idempotency_key": "matrix-0001"}),
    ("get", lambda w: "/api/v1/docs", ANY_USER, None),
    ("get", lambda w: f"/api/v1/reading/cases/{w['token']}", OWN_CASE, None),
    ("get", lambda w: "/api/v1/me", ANY_USER, None),
    ("get", lambda w: "/api/v1/schema", ANY_USER, None),
]


@pytest.mark.parametrize("method, url, expected, body", MATRIX, ids=[f"{m} {i}" for i, (m, *_) in enumerate(MATRIX)])
def test_permission_matrix(world, method, url, expected, body):
    for role in ROLES:
        response = call(world["users"][role], method, url(world), body)
        assert response.status_code == expected[role], (role, method, url(world), getattr(response, "data", ""))


def test_create_and_close_study_only_as_coordinator(world):
    body = {"name": "Via API", "config": {"strata": [{"modality": "CT", "dimensionality": "2d", "cases": 2}]}}
    assert call(world["users"]["analyst"], "post", "/api/v1/studies/", body).status_code == 403
    response = call(world["users"]["coordinator"], "post", "/api/v1/studies/", body)
    assert response.status_code == 201 and response.data["status"] == "draft"
    bad = call(world["users"]["coordinator"], "post", "/api/v1/studies/",
               {"name": "Bad", "config": {"synthetic_fraction": 2}})
    assert bad.status_code == 400 and "synthetic_fraction" in json.dumps(bad.data)
    slug = world["study"].slug
    assert call(world["users"]["analyst"], "post", f"/api/v1/studies/{slug}/close/").status_code == 403
    assert call(world["users"]["reader_this"], "post", f"/api/v1/studies/{slug}/close/").status_code == 403
    assert call(world["users"]["coordinator"], "post", f"/api/v1/studies/{slug}/close/").data["status"] == "closed"
    again = call(world["users"]["admin"], "post", f"/api/v1/studies/{slug}/close/")
    assert again.status_code == 400 and again.data["error"] == "only an open study can be closed"


def test_readers_answer_through_the_api_idempotently_and_only_their_own_cases(world):
    reader, other = world["users"]["reader_this"], world["users"]["reader_other"]
    listing = call(reader, "get", "/api/v1/reading/studies").data["studies"]
    assert [s["study"] for s in listing] == [world["study"].slug]
    token = listing[0]["next_case"]
    assert token == world["token"]
    case = call(reader, "get", f"/api/v1/reading/cases/{token}").data
    assert case["case"]["image_ids"][0].startswith("wadouri:/read/case/")
    assert "origin" not in json.dumps(case) and "generator" not in json.dumps(case)
    body = {"label": "fake", "confidence": 3, "realism": 2, "anatomy": 2, "submit": True,
            "idempotency_key": "api-key-0001"}
    first = call(reader, "put", f"/api/v1/reading/cases/{token}/answer", body)
    again = call(reader, "put", f"/api/v1/reading/cases/{token}/answer", body)
    assert first.status_code == again.status_code == 200
    assert (first.data["replayed"], again.data["replayed"]) == (False, True)
    assert first.data["next_case"] and Read.objects.filter(assigned_case__token=token).count() == 1
    stolen = call(other, "put", f"/api/v1/reading/cases/{token}/answer", {**body, "label": "real",
                                                                          "idempotency_key": "steal-0001"})
    assert stolen.status_code == 404 and Read.objects.get(assigned_case__token=token).label == "fake"
    bad = call(reader, "put", f"/api/v1/reading/cases/{first.data['next_case']}/answer",
               {"label": "maybe", "idempotency_key": "bad-00001"})
    assert bad.status_code == 400 and "label must be one of" in bad.data["error"]


def test_pool_filters_and_pagination(world):
    coordinator = world["users"]["coordinator"]
    page = call(coordinator, "get", "/api/v1/pool/?origin=synthetic").data
    assert page["count"] == 6 and all(i["origin"] == "synthetic" for i in page["results"])
    assert call(coordinator, "get", "/api/v1/pool/?dataset=abc").status_code == 400
    assert call(coordinator, "get", "/api/v1/studies/nope/").status_code == 404
    docs = call(coordinator, "get", "/api/v1/docs")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content and b"cdn" not in docs.content.lower()
    assert Study.objects.count() == 2


def test_study_changes_exports_and_answer_edits_are_audited(world, client):
    from readerstudy.audit.models import AuditEvent

    coordinator, reader = world["users"]["coordinator"], world["users"]["reader_this"]
    created = call(coordinator, "post", "/api/v1/studies/",
                   {"name": "Audited", "config": {"strata": [{"modality": "CT", "dimensionality": "2d", "cases": 2}]}})
    slug = created.data["slug"]
    assert call(coordinator, "patch", f"/api/v1/studies/{slug}/", {"instructions": "Be careful"}).status_code == 200
    call(coordinator, "get", f"/api/v1/studies/{world['study'].slug}/exports/answers.csv")
    token = world["token"]
    body = {"label": "fake", "confidence": 3, "realism": 2, "anatomy": 2, "submit": True}
    call(reader, "put", f"/api/v1/reading/cases/{token}/answer", {**body, "idempotency_key": "audit-0001"})
    call(reader, "put", f"/api/v1/reading/cases/{token}/answer", {**body, "label": "real",
                                                                  "idempotency_key": "audit-0002"})
    call(coordinator, "post", f"/api/v1/studies/{world['study'].slug}/close/")
    events = list(AuditEvent.objects.order_by("id").values_list("action", "actor__username", "target"))
    assert ("study.created", "coord", slug) in events
    assert ("study.changed", "coord", slug) in events
    assert ("export", "coord", "answers.csv") in events
    assert ("study.closed", "coord", world["study"].slug) in events
    change = AuditEvent.objects.get(action="answer.changed")
    assert change.actor == reader and change.details["before"]["label"] == "fake"
    assert change.details["after"]["label"] == "real"


def test_coordinators_upload_images_through_the_api(world, django_capture_on_commit_callbacks):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from .conftest import pydicom_file

    def upload(user, **extra):
        client = APIClient()
        if user:
            client.force_authenticate(user)
        files = [SimpleUploadedFile("ct.dcm", pydicom_file("CT_small.dcm").read_bytes()),
                 SimpleUploadedFile("notes.txt", b"not an image")]
        return client.post("/api/v1/pool/upload", {"files": files, "modality": "CT", **extra}, format="multipart")

    assert upload(None, new_dataset="x", licence="CC0").status_code == 401
    assert upload(world["users"]["analyst"], new_dataset="x", licence="CC0").status_code == 403
    missing = upload(world["users"]["coordinator"], new_dataset="API set")
    assert missing.status_code == 400 and "licence" in json.dumps(missing.data)
    before = PoolItem.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(world["users"]["coordinator"], new_dataset="API set", licence="CC0")
    assert response.status_code == 202, response.data
    job = Job.objects.get(pk=response.data["id"])
    assert job.status == Job.Status.SUCCEEDED and PoolItem.objects.count() == before + 1
    assert [o["status"] for o in job.result["outcomes"]] == ["imported", "failed"]


def test_pool_filters_refuse_values_outside_their_choices(world, client):
    client.force_login(world["users"]["coordinator"])
    bad = client.get("/api/v1/pool/", {"origin": "real\x00", "modality": "XR"})
    assert bad.status_code == 400 and "origin" in bad.json()["detail"]
    assert client.get("/api/v1/pool/", {"dataset": "²"}).status_code == 400
    assert client.get("/api/v1/pool/", {"origin": "real", "dimensionality": "2d"}).status_code == 200
