"""The Celery application: queues `align` (prefork, one process per core), `train` (one process)
and `predict`. Routing lives in settings.CELERY_TASK_ROUTES."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "curator.settings")

app = Celery("curator")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
