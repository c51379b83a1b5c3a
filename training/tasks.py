"""Celery tasks of training: thin, they take ids and call a service.

`train_*` tasks are routed to the `train` queue (settings.CELERY_TASK_ROUTES), served by one
worker process, so queued jobs run one at a time in the order they were queued. No acks_late:
a job whose worker dies is marked failed (its heartbeat stops), never silently run twice."""

from celery import shared_task


@shared_task(name="training.tasks.train_model", acks_late=False)
def train_model(job_id: int) -> str:
    from training.services import training_job_run

    job = training_job_run(job_id=job_id)
    return job.status if job is not None else "deleted"  # with its dataset, while queued or running


@shared_task(name="training.tasks.predict_version", acks_late=True)
def predict_version(version_id: int) -> int:
    """Predict every face of a version's dataset again (queue `predict`), e.g. after new photos
    were imported and aligned. Safe to run twice: predictions are keyed by face and version."""
    from training.models import ModelVersion
    from training.services import predictions_compute

    return predictions_compute(model_version=ModelVersion.objects.get(pk=version_id))


@shared_task(name="training.tasks.predict_faces", acks_late=True)
def predict_faces(version_id: int, face_ids: list[int]) -> int:
    """Predict some faces (new or re-aligned ones) with a version (queue `predict`): the active
    version following the data. Safe to run twice."""
    from training.services import predictions_follow_compute

    return predictions_follow_compute(version_id=version_id, face_ids=face_ids)
