"""Hardening: log-in throttling shared by every process (django-axes), expiring hashed API tokens (knox), the cache setting, `check --deploy`."""

import subprocess
from pathlib import Path
import sys
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from readerstudy.settings import cache_config

from .services import REDIS_URL, available


@pytest.fixture
def ana(db):
    return User.objects.create_user("ana", password="pw-ana-1234")


def test_token_log_in_gives_an_expiring_token_stored_only_as_a_hash(ana, settings):
    from knox.models import AuthToken

    client = APIClient()
    reply = client.post("/api/v1/auth/token", {"username": "ana", "password": "pw-ana-1234"}, format="json")
    assert reply.status_code == 200 and reply.data["expiry"]
    token = reply.data["token"]
    stored = AuthToken.objects.get(user=ana)
    assert token not in {stored.digest, stored.token_key} and stored.digest != token
    assert timedelta(hours=11) < stored.expiry - timezone.now() <= settings.REST_KNOX["TOKEN_TTL"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/me").status_code == 200

    AuthToken.objects.filter(pk=stored.pk).update(expiry=timezone.now() - timedelta(seconds=1))
    assert client.get("/api/v1/me").status_code == 401
    assert not AuthToken.objects.filter(pk=stored.pk).exists()  # an expired token is deleted when shown


def test_tokens_are_revoked_by_log_out_and_limited_per_user(ana, settings):
    from knox.models import AuthToken

    def log_in():
        return APIClient().post("/api/v1/auth/token", {"username": "ana", "password": "pw-ana-1234"},
                                format="json").data["token"]

    first, second = log_in(), log_in()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {first}")
    assert client.post("/api/v1/auth/logout").status_code == 204
    assert client.get("/api/v1/me").status_code == 401
    client.credentials(HTTP_AUTHORIZATION=f"Token {second}")
    assert client.get("/api/v1/me").status_code == 200

    limit = settings.REST_KNOX["TOKEN_LIMIT_PER_USER"]
    tokens = [log_in() for _ in range(limit + 2)]
    assert AuthToken.objects.filter(user=ana).count() == limit
    client.credentials(HTTP_AUTHORIZATION=f"Token {tokens[0]}")
    assert client.get("/api/v1/me").status_code == 401  # the oldest made way
    client.credentials(HTTP_AUTHORIZATION=f"Token {tokens[-1]}")
    assert client.post("/api/v1/auth/logout-all").status_code == 204
    assert AuthToken.objects.filter(user=ana).count() == 0


def test_session_cookies_do_not_log_out_api_tokens(ana, client):
    client.force_login(ana)
    assert client.post("/api/v1/auth/logout").status_code == 401


def _fail(client, url, n, username="ana"):
    for _ in range(n):
        client.post(url, {"username": username, "password": "wrong"})


def test_token_log_in_is_locked_after_repeated_failures(ana, settings):
    stranger = APIClient()
    codes = [stranger.post("/api/v1/auth/token", {"username": "ana", "password": "wrong"}, format="json").status_code
             for _ in range(settings.AXES_FAILURE_LIMIT)]
    assert codes == [400] * (settings.AXES_FAILURE_LIMIT - 1) + [429]  # the failure that reaches the limit locks
    locked = stranger.post("/api/v1/auth/token", {"username": "ana", "password": "pw-ana-1234"}, format="json")
    assert locked.status_code == 429 and "Too many failed log-ins" in locked.data["error"]


def test_web_log_in_lock_out_is_counted_in_the_database_not_in_one_process(ana, client, settings):
    _fail(client, reverse("login"), settings.AXES_FAILURE_LIMIT)
    # Another web process has its own local memory; the attempts must not live there.
    cache.clear()
    response = client.post(reverse("login"), {"username": "ana", "password": "pw-ana-1234"})
    assert response.status_code == 429 and b"Too many failed log-ins" in response.content
    assert "_auth_user_id" not in client.session
    # The same name from elsewhere is locked too, and so is the API.
    other = APIClient(REMOTE_ADDR="10.0.0.9")
    assert other.post("/api/v1/auth/token", {"username": "ana", "password": "pw-ana-1234"},
                      format="json").status_code == 429


def test_admin_log_in_is_throttled_with_the_others(ana, client, settings):
    User.objects.create_superuser("boss", password="pw-boss-1234")
    _fail(client, "/admin/login/", settings.AXES_FAILURE_LIMIT, username="boss")
    response = client.post("/admin/login/", {"username": "boss", "password": "pw-boss-1234", "next": "/admin/"})
    assert response.status_code == 429 and b"Too many failed log-ins" in response.content


def test_a_success_clears_the_failures_and_the_lock_out_ends(ana, client, settings):
    from axes.models import AccessAttempt

    _fail(client, reverse("login"), settings.AXES_FAILURE_LIMIT - 1)
    assert client.post(reverse("login"), {"username": "ana", "password": "pw-ana-1234"}).status_code == 302
    assert not AccessAttempt.objects.filter(username="ana").exists()
    client.logout()
    _fail(client, reverse("login"), settings.AXES_FAILURE_LIMIT)
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    assert client.post(reverse("login"), {"username": "ana", "password": "pw-ana-1234"}).status_code == 302


@pytest.mark.parametrize("url, backend", [
    ("redis://127.0.0.1:6379/1", "django.core.cache.backends.redis.RedisCache"),
    ("file:///var/cache/rs", "django.core.cache.backends.filebased.FileBasedCache"),
    ("locmem://", "django.core.cache.backends.locmem.LocMemCache"),
    ("dummy://", "django.core.cache.backends.dummy.DummyCache"),
])
def test_cache_url_names_the_backend(url, backend):
    assert cache_config(url)["BACKEND"] == backend


@pytest.mark.parametrize("url", ["memcached://x", "file://relative", "redis"])
def test_a_bad_cache_url_is_refused(url):
    with pytest.raises(ImproperlyConfigured, match="READERSTUDY_CACHE_URL"):
        cache_config(url)


def _in_another_process(code: str, env: dict) -> str:
    import os

    full = {**os.environ, "DJANGO_SETTINGS_MODULE": "readerstudy.settings", **env}
    return subprocess.run([sys.executable, "-c", "import django; django.setup(); " + code], env=full,
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def test_the_default_cache_is_shared_by_processes(tmp_path):
    env = {"READERSTUDY_DATA_DIR": str(tmp_path), "DJANGO_SECRET_KEY": "x"}
    _in_another_process("from django.core.cache import cache; cache.set('shared', 'yes', 60)", env)
    got = _in_another_process("from django.core.cache import cache; print(cache.get('shared'))", env)
    assert got == "yes"


@pytest.mark.skipif(not available("redis", REDIS_URL), reason="!!! SKIPPED: no Redis at 127.0.0.1:6379 !!!")
def test_a_redis_cache_is_shared_by_processes(tmp_path):
    env = {"READERSTUDY_DATA_DIR": str(tmp_path), "DJANGO_SECRET_KEY": "x", "READERSTUDY_CACHE_URL": REDIS_URL}
    _in_another_process("from django.core.cache import cache; cache.set('shared', 'redis', 60)", env)
    got = _in_another_process("from django.core.cache import caches; print(caches['default'].get('shared'), "
                              "type(caches['default']).__name__)", env)
    assert got == "redis RedisCache"
    _in_another_process("from django.core.cache import cache; cache.delete('shared')", env)  # RQ tests share it


def test_deploy_checks_are_clean_behind_a_tls_proxy(tmp_path):
    import os

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "readerstudy.settings", "READERSTUDY_DATA_DIR": str(tmp_path),
           "DJANGO_BEHIND_TLS_PROXY": "1", "DJANGO_SECRET_KEY": "k" * 20 + "-a-long-random-production-key-0123456789"}
    done = subprocess.run([sys.executable, str(Path(__file__).resolve().parent.parent / "manage.py"), "check", "--deploy", "--fail-level", "WARNING"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout
