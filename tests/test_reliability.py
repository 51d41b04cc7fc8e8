"""Reliability and security: concurrent readers, deploy checks, CSRF, the schema, stale jobs."""

import json
import os
import secrets
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.test import Client
from django.urls import reverse

from readerstudy.jobs.models import Job
from readerstudy.reading.models import Read, ReadRevision
from readerstudy.studies.models import AssignedCase

from .studies import make_pool, make_user, open_study_for, readers

ROOT = Path(__file__).resolve().parent.parent
FULL = {"label": "fake", "confidence": 3, "realism": 2, "anatomy": 3}


def run_readers(study, team, repeats: int = 2):
    """Every reader answers all their cases in order from their own thread; each save is sent
    `repeats` times at once (a double submit) plus an autosave before it. Returns the errors seen."""
    errors = []
    start = threading.Barrier(len(team))

    def read_all(reader):
        try:
            client = Client()
            client.force_login(reader)
            cases = list(AssignedCase.objects.filter(assignment__reader=reader, assignment__study=study)
                         .order_by("position").values_list("token", flat=True))
            start.wait()
            for n, token in enumerate(cases):
                url = reverse("read-answer", args=[token])
                draft = {"label": "unsure", "idempotency_key": f"draft-{reader.pk}-{n:05d}"}
                response = client.post(url, json.dumps(draft), content_type="application/json")
                if response.status_code != 200:
                    errors.append((reader.username, n, response.status_code, response.content[:200]))
                body = json.dumps({**FULL, "label": "fake" if n % 2 else "real", "submit": True,
                                   "idempotency_key": f"final-{reader.pk}-{n:05d}"})
                for _ in range(repeats):
                    response = client.post(url, body, content_type="application/json")
                    if response.status_code != 200:
                        errors.append((reader.username, n, response.status_code, response.content[:200]))
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append((reader.username, "exception", repr(exc)))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=read_all, args=(r,)) for r in team]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def check_nothing_lost_or_duplicated(study, team, cases_each):
    reads = Read.objects.filter(assigned_case__assignment__study=study)
    assert reads.count() == len(team) * cases_each
    assert reads.filter(submitted_at__isnull=True).count() == 0
    assert reads.values("assigned_case").distinct().count() == reads.count()
    for read in reads.select_related("assigned_case"):
        expected = "fake" if (read.assigned_case.position - 1) % 2 else "real"
        assert read.label == expected
    # One revision per read: the autosaved draft ("unsure") was replaced once; replays added nothing.
    assert ReadRevision.objects.filter(read__in=reads).count() == reads.count()
    assert all(r.revision == 2 for r in reads)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "sqlite", reason="the embedded SQLite case (PostgreSQL has its own test)")
def test_twenty_concurrent_readers_on_sqlite_without_locked_errors():
    make_pool(real={("CT", "2d"): 4}, synthetic={("CT", "2d"): 4})
    team = readers(20)
    study = open_study_for(team, {("CT", "2d"): 8})
    errors = run_readers(study, team)
    assert not errors, errors[:5]
    check_nothing_lost_or_duplicated(study, team, 8)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="!!! SKIPPED here: 50 concurrent readers run in the PostgreSQL suite (make test-postgres) !!!")
def test_fifty_concurrent_readers_on_postgresql_lose_and_duplicate_nothing():
    make_pool(real={("CT", "2d"): 4}, synthetic={("CT", "2d"): 4})
    team = readers(50)
    study = open_study_for(team, {("CT", "2d"): 6})
    errors = run_readers(study, team, repeats=3)
    assert not errors, errors[:5]
    check_nothing_lost_or_duplicated(study, team, 6)


def test_deploy_check_is_clean_with_production_settings(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "readerstudy.settings", "READERSTUDY_DATA_DIR": str(tmp_path),
           "DJANGO_SECRET_KEY": secrets.token_urlsafe(60), "DJANGO_DEBUG": "0", "DJANGO_BEHIND_TLS_PROXY": "1",
           "DJANGO_ALLOWED_HOSTS": "reader.example.org", "DJANGO_SECURE_COOKIES": "1"}
    env.pop("DATABASE_URL", None)
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_openapi_schema_is_valid_and_warning_free(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))
    assert "/api/v1/reading/cases/{token}/answer" in (tmp_path / "schema.yml").read_text()


@pytest.mark.django_db
def test_session_requests_need_the_csrf_token():
    make_pool(real={("CT", "2d"): 1}, synthetic={("CT", "2d"): 1})
    (reader,) = readers(1)
    open_study_for([reader], {("CT", "2d"): 2})
    token = AssignedCase.objects.get(assignment__reader=reader, position=1).token
    client = Client(enforce_csrf_checks=True)
    client.force_login(reader)
    body = json.dumps({**FULL, "idempotency_key": "csrf-00001"})
    assert client.post(reverse("read-answer", args=[token]), body, content_type="application/json").status_code == 403
    api = client.put(f"/api/v1/reading/cases/{token}/answer", body, content_type="application/json")
    assert api.status_code == 403 and "CSRF" in api.json()["error"]
    client.get(reverse("read-case", args=[token]))
    csrf = client.cookies["csrftoken"].value
    ok = client.post(reverse("read-answer", args=[token]), body, content_type="application/json",
                     HTTP_X_CSRFTOKEN=csrf)
    assert ok.status_code == 200 and not Read.objects.filter(label="").exists()


@pytest.mark.django_db
def test_jobs_left_running_by_a_killed_worker_are_failed_and_retryable():
    from django.utils import timezone

    from readerstudy.jobs.progress import recover_stale_jobs

    stale = Job.objects.create(kind=Job.Kind.GENERATE, title="killed", status=Job.Status.RUNNING,
                               heartbeat_at=timezone.now() - timezone.timedelta(minutes=30))
    alive = Job.objects.create(kind=Job.Kind.GENERATE, title="alive", status=Job.Status.RUNNING,
                               heartbeat_at=timezone.now())
    assert recover_stale_jobs(stale_after_seconds=600) == [stale.pk]
    stale.refresh_from_db()
    alive.refresh_from_db()
    assert stale.status == Job.Status.FAILED and "worker stopped" in stale.error and stale.can_retry
    assert alive.status == Job.Status.RUNNING
    call_command("recover_jobs", "--stale-seconds", "0")
    alive.refresh_from_db()
    assert alive.status == Job.Status.FAILED


def _production_settings(tmp_path, **extra) -> dict:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "readerstudy.settings", "READERSTUDY_DATA_DIR": str(tmp_path),
           "DJANGO_SECRET_KEY": secrets.token_urlsafe(60), "DJANGO_DEBUG": "0", "DJANGO_BEHIND_TLS_PROXY": "1",
           "DJANGO_ALLOWED_HOSTS": "reader.example.org", "DJANGO_SECURE_COOKIES": "1", **extra}
    env.pop("DATABASE_URL", None)
    return env


def test_hsts_preload_only_when_asked_for_and_the_hub_offline_before_it_is_imported(tmp_path):
    probe = ("import django; django.setup(); from django.conf import settings; import huggingface_hub.constants as c; "
             "print(settings.SECURE_HSTS_PRELOAD, c.HF_HUB_OFFLINE)")
    for extra, expected in (({}, "False True"), ({"DJANGO_HSTS_PRELOAD": "1"}, "True True")):
        env = _production_settings(tmp_path, **extra)
        env.pop("HF_HUB_OFFLINE", None)
        run = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=120)
        assert run.stdout.split() == expected.split(), run.stderr
    run = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                         env=_production_settings(tmp_path, DJANGO_HSTS_PRELOAD="1"), capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and "no issues" in run.stdout, run.stdout + run.stderr


@pytest.mark.django_db
def test_a_policy_with_valueless_directives_is_served_and_the_api_docs_allow_their_inline_styles(client, settings):
    from readerstudy.settings import csp_directives

    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": csp_directives(
        "default-src 'self'; style-src 'self'; upgrade-insecure-requests; script-src 'self'")}
    client.force_login(make_user("coord", "coordinator"))
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    policy = dict((p.strip() + " ").split(" ", 1) for p in response["Content-Security-Policy"].split(";"))
    assert "upgrade-insecure-requests" in policy and policy["style-src"].split() == ["'self'", "'unsafe-inline'"]
    page = client.get("/accounts/login/")
    assert "'unsafe-inline'" not in page["Content-Security-Policy"]  # only the docs page relaxes it
