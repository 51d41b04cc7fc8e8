"""Is a local service reachable? Used by the test suite and by the Makefile's PostgreSQL target."""

POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/15"  # a database of its own, emptied by the tests that use it


def available(kind: str, url: str) -> bool:
    try:
        if kind == "postgres":
            import psycopg

            psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", connect_timeout=3).close()
            return True
        if kind == "redis":
            import redis

            return bool(redis.Redis.from_url(url, socket_connect_timeout=3).ping())
    except Exception:
        return False
    raise ValueError(f"unknown service {kind!r}")
