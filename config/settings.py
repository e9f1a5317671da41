"""Django settings for Conveyor, read from the environment.

Defaults run on a laptop: an SQLite file under var/, Redis on localhost.
Every engine timing that tests need short is a setting here.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url

from config.env import (
    ImproperEnvironment,
    env_bool,
    env_float,
    env_header,
    env_int,
    env_list,
    env_rate,
    env_str,
)
from config.file_storage import default_file_storage
from config.modes import PRODUCTION, development_secret_key, read_mode, refuse_unsafe_production
from jobs.core.redis_connection import channel_layer_host, parse_sentinels

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("CONVEYOR_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# --- Mode (config/modes.py): development (the default) or production ------
# Production refuses unsafe settings at the end of this file, once every
# section has read its variables.
CONVEYOR_ENV = read_mode()
_PRODUCTION = CONVEYOR_ENV == PRODUCTION
# Development without SECRET_KEY: a key generated once and kept in VAR_DIR (mode 0600).
SECRET_KEY = env_str("SECRET_KEY", "") or ("" if _PRODUCTION else development_secret_key(VAR_DIR))
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if _PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"])
# Origins (scheme and host) a form may be posted from besides this host, e.g. https://conveyor.example.com.
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# HTTPS: on by default in production, where a TLS proxy is in front; off in
# development, which is plain http://localhost.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", _PRODUCTION)
# Probes and Prometheus reach these over plain HTTP from inside the network.
# (Django matches the path without its leading slash.)
SECURE_REDIRECT_EXEMPT = [r"^workers/health$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if _PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", _PRODUCTION)
# Preload puts the domain into browsers' built-in lists, which takes months to
# undo: an operator opts in knowingly (SECURE_HSTS_PRELOAD=true).
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", _PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", _PRODUCTION)
# Unset by default in both modes: uvicorn already takes the scheme from
# X-Forwarded-Proto, but only from FORWARDED_ALLOW_IPS (jobs/ops/supervisor.py).
# This setting would make Django believe the header from any client that
# reaches uvicorn directly; set it (X-Forwarded-Proto=https) only when the
# proxy is the sole way in and the server runs without --proxy-headers.
SECURE_PROXY_SSL_HEADER = env_header("SECURE_PROXY_SSL_HEADER")
SILENCED_SYSTEM_CHECKS = [
    # security.W021: HSTS preload is off on purpose (see SECURE_HSTS_PRELOAD).
    "security.W021",
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    # API tokens: digests, expiry, revocable per device (jobs/web/credentials.py).
    "knox",
    # Sign-in lockout per username and address (jobs/web/lockout.py).
    "axes",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc as static files of this host
    "django_dramatiq",
    "django_apscheduler",
    "jobs",
    "documents",
    "campaigns",
    "exports",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a sign-in form that django-axes refused into its 429 page.
    "axes.middleware.AxesMiddleware",
]

# --- Sign-in: passwords, lockout, API tokens --------------------------------
# django-axes first: it refuses a locked-out username and address before any password is checked.
AUTHENTICATION_BACKENDS = [
    "jobs.web.lockout.RequestLockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# After this many failed sign-ins of one username from one address (admin, /accounts/login/,
# POST /api/auth/token), that pair is refused (429) for AXES_COOLOFF_MINUTES; the same username
# from any other address still signs in. A failure during the lockout starts the wait again.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 10)
AXES_COOLOFF_MINUTES = env_float("AXES_COOLOFF_MINUTES", 15.0)
AXES_COOLOFF_TIME = timedelta(minutes=AXES_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "jobs.web.lockout.lockout_page"
# Its start-up banner would open every process's log; lockouts are still logged.
AXES_VERBOSE = False
# API tokens (django-rest-knox) expire this many hours after they are issued; each sign-in
# (POST /api/auth/token, manage.py create_token) issues a new one. Not refreshed on use: that
# would write to the database on every request.
API_TOKEN_TTL_HOURS = env_float("API_TOKEN_TTL_HOURS", 24 * 30)
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=API_TOKEN_TTL_HOURS),
    "AUTO_REFRESH": False,
    "AUTH_HEADER_PREFIX": "Token",
}

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

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

# --- Database -------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'conveyor.sqlite3'}")
CONN_MAX_AGE = env_int("CONN_MAX_AGE", 300)
_default_db = dj_database_url.parse(DATABASE_URL, conn_max_age=CONN_MAX_AGE, conn_health_checks=True)
if _default_db["ENGINE"] == "django.db.backends.sqlite3":
    # Several worker threads write job state at once: without IMMEDIATE
    # transactions and a busy timeout SQLite answers "database is locked".
    _default_db["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    _default_db["CONN_MAX_AGE"] = 0
elif _default_db["ENGINE"] == "django.db.backends.postgresql" and env_bool("DB_PREPARED_STATEMENTS", True):
    # Django turns psycopg's prepared statements off (for transaction-mode
    # poolers). Its own cursors bind on the client and never prepare anyway;
    # the hot statements (the state writer's batch, a campaign's per-message
    # mark-and-claim) go to psycopg cursors and ask to be prepared: without
    # this, PostgreSQL parsed and planned each of them on every run. Set
    # DB_PREPARED_STATEMENTS=false behind a pooler that cannot keep them
    # (PgBouncer in transaction mode before 1.21).
    _default_db.setdefault("OPTIONS", {})["prepare_threshold"] = 5
DATABASES = {"default": _default_db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Connections the processes of every host together may hold (keep it within
# PostgreSQL's max_connections); each host's runconveyor prints its own share.
DB_CONNECTION_BUDGET = env_int("DB_CONNECTION_BUDGET", 80)

# --- Redis and Dramatiq -----------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# Redis Sentinel: with REDIS_SENTINELS (host:port, comma-separated) every
# client asks these sentinels for the primary of REDIS_SENTINEL_MASTER and
# follows a failover; REDIS_URL then gives only the database number and
# password (jobs/core/redis_connection.py).
REDIS_SENTINELS = parse_sentinels(env_str("REDIS_SENTINELS", ""))
REDIS_SENTINEL_MASTER = env_str("REDIS_SENTINEL_MASTER", "")
REDIS_SENTINEL_PASSWORD = env_str("REDIS_SENTINEL_PASSWORD", "")
if REDIS_SENTINELS and not REDIS_SENTINEL_MASTER:
    raise ImproperEnvironment("REDIS_SENTINEL_MASTER must name the master when REDIS_SENTINELS is set")
# Key prefix of every Dramatiq key; tests use their own so that a running
# `make run` on the same Redis never eats their messages.
DRAMATIQ_NAMESPACE = env_str("DRAMATIQ_NAMESPACE", "conveyor")
# Milliseconds without a heartbeat after which a worker counts as dead and
# its unacknowledged messages are requeued.
DRAMATIQ_HEARTBEAT_TIMEOUT_MS = env_int("DRAMATIQ_HEARTBEAT_TIMEOUT_MS", 60_000)
# How often a consumer writes its heartbeat even while every slot is busy.
DRAMATIQ_HEARTBEAT_INTERVAL_MS = env_int("DRAMATIQ_HEARTBEAT_INTERVAL_MS", 5_000)
# Chance (per million broker commands) of running the maintenance that
# requeues dead workers' messages; consumers also run it on a timer.
DRAMATIQ_MAINTENANCE_CHANCE = env_int("DRAMATIQ_MAINTENANCE_CHANCE", 1000)
DRAMATIQ_MAINTENANCE_INTERVAL_MS = env_int("DRAMATIQ_MAINTENANCE_INTERVAL_MS", 15_000)
JOBS_RETRY_BACKOFF_MIN_MS = env_int("JOBS_RETRY_BACKOFF_MIN_MS", 5_000)
JOBS_RETRY_BACKOFF_MAX_MS = env_int("JOBS_RETRY_BACKOFF_MAX_MS", 300_000)
WORKER_SHUTDOWN_GRACE_S = env_float("WORKER_SHUTDOWN_GRACE_S", 25.0)
# A queued job whose message is in no Redis structure for this long is sent again.
JOBS_RECONCILE_GRACE_S = env_float("JOBS_RECONCILE_GRACE_S", 30.0)
# A waiting job whose message a live worker fetched this long ago without claiming it is sent again.
JOBS_STRANDED_AFTER_S = env_float("JOBS_STRANDED_AFTER_S", 120.0)
JOBS_RECONCILE_INTERVAL_S = env_float("JOBS_RECONCILE_INTERVAL_S", 10.0)
# Jobs due further ahead than this stay in the database until they are due.
JOBS_DELAY_HORIZON_S = env_float("JOBS_DELAY_HORIZON_S", 60.0)
JOBS_PROGRESS_MIN_INTERVAL_S = env_float("JOBS_PROGRESS_MIN_INTERVAL_S", 0.5)
JOBS_WATCHDOG_INTERVAL_S = env_float("JOBS_WATCHDOG_INTERVAL_S", 0.5)
# Threads (and database connections) per worker process writing job states in batches.
JOBS_STATE_WRITER_THREADS = env_int("JOBS_STATE_WRITER_THREADS", 1)
# How long a worker keeps retrying its job state writes while the database is unreachable.
JOBS_STATE_WRITE_RETRY_S = env_float("JOBS_STATE_WRITE_RETRY_S", 300.0)
# GIL switch interval inside worker processes (Python's default is 0.005).
WORKER_GIL_SWITCH_INTERVAL_S = env_float("WORKER_GIL_SWITCH_INTERVAL_S", 0.0005)
JOBS_IDEMPOTENCY_TTL_S = env_int("JOBS_IDEMPOTENCY_TTL_S", 24 * 3600)
# Backpressure (jobs/dispatch/backpressure.py): a customer's request is refused (429) while that owner
# has this many jobs of the type waiting; JOBS_MAX_WAITING_PER_OWNER_<TYPE> overrides it for one type,
# QUEUE_<QUEUE>_MAX_BACKLOG (default 10000) is each queue's ceiling for deferrable types (503). 0: off.
JOBS_MAX_WAITING_PER_OWNER = env_int("JOBS_MAX_WAITING_PER_OWNER", 1000)
# Fair dispatch (jobs/worker/fairqueue.py): an owner that starts waiting on a busy queue is served first
# for this many seconds of its own estimated work (divided by its weight), then in turn.
FAIR_SHARE_IDLE_CREDIT_S = env_float("FAIR_SHARE_IDLE_CREDIT_S", 60.0)
JOBS_BACKPRESSURE_RETRY_AFTER_S = env_int("JOBS_BACKPRESSURE_RETRY_AFTER_S", 30)
JOBS_ERROR_MAX_CHARS = env_int("JOBS_ERROR_MAX_CHARS", 2_000)
JOBS_TRACEBACK_MAX_CHARS = env_int("JOBS_TRACEBACK_MAX_CHARS", 20_000)

# --- Live progress (WebSocket) ----------------------------------------------
# Job status and progress events go to WebSocket clients through Redis pub/sub
# (channels_redis' pub/sub layer; one host). The prefix carries the namespace:
# pub/sub channels ignore the Redis database number, so tests and `make run`
# on one Redis must differ here.
JOBS_LIVE_EVENTS = env_bool("JOBS_LIVE_EVENTS", True)
# How stale a process's knowledge of which groups have a live subscriber may
# be (events for groups nobody listens to are not published); a new socket
# waits this long before reading its snapshot.
JOBS_LIVE_DISCOVERY_S = env_float("JOBS_LIVE_DISCOVERY_S", 0.2)
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {
            "hosts": [channel_layer_host(REDIS_URL, REDIS_SENTINELS, REDIS_SENTINEL_MASTER, REDIS_SENTINEL_PASSWORD)],
            "prefix": f"{DRAMATIQ_NAMESPACE}:live",
        },
    }
}

DRAMATIQ_BROKER = {
    "BROKER": "jobs.worker.broker.ConveyorRedisBroker",
    "OPTIONS": {
        "url": REDIS_URL,
        "namespace": DRAMATIQ_NAMESPACE,
        "heartbeat_timeout": DRAMATIQ_HEARTBEAT_TIMEOUT_MS,
        "maintenance_chance": DRAMATIQ_MAINTENANCE_CHANCE,
    },
    # The platform's own middleware (the job mirror, the watchdog, presence,
    # Sentry tags) is added after these once the apps are loaded
    # (``jobs.worker.middleware.stack``): it works on the job tables, which
    # cannot be imported while django_dramatiq builds the broker.
    "MIDDLEWARE": [
        "django_dramatiq.middleware.DbConnectionsMiddleware",
    ],
}
DRAMATIQ_TASKS_DATABASE = "default"
DRAMATIQ_AUTODISCOVER_MODULES = ["tasks"]

# --- Files ----------------------------------------------------------------
# Uploaded documents, thumbnails and exports go through Django's "default" storage: the
# local file system under MEDIA_ROOT, or S3-compatible object storage that every host
# shares when AWS_STORAGE_BUCKET_NAME is set (AWS_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY, AWS_S3_REGION_NAME: django-storages' own names; config/file_storage.py).
FILE_STORAGE = default_file_storage(os.environ)
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
# Where `collectstatic` writes and the web server reads (config/static_files.py serves it).
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
# Browser cache of static files without a hash in their name; hashed names are cached for ten years.
STATIC_MAX_AGE = env_int("STATIC_MAX_AGE", 60)
# Static files: collectstatic gives each file a content-hashed name, a gzip twin (and a
# Brotli one when the brotli package is installed) and a manifest; {% static %} links the
# hashed names. It fails without a manifest, so collectstatic runs before the web server
# (`make run`, the image); the test settings use plain storage.
STORAGES = {
    "default": FILE_STORAGE,
    "staticfiles": {"BACKEND": "servestatic.storage.CompressedManifestStaticFilesStorage"},
}

# --- API ------------------------------------------------------------------
# Request bodies over this size get 413 before they are read (config/body_limits.py);
# multipart uploads to POST /api/documents are capped by DOCUMENT_MAX_UPLOAD_MB instead.
REQUEST_MAX_BODY_MB = env_int("REQUEST_MAX_BODY_MB", 1)
REQUEST_MAX_BODY_BYTES = env_int("REQUEST_MAX_BODY_BYTES", REQUEST_MAX_BODY_MB * 1024 * 1024)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "jobs.web.credentials.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "jobs.web.api.errors.json_exception_handler",
    # jobs/web/api/throttles.py: "<n>/<second|minute|hour|day>", or "off".
    "DEFAULT_THROTTLE_RATES": {
        "login-address": env_rate("THROTTLE_LOGIN_ADDRESS", "30/minute"),
        "login-username": env_rate("THROTTLE_LOGIN_USERNAME", "10/minute"),
        "job-start": env_rate("THROTTLE_JOB_START", "600/minute"),
        "upload": env_rate("THROTTLE_UPLOAD", "60/minute"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Conveyor API",
    "DESCRIPTION": "Background jobs for documents, campaigns and exports.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Two models have a `status` field: named enums instead of hashed names
    # (Status88aEnum), and no drf_spectacular.W001 in `check --deploy --fail-level WARNING`.
    "ENUM_NAME_OVERRIDES": {
        "DocumentStatusEnum": "documents.models.DocumentStatus",
        "JobStatusEnum": "jobs.public.JobStatus",
    },
    # Swagger UI and Redoc from drf-spectacular-sidecar's static files: no CDN, works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No badge fetched from swagger.io's online validator: nothing leaves the host.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    # The 413 that config.body_limits answers before Django reads a body.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.body_limits.schema_payload_too_large",
    ],
}

# --- Email (Django's own names) ------------------------------------------
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = env_int("EMAIL_PORT", 1025)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "conveyor@localhost")

# --- exports ---
# Peak resident memory (MB) of the process writing one export; over it the export fails.
EXPORT_MEMORY_CEILING_MB = env_int("EXPORT_MEMORY_CEILING_MB", 256)
# Days a finished export's file is kept before the monthly cleanup deletes it.
EXPORT_EXPIRY_DAYS = env_int("EXPORT_EXPIRY_DAYS", 7)
# Rows read per round trip when rows are not streamed by COPY (Excel, SQLite).
EXPORT_CHUNK_ROWS = env_int("EXPORT_CHUNK_ROWS", 1000)
# The weekly analytics email to staff carries the CSV when it is at most this many KB (0: never);
# a larger file is linked (its admin page) instead, so the email stays within mail servers' limits.
WEEKLY_ANALYTICS_ATTACH_MAX_KB = env_int("WEEKLY_ANALYTICS_ATTACH_MAX_KB", 5 * 1024)

# --- campaigns ---------------------------------------------------------------
# The provider's limit: at most this many emails in any window of
# EMAIL_RATE_LIMIT_WINDOW_S seconds, across every worker (0 turns it off).
EMAIL_RATE_LIMIT_PER_MINUTE = env_int("EMAIL_RATE_LIMIT_PER_MINUTE", 100)
EMAIL_RATE_LIMIT_WINDOW_S = env_float("EMAIL_RATE_LIMIT_WINDOW_S", 60.0)
# Added to the window kept in Redis: covers the time between a permit and the
# server receiving the message, so the provider never counts more than the limit.
EMAIL_RATE_LIMIT_GUARD_S = env_float("EMAIL_RATE_LIMIT_GUARD_S", 1.0)
# A batch waits in its thread for a permit this long at most; longer, it is rescheduled.
EMAIL_RATE_LIMIT_MAX_WAIT_S = env_float("EMAIL_RATE_LIMIT_MAX_WAIT_S", 2.0)
EMAIL_RATE_LIMIT_REDIS_URL = env_str("EMAIL_RATE_LIMIT_REDIS_URL", "")
# SMTP connections open at once across every worker, and their lease.
EMAIL_MAX_CONNECTIONS = env_int("EMAIL_MAX_CONNECTIONS", 5)
EMAIL_CONNECTION_LEASE_S = env_float("EMAIL_CONNECTION_LEASE_S", 60.0)
EMAIL_CONNECTION_RETRY_S = env_float("EMAIL_CONNECTION_RETRY_S", 2.0)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30)
EMAIL_BATCH_SIZE = env_int("EMAIL_BATCH_SIZE", 50)
EMAIL_MAX_ATTEMPTS_PER_RECIPIENT = env_int("EMAIL_MAX_ATTEMPTS_PER_RECIPIENT", 3)
# After a 4xx answer, the batch tries those recipients again this much later.
EMAIL_TEMPORARY_RETRY_DELAY_S = env_float("EMAIL_TEMPORARY_RETRY_DELAY_S", 60.0)
EMAIL_PROGRESS_INTERVAL_S = env_float("EMAIL_PROGRESS_INTERVAL_S", 0.5)
# A batch that took its job over from a run whose worker stopped heartbeating sends the
# rows that run left "sending" (in doubt: maybe handed to the server) only once this long
# has passed since it first saw them, and the worker is still silent: an earlier run that
# was only frozen records them itself when it wakes (campaigns.deliveries).
EMAIL_IN_DOUBT_GRACE_S = env_float("EMAIL_IN_DOUBT_GRACE_S", 2 * DRAMATIQ_HEARTBEAT_TIMEOUT_MS / 1000)
# Delivery status writes (one per message) commit without waiting for the disk flush
# (PostgreSQL's synchronous_commit=off for that connection): a killed worker loses none
# of them; only a crash of PostgreSQL itself can lose the last ~0.6 s of them, whose
# messages would then be sent again. False: every status write waits for the flush.
EMAIL_DELIVERY_ASYNC_COMMIT = env_bool("EMAIL_DELIVERY_ASYNC_COMMIT", True)
# One render of an email template (subject and bodies together) stops, failing that
# delivery or refusing the template at save, past any of these: loop iterations in all,
# characters of output (also the largest value a filter may make), seconds.
EMAIL_TEMPLATE_MAX_LOOP_ITERATIONS = env_int("EMAIL_TEMPLATE_MAX_LOOP_ITERATIONS", 10_000)
EMAIL_TEMPLATE_MAX_OUTPUT_KB = env_int("EMAIL_TEMPLATE_MAX_OUTPUT_KB", 512)
EMAIL_TEMPLATE_RENDER_TIMEOUT_S = env_float("EMAIL_TEMPLATE_RENDER_TIMEOUT_S", 1.0)
# The name templates show as {{ site.name }}.
SITE_NAME = env_str("SITE_NAME", "Conveyor")
# The daily digest goes to users who logged in or started a job within this many days.
DIGEST_ACTIVE_DAYS = env_int("DIGEST_ACTIVE_DAYS", 30)

# --- documents ---
# Uploads over this size are refused with 413.
DOCUMENT_MAX_UPLOAD_MB = env_int("DOCUMENT_MAX_UPLOAD_MB", 200)
DOCUMENT_MAX_UPLOAD_BYTES = env_int("DOCUMENT_MAX_UPLOAD_BYTES", DOCUMENT_MAX_UPLOAD_MB * 1024 * 1024)
# Limits of each pdftoppm / pdftotext / tesseract child: address space, CPU seconds, wall time.
DOCUMENT_CHILD_MEMORY_MB = env_int("DOCUMENT_CHILD_MEMORY_MB", 1024)
DOCUMENT_CHILD_CPU_S = env_int("DOCUMENT_CHILD_CPU_S", 120)
DOCUMENT_CHILD_TIMEOUT_S = env_float("DOCUMENT_CHILD_TIMEOUT_S", 180.0)
# A page (at OCR_DPI) or an embedded image over this many pixels is refused before rendering.
DOCUMENT_MAX_PAGE_PIXELS = env_int("DOCUMENT_MAX_PAGE_PIXELS", 80_000_000)
# A PDF with more pages is refused at upload (400 naming `file`) and by OCR.
DOCUMENT_MAX_PAGES = env_int("DOCUMENT_MAX_PAGES", 2000)
# A page's text layer (pdftotext) is cut after this many KB. Dense print is ~10 KB a page; a
# crafted font (one glyph, many characters) made a 51 KB PDF page give 2.9 MB of text.
OCR_TEXT_LAYER_MAX_KB = env_int("OCR_TEXT_LAYER_MAX_KB", 64)
OCR_DPI = env_int("OCR_DPI", 300)
OCR_LANGUAGE = env_str("OCR_LANGUAGE", "eng")
# Pages per page-range child job (each must finish within the queue's time limit).
OCR_PAGES_PER_CHILD = env_int("OCR_PAGES_PER_CHILD", 50)
# Pages rendered at a time: memory stays flat whatever the page count.
OCR_BATCH_PAGES = env_int("OCR_BATCH_PAGES", 10)
# Tries of one page before it is recorded as failed (the document still completes).
OCR_PAGE_ATTEMPTS = env_int("OCR_PAGE_ATTEMPTS", 3)
# A page whose text layer has fewer letters and digits than this is OCRed.
OCR_MIN_TEXT_LAYER_CHARS = env_int("OCR_MIN_TEXT_LAYER_CHARS", 16)
THUMBNAIL_SIZES = [int(size) for size in env_list("THUMBNAIL_SIZES", ["150", "300", "600"])]
THUMBNAIL_FORMAT = env_str("THUMBNAIL_FORMAT", "png")
# Thumbnail maintenance walks the documents by id in batches of this many rows (one cursor
# advance, and the thumbnails jobs for the batch's missing ones, per transaction) ...
THUMBNAIL_MAINTENANCE_BATCH = env_int("THUMBNAIL_MAINTENANCE_BATCH", 2000)
# ... and a run starts no batch after this many seconds: it hands the rest of the walk to a
# new job. Keep it well under the thumbnails queue's time limit (60 s).
THUMBNAIL_MAINTENANCE_RUN_BUDGET_S = env_float("THUMBNAIL_MAINTENANCE_RUN_BUDGET_S", 20.0)
# Documents younger than this are left to the thumbnails job their upload started.
THUMBNAIL_MAINTENANCE_MIN_AGE_S = env_int("THUMBNAIL_MAINTENANCE_MIN_AGE_S", 3600)

# --- scheduling ---
# How often each scheduler process re-reads the Schedule table (admin edits apply within this).
SCHEDULER_REFRESH_S = env_float("SCHEDULER_REFRESH_S", 15.0)
# Default grace of a new schedule: a fire time missed by less than this runs once when a scheduler is back.
SCHEDULER_MISFIRE_GRACE_S = env_int("SCHEDULER_MISFIRE_GRACE_S", 3600)
# Threads that claim and enqueue fires in each scheduler process (each holds a DB connection).
SCHEDULER_THREADS = env_int("SCHEDULER_THREADS", 2)
# Each scheduler process beats in Redis this often; /workers/health counts it live while its last
# beat is younger than SCHEDULER_ALIVE_HEARTBEAT_S (and answers 503 when none is).
SCHEDULER_HEARTBEAT_INTERVAL_S = env_float("SCHEDULER_HEARTBEAT_INTERVAL_S", 5.0)
SCHEDULER_ALIVE_HEARTBEAT_S = env_float("SCHEDULER_ALIVE_HEARTBEAT_S", 30.0)
# The monthly cleanup deletes completed, failed and cancelled jobs finished this many days ago.
JOBS_RETENTION_DAYS = env_int("JOBS_RETENTION_DAYS", 30)
# Top-level jobs per batch of the cleanup: each batch (its children and attempts cascade) is one
# short transaction, so no row lock is held long (bench/scale.py measures the longest batch).
JOBS_CLEANUP_BATCH = env_int("JOBS_CLEANUP_BATCH", 250)

# --- Console (the admin's queue overview) ---
# How often the scheduler rolls finished jobs up into hourly statistics (the console reads those).
JOBS_STATS_ROLLUP_INTERVAL_S = env_float("JOBS_STATS_ROLLUP_INTERVAL_S", 60.0)
# On its first run the roll-up counts this many past hours (the console charts a week).
JOBS_STATS_BACKFILL_HOURS = env_int("JOBS_STATS_BACKFILL_HOURS", 8 * 24)
# The job list's text search reads the errors of failed jobs created within this many days (and of
# jobs retrying now; ids at any age). See jobs/web/admin/search.py.
JOBS_SEARCH_RECENT_DAYS = env_int("JOBS_SEARCH_RECENT_DAYS", 7)

# --- Operations: health, metrics, alerts, Sentry ---------------------------
# A worker counts as alive when it heartbeated within N seconds...
WORKER_ALIVE_HEARTBEAT_S = env_float("WORKER_ALIVE_HEARTBEAT_S", DRAMATIQ_HEARTBEAT_TIMEOUT_MS / 1000)
# ...and is still consuming: its queue's canary was picked up within M seconds (the scheduler
# sends one a minute), or every slot runs a job that reported progress within M seconds.
WORKER_CONSUMING_WITHIN_S = env_float("WORKER_CONSUMING_WITHIN_S", 150.0)
# /workers/health answers from a report at most this old (s), kept in each web process: probes
# every few hundred ms from several balancers cost one report per process per interval.
HEALTH_CACHE_S = env_float("HEALTH_CACHE_S", 1.0)
if not 0 <= HEALTH_CACHE_S <= 1:
    raise ImproperEnvironment(f"HEALTH_CACHE_S must be between 0 and 1 (s), got {HEALTH_CACHE_S}")
# Bearer token of GET /metrics; unset, the endpoint answers 404.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
SLACK_WEBHOOK_URL = env_str("SLACK_WEBHOOK_URL", "")
PAGER_WEBHOOK_URL = env_str("PAGER_WEBHOOK_URL", "")
ALERTS_EVALUATE_INTERVAL_S = env_float("ALERTS_EVALUATE_INTERVAL_S", 60.0)
# Tries of one webhook post per evaluation (with a short backoff); an undelivered message is
# tried again at the next evaluations, up to ALERT_NOTIFY_MAX_EVALUATIONS of them.
ALERT_WEBHOOK_ATTEMPTS = env_int("ALERT_WEBHOOK_ATTEMPTS", 3)
ALERT_WEBHOOK_BACKOFF_S = env_float("ALERT_WEBHOOK_BACKOFF_S", 0.5)
ALERT_WEBHOOK_TIMEOUT_S = env_float("ALERT_WEBHOOK_TIMEOUT_S", 5.0)
ALERT_NOTIFY_MAX_EVALUATIONS = env_int("ALERT_NOTIFY_MAX_EVALUATIONS", 30)
# Each rule: a threshold, and how long (s) it must hold before the alert fires.
ALERT_BACKLOG_THRESHOLD = env_float("ALERT_BACKLOG_THRESHOLD", 100)
ALERT_BACKLOG_FOR_S = env_float("ALERT_BACKLOG_FOR_S", 600)
ALERT_FAILURE_RATE_THRESHOLD = env_float("ALERT_FAILURE_RATE_THRESHOLD", 0.05)
ALERT_FAILURE_RATE_FOR_S = env_float("ALERT_FAILURE_RATE_FOR_S", 0)
ALERT_FAILURE_RATE_WINDOW_S = env_float("ALERT_FAILURE_RATE_WINDOW_S", 3600)
# Fewer finished jobs than this in the window: no failure rate is computed (1 of 1 is not 100 %).
ALERT_FAILURE_RATE_MIN_JOBS = env_int("ALERT_FAILURE_RATE_MIN_JOBS", 20)
ALERT_NO_WORKER_THRESHOLD = env_float("ALERT_NO_WORKER_THRESHOLD", 1)
ALERT_NO_WORKER_FOR_S = env_float("ALERT_NO_WORKER_FOR_S", 300)
# A worker (or scheduler) process silent this many seconds, without the goodbye of a clean stop.
ALERT_WORKER_OFFLINE_THRESHOLD = env_float("ALERT_WORKER_OFFLINE_THRESHOLD", 300)
ALERT_WORKER_OFFLINE_FOR_S = env_float("ALERT_WORKER_OFFLINE_FOR_S", 0)
ALERT_SCHEDULER_DOWN_THRESHOLD = env_float("ALERT_SCHEDULER_DOWN_THRESHOLD", 300)
ALERT_SCHEDULER_DOWN_FOR_S = env_float("ALERT_SCHEDULER_DOWN_FOR_S", 0)
# Presence entries (and goodbyes) of processes silent this long are forgotten; their alerts resolve.
PRESENCE_FORGET_S = env_float("PRESENCE_FORGET_S", 86400)
ALERT_REDIS_MEMORY_THRESHOLD = env_float("ALERT_REDIS_MEMORY_THRESHOLD", 0.8)
ALERT_REDIS_MEMORY_FOR_S = env_float("ALERT_REDIS_MEMORY_FOR_S", 0)
ALERT_OCR_DURATION_THRESHOLD = env_float("ALERT_OCR_DURATION_THRESHOLD", 600)
ALERT_OCR_DURATION_FOR_S = env_float("ALERT_OCR_DURATION_FOR_S", 0)
ALERT_EMAIL_RATE_THRESHOLD = env_float("ALERT_EMAIL_RATE_THRESHOLD", 80)
ALERT_EMAIL_RATE_FOR_S = env_float("ALERT_EMAIL_RATE_FOR_S", 300)
ALERT_EXPORT_TIMEOUT_THRESHOLD = env_float("ALERT_EXPORT_TIMEOUT_THRESHOLD", 1)
ALERT_EXPORT_TIMEOUT_FOR_S = env_float("ALERT_EXPORT_TIMEOUT_FOR_S", 0)
# Seconds one document's thumbnails may take (its own child job's run, not the batch's).
ALERT_THUMBNAILS_DURATION_THRESHOLD = env_float("ALERT_THUMBNAILS_DURATION_THRESHOLD", 120)
ALERT_THUMBNAILS_DURATION_FOR_S = env_float("ALERT_THUMBNAILS_DURATION_FOR_S", 0)
# Rules about single jobs (slow OCR, slow thumbnails, exports timed out) look back this far:
# the alert stays firing while an offending job finished within the window.
ALERT_JOB_LOOKBACK_S = env_float("ALERT_JOB_LOOKBACK_S", 900)
SENTRY_DSN = env_str("SENTRY_DSN", "")
SENTRY_ENVIRONMENT = env_str("SENTRY_ENVIRONMENT", "production")
if SENTRY_DSN:
    from jobs.worker.middleware.sentry_tags import init_sentry

    init_sentry(SENTRY_DSN, SENTRY_ENVIRONMENT)

# --- Misc -----------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
PORT = env_int("PORT", 8000)
# Where people reach this site (scheme, host, optional path; no trailing slash needed): the base
# of links that leave it, in emails and Slack (e.g. the weekly analytics export's admin page).
SITE_URL = env_str("SITE_URL", f"http://localhost:{PORT}").rstrip("/")

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# --- Production refusals (last: they read settings from every section) -----
if _PRODUCTION:
    refuse_unsafe_production(
        secret_key=SECRET_KEY,
        allowed_hosts=ALLOWED_HOSTS,
        database_url=env_str("DATABASE_URL", ""),
        database_engine=DATABASES["default"]["ENGINE"],
        metrics_token=METRICS_TOKEN,
        debug=DEBUG,
    )
