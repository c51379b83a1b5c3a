"""Celery task for server-folder imports started from the browser: a folder may hold 100,000
photos, far more than one web request should wait for. Thin: takes ids, calls the service."""

from celery import shared_task


@shared_task
def import_folder(batch_id: int, folder: str) -> int:
    from curator.services.imports import import_batch_run_folder

    return import_batch_run_folder(batch_id=batch_id, folder=folder)
