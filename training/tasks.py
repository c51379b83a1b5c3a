"""Celery tasks of training: thin, they take ids and call a service.

`train_*` tasks are routed to the `train` queue (settings.CELERY_TASK_ROUTES), served by one
worker process, so queued jobs run one at a time in the order they were queued. No acks_late:
a job whose worker dies is marked failed (its heartbeat stops), never silently run twice."""

from celery import shared_task


@shared_task(name="training.tasks.train_model", acks_late=False)
def train_model(job_id: int) -> str:
    from training.services import training_job_run

    return training_job_run(job_id=job_id).status
