"""The Celery application: queues `align` (prefork, one process per core), `train` (one process)
and `predict`. Routing lives in settings.CELERY_TASK_ROUTES."""

import os

from celery import Celery
from celery.signals import celeryd_after_setup, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "curator.settings")

app = Celery("curator")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# Each pool process warms what its worker's queues need (curator/warmup.py). The queues are known
# in the parent after set-up; forked children inherit them.
_worker_queues: set[str] = set()


@celeryd_after_setup.connect
def _remember_queues(sender, instance, **kwargs) -> None:
    _worker_queues.update(instance.app.amqp.queues.consume_from or {})


@worker_process_init.connect
def _warm_pool_process(**kwargs) -> None:
    from curator.warmup import warm_in_background

    warm_in_background(_worker_queues)
