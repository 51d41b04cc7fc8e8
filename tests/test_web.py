"""Pages, roles, upload jobs, the admin, the demo build and the database set-up."""

import pytest
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse

from generation.models import Generator
from readerstudy.accounts.roles import ANALYST, COORDINATOR, READER
from readerstudy.imaging.models import Dataset, Dimensionality, Modality, Origin, PoolItem
from readerstudy.imaging.pool import ensure_rendition
from readerstudy.jobs.models import Job

from .conftest import DATA, requires_sqlite

pytestmark = pytest.mark.django_db


def user_with(role: str | None, name: str | None = None) -> User:
    user = User.objects.create_user(name or (role or "nobody"), password="pw-for-tests-123")
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def coordinator_client(client):
    client.force_login(user_with(COORDINATOR))
    return client


def upload(client, *files, **fields):
    data = {"modality": "MR", "new_dataset": "uploaded scans", "licence": "CC BY 4.0", "layout": "auto", **fields}
    data["files"] = list(files)
    return client.post(reverse("pool-upload"), data)


def dicom_upload(path, name=None):
    return SimpleUploadedFile(name or path.name, path.read_bytes(), content_type="application/dicom")


def test_upload_page_imports_in_a_background_job(coordinator_client, settings, django_capture_on_commit_callbacks):
    good = dicom_upload(DATA / "emri_small.dcm")
    bad = SimpleUploadedFile("notes.txt", b"no pixels here", content_type="text/plain")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = upload(coordinator_client, good, bad)
    assert len(callbacks) == 1  # the task is enqueued only once the job row is committed
    job = Job.objects.get()
    assert response.status_code == 302 and response.url == reverse("job-detail", args=[job.pk])
    assert job.kind == Job.Kind.IMPORT and job.status == Job.Status.SUCCEEDED  # immediate backend in tests
    assert job.progress_done == job.progress_total == 2
    statuses = {o["source"].split("_", 1)[1]: (o["status"], o["message"]) for o in job.result["outcomes"]}
    assert statuses["emri_small.dcm"][0] == "imported"
    assert statuses["notes.txt"] == ("failed", "not a supported image file (expected DICOM, NIfTI, PNG, JPEG or TIFF)")
    item = PoolItem.objects.get()
    assert item.dataset.name == "uploaded scans" and item.dataset.licence == "CC BY 4.0"
    assert item.import_job == job and item.created_by.username == COORDINATOR
    assert not (settings.UPLOAD_ROOT / f"job-{job.pk}").exists()  # uploads are cleaned up
    page = coordinator_client.get(reverse("job-detail", args=[job.pk]))
    assert b"not a supported image file" in page.content
    text = page.content.decode()
    # The status line says what happened to the files, not "2/2", and links to the pool, not to synthetic items.
    assert "Succeeded</strong> <span id=\"job-count\">— 1 imported (1 pool items), 0 already in the pool, 1 failed" in text
    assert "See the synthetic items" not in text and "See the pool" in text
    state = coordinator_client.get(reverse("job-state", args=[job.pk])).json()
    assert state["status"] == "succeeded" and state["percent"] == 100


def test_an_empty_file_is_one_failed_file_of_an_upload(coordinator_client, django_capture_on_commit_callbacks):
    empty = SimpleUploadedFile("empty.dcm", b"", content_type="application/dicom")
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(coordinator_client, dicom_upload(DATA / "emri_small.dcm"), empty)
    job = Job.objects.get()
    assert response.status_code == 302 and job.status == Job.Status.SUCCEEDED
    statuses = {o["source"].split("_", 1)[1]: (o["status"], o["message"]) for o in job.result["outcomes"]}
    assert statuses["empty.dcm"] == ("failed", "file is empty (0 bytes)")
    assert statuses["emri_small.dcm"][0] == "imported"


def test_upload_form_errors(coordinator_client):
    response = coordinator_client.post(reverse("pool-upload"), {"modality": "MR", "layout": "auto"})
    assert response.status_code == 200 and b"Choose at least one file or a folder." in response.content
    response = upload(coordinator_client, dicom_upload(DATA / "emri_small.dcm"), licence="")
    assert b"A new data set needs its licence." in response.content
    assert not Job.objects.exists() and not Dataset.objects.exists()


def test_upload_size_limit(coordinator_client, settings):
    settings.UPLOAD_MAX_BYTES = 1000
    response = upload(coordinator_client, dicom_upload(DATA / "emri_small.dcm"))
    assert b"the limit is" in response.content and not Job.objects.exists()


def test_pool_list_shows_provenance_to_coordinators(coordinator_client, import_file):
    import_file(DATA / "emri_small.dcm")
    page = coordinator_client.get(reverse("pool-list"))
    assert page.status_code == 200
    item = PoolItem.objects.get()
    for text in ("emri_small.dcm", "test scans", "CC0", item.source_sha256[:12], "Real"):
        assert text in page.content.decode()
    preview = coordinator_client.get(reverse("pool-preview", args=[item.pk]))
    assert preview.status_code == 200 and preview["Content-Type"] == "image/png"
    filtered = coordinator_client.get(reverse("pool-list"), {"origin": "synthetic"})
    assert "emri_small.dcm" not in filtered.content.decode()


@pytest.mark.parametrize(
    "url_name, args",
    [("pool-list", []), ("pool-upload", []), ("pool-preview", [1]), ("job-list", []), ("job-detail", [1]),
     ("job-state", [1])],
)
def test_readers_cannot_reach_provenance_pages(client, url_name, args, import_file):
    import_file(DATA / "emri_small.dcm")
    Job.objects.create(kind=Job.Kind.IMPORT, title="t")
    client.force_login(user_with(READER))
    assert client.get(reverse(url_name, args=args)).status_code == 403
    assert client.get(reverse("admin:imaging_poolitem_changelist")).status_code == 302  # not staff


@pytest.mark.parametrize("url_name", ["pool-list", "pool-upload", "job-list", "home"])
def test_anonymous_users_are_sent_to_login(client, url_name):
    response = client.get(reverse(url_name))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_analysts_read_the_pool_but_cannot_import(client):
    client.force_login(user_with(ANALYST))
    assert client.get(reverse("pool-list")).status_code == 200
    assert client.get(reverse("pool-upload")).status_code == 403


def test_admin_lists_items_with_provenance(admin_client, import_file):
    import_file(DATA / "emri_small.dcm")
    page = admin_client.get(reverse("admin:imaging_poolitem_changelist")).content.decode()
    assert "emri_small.dcm" in page and "test scans" in page and "CC0" in page
    item = PoolItem.objects.get()
    detail = admin_client.get(reverse("admin:imaging_poolitem_change", args=[item.pk])).content.decode()
    assert item.source_sha256 in detail


def test_admin_delete_removes_files(admin_client, import_file, pool_dirs, django_capture_on_commit_callbacks):
    import_file(DATA / "emri_small.dcm")
    item = PoolItem.objects.get()
    ensure_rendition(item, 32, 32, 1)  # as a study's preparation writes it
    assert list((pool_dirs / "renditions").iterdir())
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse("admin:imaging_poolitem_delete", args=[item.pk]), {"post": "yes"})
    assert not PoolItem.objects.exists()
    assert list((pool_dirs / "masters").iterdir()) == [] and list((pool_dirs / "renditions").iterdir()) == []


def test_role_groups_hand_out_the_permissions_the_views_check():
    def codenames(role):
        return set(Group.objects.get(name=role).permissions.values_list("codename", flat=True))

    assert {"import_images", "manage_study", "view_results", "export_study", "generate_images", "manage_jobs",
            "manage_readers"} <= codenames(COORDINATOR)
    assert {"view_results", "export_study", "view_read"} <= codenames(ANALYST)
    assert not {"manage_study", "import_images", "change_poolitem"} & codenames(ANALYST)
    assert codenames(READER) == {"read_cases"}


def test_pages_check_permissions_not_group_names(client):
    """A user in no group, granted one permission directly, gets exactly what that permission allows."""
    from django.contrib.auth.models import Permission

    user = User.objects.create_user("auditor", password="x")
    user.user_permissions.add(Permission.objects.get(codename="view_poolitem"))
    client.force_login(user)
    assert client.get(reverse("pool-list")).status_code == 200
    assert client.get(reverse("pool-upload")).status_code == 403
    assert client.get(reverse("study-list")).status_code == 403
    assert client.get("/api/v1/pool").status_code == 200
    assert client.get("/api/v1/studies").status_code == 403


def test_healthz(client):
    assert client.get(reverse("healthz")).json() == {"status": "ok"}


def test_login_page_and_home(client):
    user_with(READER, "r1")
    response = client.post(reverse("login"), {"username": "r1", "password": "pw-for-tests-123"})
    assert response.status_code == 302
    assert "Open your worklist" in client.get(reverse("home")).content.decode()


def test_build_demo_refuses_the_demo_accounts_outside_a_local_demo(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="published passwords"):
        call_command("build_demo", "--no-synthetic")
    settings.ALLOWED_HOSTS = ["127.0.0.1", "reader.example.org"]
    with pytest.raises(CommandError, match="reader.example.org"):
        call_command("build_demo", "--no-synthetic", "--i-know-this-is-a-demo")
    assert not User.objects.filter(username="admin").exists() and not PoolItem.objects.exists()


def build_demo_on_loopback(settings):
    hosts = settings.ALLOWED_HOSTS
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]  # as `make demo` serves it
    try:
        call_command("build_demo", "--i-know-this-is-a-demo")
    finally:
        settings.ALLOWED_HOSTS = hosts


def test_build_demo_pool_and_accounts(client, capsys, settings):
    build_demo_on_loopback(settings)
    out = capsys.readouterr().out
    real = PoolItem.objects.filter(origin=Origin.REAL)
    counts = {(m, d): real.filter(modality=m, dimensionality=d).count() for m in Modality.values for d in Dimensionality.values}
    assert counts[("XR", "2d")] >= 1
    assert counts[("CT", "2d")] >= 2 and counts[("CT", "3d")] >= 1
    assert counts[("MR", "2d")] >= 2 and counts[("MR", "3d")] >= 2
    assert all(i.dataset.licence and i.source_sha256 for i in real)
    for username, password in [("reader1", "demo-reader1"), ("coordinator", "demo-coordinator"), ("analyst", "demo-analyst")]:
        assert f"{username}" in out and password in out
        # Through the log-in page: django-axes checks every log-in against its request.
        assert client.post(reverse("login"), {"username": username, "password": password}).status_code == 302
        client.logout()
    from readerstudy.studies.models import Study

    study = Study.objects.get(slug="demo-study")
    assert study.status == Study.Status.OPEN and study.audit["ok"], study.audit["problems"]
    regular = list(study.cases.filter(role="regular").select_related("item"))
    assert len(regular) == 24
    # One case per source group (calibration included), and both truths in every stratum.
    cases = list(study.cases.exclude(role="repeat").select_related("item"))
    assert len({c.item.source_group for c in cases}) == len(cases)
    by_stratum = {}
    for c in regular:
        by_stratum.setdefault((c.item.modality, c.item.dimensionality), set()).add(c.item.origin)
    assert len(by_stratum) == 5 and all(v == {"real", "synthetic"} for v in by_stratum.values())
    # Real cases come from sources the demo models were not trained on, but for the one recorded exception.
    trained = {g for gen in Generator.objects.all() for g in gen.config.get("training_groups", [])}
    used = [c.item for c in regular if c.item.origin == "real" and c.item.source_group in trained]
    assert [(i.modality, i.dimensionality) for i in used] == [("CT", "3d")]
    assert study.config["drawn"]["training_items_used"] == [used[0].pk]
    assert "training volume" in study.config["sampling"]["training_data_reason"]
    assert set(study.audit["pixels"]) == {"XR/2d", "CT/2d", "CT/3d", "MR/2d", "MR/3d"}
    assert client.post(reverse("login"), {"username": "coordinator", "password": "demo-coordinator"}).status_code == 302
    page = client.get(reverse("study-detail", args=[study.slug])).content.decode()
    assert "Pixels as served" in page and "share of spectral power above half the Nyquist frequency" in page
    analysis = client.get(reverse("analysis-json", args=[study.slug])).json()
    assert set(analysis["leak_audit"]["pixels"]) == set(study.audit["pixels"])
    config = client.get(reverse("analysis-export", args=[study.slug, "config.json"])).getvalue()
    assert b'"pixels"' in config and b"training_data_reason" in config
    assert sorted(study.assignments.values_list("reader__username", flat=True)) == ["reader1", "reader2"]
    total = PoolItem.objects.count()
    build_demo_on_loopback(settings)  # idempotent
    assert PoolItem.objects.count() == total and Study.objects.count() == 1


@requires_sqlite
def test_sqlite_runs_in_wal_mode_with_busy_timeout():
    with connection.cursor() as cursor:
        assert cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert cursor.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
        assert cursor.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_the_admin_names_a_logged_in_user_it_refuses(client):
    user = User.objects.create_user("reader9", password="pw-reader9")
    client.force_login(user)
    page = client.get("/admin/", follow=True).content.decode()
    assert "You are authenticated as reader9, but are not authorized" in page
