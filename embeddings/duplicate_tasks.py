"""The near-duplicate groups' task on the `embed` queue (routed in settings.CELERY_TASK_ROUTES):
thin, the work is embeddings.duplicate_jobs.duplicates_compute."""

from celery import shared_task

from embeddings import duplicate_jobs


@shared_task(name="embeddings.duplicate_tasks.duplicates_compute", acks_late=True)
def duplicates_compute(job_id: int) -> None:
    duplicate_jobs.duplicates_compute(job_id=job_id)
