"""labeling's Celery task: a background export (thin; the work is labeling.services.export_job_run).
acks_late with the worker's reject-on-lost: a worker that dies mid-export leaves the message to be
delivered again, and the run continues after the last part it finished."""

from celery import shared_task

from labeling import services


@shared_task(name="labeling.tasks.export_run", acks_late=True)
def export_run(job_id: int) -> None:
    services.export_job_run(job_id=job_id)
