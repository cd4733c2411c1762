"""Docket's one settings file. Everything that differs between machines comes from the environment.

`make run` needs nothing set: SQLite under var/, the ORM broker, the offline judge served by the same
web process, DEBUG off (Docket's own error pages) with a SECRET_KEY generated once and kept in var/, on
localhost over plain HTTP. DOCKET_DEBUG=1 adds Django's debug pages, for development only. A team server
(DOCKET_PRODUCTION=1) requires SECRET_KEY and ALLOWED_HOSTS and turns on secure cookies, HTTPS redirects
and HSTS, so that `manage.py check --deploy` reports nothing.

Importing this file writes nothing. manage.py makes var/ and its uploads folder before any command
(SQLite keeps its database there); `manage.py ensure_var` generates the keys, and the commands that start
Docket's processes run it first (ensure_login and serve under `make run`, start in the container).
"""

from __future__ import annotations

import os
import re
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("DOCKET_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def env_list(name: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]


# The names of the key files under VAR_DIR that these settings read (the keys the environment did not
# give); `manage.py ensure_var` generates each one that is missing.
GENERATED_KEYS: list[str] = []


def generated_key(name: str) -> str:
    """A key generated once into var/<name> by `manage.py ensure_var`, so that processes share it.

    Before that has run (`manage.py check` on a fresh checkout, a test run) the key is made up for this
    process alone: that is enough for any one process, and every command that starts Docket's
    processes (ensure_login, serve, start) writes the file before they start.
    """
    GENERATED_KEYS.append(name)
    try:
        return (VAR_DIR / name).read_text().strip() or secrets.token_urlsafe(32)
    except FileNotFoundError:
        return secrets.token_urlsafe(32)


# DOCKET_DEBUG=0 meant production before DEBUG was off by default; it still does.
PRODUCTION = env_bool("DOCKET_PRODUCTION", os.environ.get("DOCKET_DEBUG", "").strip() == "0")
# Debug pages show settings and the URL map to whoever triggers an error: never the default.
DEBUG = env_bool("DOCKET_DEBUG", False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured(
        "DOCKET_DEBUG=1 is for development; it cannot be combined with DOCKET_PRODUCTION=1."
    )

if PRODUCTION:
    SECRET_KEY = os.environ.get("SECRET_KEY", "")
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
    if not SECRET_KEY:
        raise ImproperlyConfigured("SECRET_KEY must be set when DOCKET_PRODUCTION=1.")
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured(
            "ALLOWED_HOSTS must be set when DOCKET_PRODUCTION=1 (a comma-separated list)."
        )
else:
    SECRET_KEY = os.environ.get("SECRET_KEY") or generated_key("secret-key")
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS") or ["127.0.0.1", "localhost", "[::1]", "testserver"]

CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "django_q",
    "axes",
    "evals",
    "offline_judge",
    "dashboard",
    # The API's docs page: django-ninja's bundled Swagger UI, served from static files (no CDN).
    "ninja",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files straight from gunicorn: after SecurityMiddleware (HTTPS redirect, HSTS), before the rest.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before anything reads the query string: PostgreSQL text cannot hold NUL.
    "dashboard.http.StripNulMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every view needs a login unless it is marked @login_not_required (login page, judge API, share links).
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # The Content-Security-Policy header (CONTENT_SECURITY_POLICY below).
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "dashboard.urls"
WSGI_APPLICATION = "dashboard.wsgi.application"

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
                "dashboard.context_processors.docket",
            ],
            "builtins": ["django.contrib.humanize.templatetags.humanize"],
        },
    },
]

# Database: SQLite under var/ unless DATABASE_URL names another (PostgreSQL for a team server).
DATABASE_URL = os.environ.get("DATABASE_URL", "") or f"sqlite:///{VAR_DIR / 'docket.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
sqlite = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
if sqlite:
    DATABASES["default"].update(
        {
            "CONN_MAX_AGE": 0,
            # With DEFERRED transactions, several processes that read then write fail at once with
            # "database is locked"; WAL + IMMEDIATE measured 0 such errors where the default gave 115.
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    )
# One test database per test process, so two test runs on one machine never share one. For SQLite a
# file, not memory: tests that start a real qcluster process must share it.
DATABASES["default"]["TEST"] = {
    "NAME": (
        str(VAR_DIR / f"test-{os.getpid()}.sqlite3")
        if sqlite
        else f"test_{DATABASES['default']['NAME']}_{os.getpid()}"
    )
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
# The task broker: "orm" (the database, no extra server) or "redis" (faster; can drop a task when a
# worker dies, which the watchdog heals). Redis is the default when REDIS_URL is set.
DOCKET_BROKER = os.environ.get("DOCKET_BROKER", "redis" if REDIS_URL else "orm")
if DOCKET_BROKER not in {"orm", "redis"}:
    raise ImproperlyConfigured("DOCKET_BROKER must be 'orm' or 'redis'.")
if DOCKET_BROKER == "redis" and not REDIS_URL:
    raise ImproperlyConfigured("DOCKET_BROKER=redis needs REDIS_URL.")

if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

DOCKET_WORKERS = env_int("DOCKET_WORKERS", 2)
Q_CLUSTER: dict[str, object] = {
    # Also the Redis queue's key: two Dockets sharing one Redis need two names.
    "name": os.environ.get("DOCKET_QUEUE_NAME", "docket"),
    "workers": DOCKET_WORKERS,
    # A task may run this long; the pump keeps each slice far below it and re-enqueues itself.
    "timeout": 300,
    # Must exceed timeout plus queue wait, or the ORM broker hands a running task out again.
    "retry": 420,
    "max_attempts": 3,
    "queue_limit": DOCKET_WORKERS * 2,
    "bulk": 1,
    "catch_up": False,
    "save_limit": 500,
    "ack_failures": True,
    "poll": 0.5,
    "label": "Tasks",
    # Tests run tasks in the caller (django-q2 reads this once, at import).
    "sync": env_bool("DOCKET_Q_SYNC", False),
}
if DOCKET_BROKER == "redis":
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# The judge API. With a Scorable key Docket talks to Scorable; without one, to the offline judge that
# this same web process serves under /judge-api/.
DOCKET_PORT = env_int("DOCKET_PORT", 8000)
OFFLINE_JUDGE_FAULTS = os.environ.get("OFFLINE_JUDGE_FAULTS", "")
SCORABLE_API_KEY = os.environ.get("SCORABLE_API_KEY", "")
# Served only when Docket needs it (no Scorable key), unless asked for.
OFFLINE_JUDGE_ENABLED = env_bool("OFFLINE_JUDGE_ENABLED", not SCORABLE_API_KEY)
# The key the offline judge wants, which Docket also sends when the offline judge is its judge API.
# With Scorable as the judge and no offline judge served, no key is needed and none is generated.
OFFLINE_JUDGE_API_KEY = os.environ.get("OFFLINE_JUDGE_API_KEY") or (
    generated_key("offline-judge-api-key") if OFFLINE_JUDGE_ENABLED or not SCORABLE_API_KEY else ""
)
if SCORABLE_API_KEY:
    JUDGE_API_SOURCE = "scorable"
    JUDGE_API_URL = os.environ.get("SCORABLE_API_URL", "https://api.scorable.ai")
    JUDGE_API_KEY = SCORABLE_API_KEY
else:
    JUDGE_API_SOURCE = "offline"
    JUDGE_API_URL = os.environ.get("OFFLINE_JUDGE_URL", f"http://127.0.0.1:{DOCKET_PORT}/judge-api")
    JUDGE_API_KEY = OFFLINE_JUDGE_API_KEY
# Every path Docket sends starts with /v1/, and Scorable's own CLI wants the URL with /v1: take either
# spelling, and keep the one normal form (evals.client.judge_api_root) that judges store and runs compare.
JUDGE_API_URL = re.sub(r"(?i)(/v1)?/*$", "", JUDGE_API_URL.strip())
JUDGE_API_TIMEOUT = env_float("JUDGE_API_TIMEOUT", 30.0)

# The pump: the background loop that submits remote batches and polls them.
# How many pumps may run at once (each one works every run, through a pool of HTTP threads).
DOCKET_PUMP_SLOTS = env_int("DOCKET_PUMP_SLOTS", 1)
# A pump works this long, then hands over to a fresh task (well under Q_CLUSTER["timeout"]).
DOCKET_PUMP_SLICE_SECONDS = env_float("DOCKET_PUMP_SLICE_SECONDS", 120.0)
# The judge API project that receives batches and logs ("" = each judge's own); a run may override it.
SCORABLE_PROJECT_ID = os.environ.get("SCORABLE_PROJECT_ID", "").strip()
# A spending cap every new run gets unless its form says otherwise (unset: no cap).
DOCKET_DEFAULT_MAX_COST: float | None = env_float("DOCKET_DEFAULT_MAX_COST", 0.0) or None
DOCKET_MAX_IN_FLIGHT_PER_RUN = env_int("DOCKET_MAX_IN_FLIGHT_PER_RUN", 10)
DOCKET_MAX_IN_FLIGHT = env_int("DOCKET_MAX_IN_FLIGHT", 40)
DOCKET_HTTP_CONCURRENCY = env_int("DOCKET_HTTP_CONCURRENCY", 8)
DOCKET_POLL_MIN_SECONDS = env_float("DOCKET_POLL_MIN_SECONDS", 1.0)
DOCKET_POLL_MAX_SECONDS = env_float("DOCKET_POLL_MAX_SECONDS", 10.0)
DOCKET_BACKOFF_MAX_SECONDS = env_float("DOCKET_BACKOFF_MAX_SECONDS", 60.0)
# Consecutive failures after which a batch is given up (its items fail with the last error).
DOCKET_MAX_CREATE_ATTEMPTS = env_int("DOCKET_MAX_CREATE_ATTEMPTS", 10)
DOCKET_MAX_POLL_ATTEMPTS = env_int("DOCKET_MAX_POLL_ATTEMPTS", 30)

# Uploads: nothing in Django caps a file's size, so Docket checks these itself.
DOCKET_MAX_UPLOAD_BYTES = env_int("DOCKET_MAX_UPLOAD_BYTES", 500 * 1024 * 1024)
DOCKET_MAX_ROWS = env_int("DOCKET_MAX_ROWS", 1_000_000)
# Files up to both of these are checked and imported in the request; larger ones in a background task.
# An .xlsx is compressed and slow to parse, so its byte threshold is a fifth of this one.
DOCKET_INLINE_IMPORT_MAX_BYTES = env_int("DOCKET_INLINE_IMPORT_MAX_BYTES", 5 * 1024 * 1024)
DOCKET_INLINE_IMPORT_MAX_ROWS = env_int("DOCKET_INLINE_IMPORT_MAX_ROWS", 20_000)
# Reading limits, checked while a file streams so that no file costs more memory or time than these
# allow (issue 11). Rows counts blank ones too. Every refusal names its setting.
DOCKET_MAX_COLUMNS = env_int("DOCKET_MAX_COLUMNS", 2_000)
DOCKET_MAX_CELL_CHARS = env_int("DOCKET_MAX_CELL_CHARS", 16_000_000)
# One line of a CSV or JSON Lines file, one row's text across lines, one element of a JSON array.
DOCKET_MAX_LINE_CHARS = env_int("DOCKET_MAX_LINE_CHARS", 32_000_000)
DOCKET_MAX_JSON_DEPTH = env_int("DOCKET_MAX_JSON_DEPTH", 64)
# An .xlsx is a ZIP: the size its parts unpack to, each and all together (read from the ZIP directory).
DOCKET_MAX_XLSX_PART_BYTES = env_int("DOCKET_MAX_XLSX_PART_BYTES", 256 * 1024 * 1024)
DOCKET_MAX_XLSX_BYTES = env_int("DOCKET_MAX_XLSX_BYTES", 1024 * 1024 * 1024)
# Shared strings are held in memory while a sheet is read: this many at most.
DOCKET_MAX_XLSX_STRINGS = env_int("DOCKET_MAX_XLSX_STRINGS", 3_000_000)
FILE_UPLOAD_TEMP_DIR = VAR_DIR / "uploads"
# Retention: the watchdog deletes runs and datasets older than this many days (unset: keep everything).
# A dataset goes with its runs once it and its newest run are that old. See `manage.py purge`.
DOCKET_RETENTION_DAYS = env_int("DOCKET_RETENTION_DAYS", 0) or None
if DOCKET_RETENTION_DAYS is not None and DOCKET_RETENTION_DAYS < 0:
    raise ImproperlyConfigured("DOCKET_RETENTION_DAYS must be a number of days above 0 (or unset to keep).")

# Docket's own HTTP API (/api/v1/): requests per minute one token may make before it is answered 429.
DOCKET_API_RATE_PER_MINUTE = env_int("DOCKET_API_RATE_PER_MINUTE", 600)

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Failed logins: after AXES_FAILURE_LIMIT failures for one username from one address, that pair is
# locked out for the cool-off time.
AXES_FAILURE_LIMIT = env_int("DOCKET_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("DOCKET_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# collectstatic writes here (the container image does it at build time).
STATIC_ROOT = Path(os.environ.get("DOCKET_STATIC_ROOT") or BASE_DIR / "staticfiles")
# Production serves collected files with hashed names (cached for a year) and gzip copies. Under
# `make run`, in development and in tests WhiteNoise reads static/ as it is (DEBUG off or on), so no
# collectstatic step is ever needed there.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = not PRODUCTION

X_FRAME_OPTIONS = "DENY"
# Scripts only from Docket's own static files (no inline script, no eval: htmx is told so by the
# htmx-config meta tag in base.html), nothing framed, nothing posted elsewhere. Style attributes stay
# allowed (progress bars and charts set widths with them); style sheets come only from Docket.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = 14 * 24 * 3600

if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("DOCKET_SSL_REDIRECT", True)
    # Load balancers probe over plain HTTP. Docket's worker reaches the offline judge it serves at
    # http://127.0.0.1:<port>/judge-api (OFFLINE_JUDGE_URL): a redirect to https there broke every run.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^judge-api/"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("DOCKET_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DOCKET_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("DOCKET_HSTS_PRELOAD", True)
    if env_bool("DOCKET_BEHIND_PROXY", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"mask_share_tokens": {"()": "dashboard.logging.MaskShareTokens"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["mask_share_tokens"]},
    },
    "root": {"handlers": ["console"], "level": os.environ.get("DOCKET_LOG_LEVEL", "INFO")},
    "loggers": {
        # httpx logs every request URL at INFO; Docket logs its own judge API lines instead.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        # Route Django's own logs through the filtered handler. "django" replaces the handlers Django's
        # default logging puts there (an unfiltered "console" in DEBUG, and mail_admins), which printed
        # share tokens from e.g. django.security.csrf; tests/dashboard/test_logging.py checks every handler.
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.request": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
