"""Login throttling: after too many failed attempts for a user name or an address, wait.

Counts live in Django's cache (per process with the default local-memory cache;
configure a shared cache such as Redis when running several web processes).
"""

from django.conf import settings
from django.core.cache import cache

WINDOW_SECONDS = getattr(settings, "LOGIN_FAILURE_WINDOW", 15 * 60)
MAX_FAILURES = getattr(settings, "LOGIN_MAX_FAILURES", 10)


def _keys(username: str, address: str) -> list[str]:
    return [f"login-fail:user:{(username or '').lower()[:150]}", f"login-fail:addr:{address or '-'}"]


def client_address(request) -> str:
    return request.META.get("REMOTE_ADDR", "")


def is_locked(username: str, address: str) -> bool:
    return any((cache.get(k) or 0) >= MAX_FAILURES for k in _keys(username, address))


def record_failure(username: str, address: str) -> None:
    for key in _keys(username, address):
        cache.add(key, 0, WINDOW_SECONDS)
        try:
            cache.incr(key)
        except ValueError:
            cache.set(key, 1, WINDOW_SECONDS)


def clear(username: str, address: str) -> None:
    cache.delete(_keys(username, address)[0])
