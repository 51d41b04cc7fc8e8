"""Settings for the reader-study platform, read from the environment.

Every setting an operator may need has an environment variable; the README's
"Configuration" section lists them. Defaults give a working single-machine
install: SQLite in WAL mode and the database task backend.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off", ""}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    return default if value is None else [v.strip() for v in value.split(",") if v.strip()]


def csp_directives(policy: str) -> dict:
    """A Content-Security-Policy header value as django-csp directives; a valueless one is True."""
    directives = {}
    for part in policy.split(";"):
        name, *values = part.split()
        if name:
            directives[name.lower()] = values or True
    return directives


# Everything the platform writes (pool files, uploads, SQLite database, secret key).
DATA_DIR = Path(os.environ.get("READERSTUDY_DATA_DIR", BASE_DIR / "var")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DJANGO_DEBUG", False)

# Nothing is fetched from a model hub at run time (weights ship with the repository or are local
# folders). huggingface_hub reads these once, when it is first imported, so they are set here.
for _offline in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_offline, "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _secret_key() -> str:
    """Use DJANGO_SECRET_KEY, else a random key persisted (mode 0600) in DATA_DIR."""
    if key := os.environ.get("DJANGO_SECRET_KEY"):
        return key
    path = DATA_DIR / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_tasks",
    "django_tasks_db",
    "csp",
    "axes",
    "readerstudy.accounts",
    "readerstudy.jobs",
    "readerstudy.imaging",
    "generation",
    "readerstudy.studies",
    "readerstudy.reading",
    "readerstudy.stats",
    "readerstudy.api",
    "readerstudy.audit",
    "readerstudy.demo",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Answers a case's next slices from the view's decision for the first (reading/served_files.py).
    "readerstudy.reading.served_files.ServedFileMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Last, as django-axes asks: turns a locked-out log-in into its lock-out response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "readerstudy.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "readerstudy.wsgi.application"

# --- Database ---------------------------------------------------------------
# SQLite by default; PostgreSQL (or anything dj-database-url knows) via DATABASE_URL.
SQLITE_PATH = DATA_DIR / "readerstudy.sqlite3"
# An empty DATABASE_URL (e.g. `DATABASE_URL= make test`) means the default, not a broken setting.
try:
    DATABASES = {"default": dj_database_url.parse(os.environ.get("DATABASE_URL") or f"sqlite:///{SQLITE_PATH}",
                                                  conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60))}
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL dj-database-url understands: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside a writer; IMMEDIATE transactions take the write
    # lock up front, so concurrent writers queue on busy_timeout instead of failing
    # with "database is locked" when a read transaction tries to upgrade.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": (
            "PRAGMA journal_mode=WAL;"
            "PRAGMA synchronous=NORMAL;"
            "PRAGMA busy_timeout=30000;"
            "PRAGMA foreign_keys=ON;"
        ),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Background tasks -------------------------------------------------------
# "database" (default, `manage.py db_worker`), "rq" (Redis, `manage.py rqworker`)
# or "immediate" (runs inline; tests and debugging).
TASKS_BACKEND = os.environ.get("READERSTUDY_TASKS_BACKEND", "database")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
_TASK_BACKENDS = {
    "database": "django_tasks_db.DatabaseBackend",
    "rq": "django_tasks_rq.RQBackend",
    "immediate": "django_tasks.backends.immediate.ImmediateBackend",
}
if TASKS_BACKEND not in _TASK_BACKENDS:
    raise ImproperlyConfigured(
        f"READERSTUDY_TASKS_BACKEND must be one of {sorted(_TASK_BACKENDS)}, got {TASKS_BACKEND!r}"
    )
# Work that runs models (generation, realism) goes to its own queue when GPU machines take it:
# READERSTUDY_MODEL_QUEUE=gpu, and on each GPU machine a worker for that queue only.
MODEL_QUEUE = os.environ.get("READERSTUDY_MODEL_QUEUE", "default")
if not MODEL_QUEUE.replace("-", "").replace("_", "").isalnum():
    raise ImproperlyConfigured(f"READERSTUDY_MODEL_QUEUE must be a simple name, got {MODEL_QUEUE!r}")
_QUEUES = sorted({"default", MODEL_QUEUE})
TASKS = {"default": {"BACKEND": _TASK_BACKENDS[TASKS_BACKEND], "QUEUES": _QUEUES}}
RQ_QUEUES = {name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 24 * 3600} for name in _QUEUES}
if TASKS_BACKEND == "rq":
    INSTALLED_APPS += ["django_rq"]
# A running job's worker writes a heartbeat this often, whatever its progress; `recover_jobs`
# declares a job's worker gone after JOB_STALE_SECONDS without one (keep it many beats long).
JOB_HEARTBEAT_SECONDS = float(os.environ.get("READERSTUDY_JOB_HEARTBEAT_SECONDS", 30))
JOB_STALE_SECONDS = env_int("READERSTUDY_JOB_STALE_SECONDS", 600)
# A study's analysis is computed in the request up to this many submitted answers (about a second);
# above it, by a background job (one per state of the answers) while the dashboard shows its progress.
ANALYSIS_INLINE_ANSWERS = env_int("READERSTUDY_ANALYSIS_INLINE_ANSWERS", 2000)

# --- Cache ------------------------------------------------------------------
# One cache shared by every web process and worker (analysis results): a folder in DATA_DIR by
# default, Redis with READERSTUDY_CACHE_URL=redis://host:6379/1 when processes span machines.


def cache_config(url: str) -> dict:
    """A CACHES entry from a URL: redis://, rediss://, file:///absolute/folder, locmem:// or dummy://."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme = ""
    if scheme in {"redis", "rediss"}:
        return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
    if scheme == "file" and rest.startswith("/"):
        return {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": rest}
    if scheme == "locmem":
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": rest or "readerstudy"}
    if scheme == "dummy":
        return {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}
    raise ImproperlyConfigured(
        f"READERSTUDY_CACHE_URL must be redis://, rediss://, file:///folder, locmem:// or dummy://, got {url!r}"
    )


CACHES = {"default": cache_config(os.environ.get("READERSTUDY_CACHE_URL", f"file://{DATA_DIR / 'cache'}"))}

# --- Auth -------------------------------------------------------------------
# Permissions only (accounts/permissions.py); the study-editor backend answers "may this user change
# this study". django-axes goes first: it refuses a locked-out log-in before a password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "readerstudy.accounts.permissions.StudyEditorBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# Log-in throttling (django-axes; attempts are rows in the database, so every web process counts the
# same ones): after AXES_FAILURE_LIMIT failures for a user name, or from an address, log-ins by that
# name or from that address are refused for the cool-off time. Pages, admin and API tokens alike.
AXES_FAILURE_LIMIT = env_int("READERSTUDY_LOGIN_MAX_FAILURES", 10)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("READERSTUDY_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "readerstudy.accounts.views.locked_out"
AXES_VERBOSE = False
# Invitations and password resets: a one-time link, valid this long (Django's token generator).
PASSWORD_RESET_TIMEOUT = env_int("READERSTUDY_INVITATION_HOURS", 72) * 3600
EMAIL_BACKEND = os.environ.get("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("DJANGO_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("DJANGO_EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("DJANGO_EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("DJANGO_EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("DJANGO_EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = os.environ.get("DJANGO_DEFAULT_FROM_EMAIL", "reader-study@localhost")

# --- I18n, static -----------------------------------------------------------
LANGUAGE_CODE = "en-gb"
TIME_ZONE = os.environ.get("DJANGO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
WHITENOISE_USE_FINDERS = True  # serve straight from static/ without collectstatic in a demo

# --- Image pool -------------------------------------------------------------
# Pool files are never served as static or media files: the reader views stream
# canonical DICOM through opaque per-reader tokens, the coordinator views check roles.
POOL_ROOT = Path(os.environ.get("READERSTUDY_POOL_ROOT", DATA_DIR / "pool")).resolve()
UPLOAD_ROOT = Path(os.environ.get("READERSTUDY_UPLOAD_ROOT", DATA_DIR / "uploads")).resolve()
# Large uploads are spooled here, on the uploads' file system, so staging them is one rename.
FILE_UPLOAD_TEMP_DIR = UPLOAD_ROOT / ".incoming"
FILE_UPLOAD_TEMP_DIR.mkdir(parents=True, exist_ok=True)
# A failed or cancelled import keeps its uploaded files this long for a retry (then `gc_pool` collects them).
UPLOAD_KEEP_DAYS = env_int("READERSTUDY_UPLOAD_KEEP_DAYS", 7)

# Largest side of the stored master array; larger images are downsampled on import.
POOL_MASTER_MAX_SIDE = env_int("READERSTUDY_MASTER_MAX_SIDE", 512)
# Import limits: anything above is refused with a clear error before decoding.
IMPORT_MAX_FILE_BYTES = env_int("READERSTUDY_IMPORT_MAX_FILE_BYTES", 2 * 1024**3)
IMPORT_MAX_VOXELS = env_int("READERSTUDY_IMPORT_MAX_VOXELS", 512 * 1024 * 1024)
IMPORT_MAX_SIDE = env_int("READERSTUDY_IMPORT_MAX_SIDE", 16384)
IMPORT_MAX_SLICES = env_int("READERSTUDY_IMPORT_MAX_SLICES", 4096)
# Memory one import may take, checked against decoders.base.IMPORT_BYTES_PER_VOXEL from the header; the
# default leaves a 24 GB machine room for the web server and another worker.
IMPORT_MEMORY_MB = env_int("READERSTUDY_IMPORT_MEMORY_MB", 8192)
UPLOAD_MAX_BYTES = env_int("READERSTUDY_UPLOAD_MAX_BYTES", 4 * 1024**3)
UPLOAD_MAX_FILES = env_int("READERSTUDY_UPLOAD_MAX_FILES", 5000)
# How long a served-file authorisation is remembered per session and case (reading/served_files.py).
SERVED_FILE_AUTHORISATION_SECONDS = float(os.environ.get("READERSTUDY_SERVED_FILE_AUTHORISATION_SECONDS", 2))
DATA_UPLOAD_MAX_NUMBER_FILES = UPLOAD_MAX_FILES

# --- Production hardening (see README "Production") -------------------------
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp). The viewer is written for it: no inline scripts or styles;
# Cornerstone's image loader may compile WebAssembly codecs, hence 'wasm-unsafe-eval' (no 'unsafe-eval').
# READERSTUDY_CSP replaces it with a policy in the header's own syntax (valueless directives allowed).
CONTENT_SECURITY_POLICY = {"DIRECTIVES": csp_directives(os.environ.get(
    "READERSTUDY_CSP",
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'self'; frame-ancestors 'none'; "
    "form-action 'self'",
))}
if env_bool("DJANGO_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    # Preloading is a commitment to the browsers' lists that takes months to undo: only when asked for.
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS = ["security.W021"]  # "not preloaded": a decision, not an oversight

# --- REST API (readerstudy/api) --------------------------------------------
REST_FRAMEWORK = {
    # Token first, so anonymous requests get 401 with a WWW-Authenticate header.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": env_int("READERSTUDY_API_PAGE_SIZE", 50),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "readerstudy.api.errors.exception_handler",
}
# API tokens (django-rest-knox): stored as hashes, sent as "Authorization: Token <token>", expiring
# READERSTUDY_API_TOKEN_HOURS after they were issued (or last used, with READERSTUDY_API_TOKEN_REFRESH).
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=env_int("READERSTUDY_API_TOKEN_HOURS", 12)),
    "AUTO_REFRESH": env_bool("READERSTUDY_API_TOKEN_REFRESH", False),
    "AUTH_HEADER_PREFIX": "Token",
    "TOKEN_LIMIT_PER_USER": env_int("READERSTUDY_API_TOKENS_PER_USER", 10),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Reader-study platform API",
    "DESCRIPTION": "Pool, generators, jobs, studies, progress, analysis, exports and blinded reading.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("READERSTUDY_LOG_LEVEL", "INFO")},
    # django-axes logs every log-in at INFO; lock-outs and repeated failures are WARNINGs.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}
