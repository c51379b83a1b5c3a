"""The map's task on the `embed` queue (routed in settings.CELERY_TASK_ROUTES): thin, the work is
embeddings.maps.map_compute."""

from celery import shared_task

from embeddings import maps


@shared_task(name="embeddings.map_tasks.map_compute", acks_late=True)  # on `embed` by CELERY_TASK_ROUTES
def map_compute(map_id: int) -> None:
    maps.map_compute(map_id=map_id)
