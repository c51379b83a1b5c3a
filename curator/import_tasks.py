"""Celery tasks of imports (queue `import`): a browser upload of thousands of files or a server
folder of 100,000 photos is far more than one web request should wait for, and the align
processes stay free to align the photos as the import hands them over. Thin: ids in, a service
call."""

from celery import shared_task


@shared_task
def import_folder(batch_id: int, folder: str) -> int:
    from curator.services.imports import import_batch_run_folder

    return import_batch_run_folder(batch_id=batch_id, folder=folder)


@shared_task
def import_upload(batch_id: int) -> int:
    """Import the files of a browser upload, already in storage (import_upload_stage)."""
    from curator.services.imports import import_batch_run_upload

    return import_batch_run_upload(batch_id=batch_id)
