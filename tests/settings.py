"""Test settings: the real settings with tasks run inline and a private data folder."""

import os
import tempfile

os.environ.setdefault("READERSTUDY_DATA_DIR", tempfile.mkdtemp(prefix="readerstudy-test-"))
os.environ["READERSTUDY_TASKS_BACKEND"] = "immediate"
os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-secret-key")

from readerstudy.settings import *  # noqa: E402,F403
from readerstudy.settings import DATA_DIR, DATABASES  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = False
# Tests see every rule at once; tests/test_served_files.py turns remembering on where it is the subject.
SERVED_FILE_AUTHORISATION_SECONDS = 0
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not :memory:, so the WAL set-up is what the tests exercise.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
