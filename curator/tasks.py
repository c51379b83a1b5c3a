"""Celery tasks of the dataset core (queue `align`). Thin: they take ids and call a service."""

import logging

from celery import shared_task
from celery.signals import worker_ready
from django.db import InterfaceError, OperationalError

from curator.storage import STORAGE_ERRORS

logger = logging.getLogger(__name__)

# Failures of the infrastructure, worth retrying; a bad image never raises (it is recorded).
# A storage outage (OSError on disk, botocore's errors on S3) passes too: the chunk is retried.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, ConnectionError, TimeoutError, *STORAGE_ERRORS)


# Options of a task that is safe to run twice: delivered again if its worker is lost, retried with
# backoff on a passing fault of the infrastructure (alignment chunks, descriptor batches).
RETRIED_TASK = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 6,
}


@shared_task(**RETRIED_TASK)
def align_chunk(job_id: int, image_ids: list[int]) -> int:
    """Align the still-pending images of a chunk of an alignment job; safe to run twice."""
    from curator.services.alignment import alignment_chunk_process

    processed = alignment_chunk_process(job_id=job_id, image_ids=image_ids)
    logger.info("alignment job %s: chunk of %d images, %d aligned here", job_id, len(image_ids), processed)
    return processed


@shared_task(**RETRIED_TASK)
def dataset_files_delete(dataset_id: int) -> int:
    """Delete the files of a deleted dataset (queued by the delete page); safe to run twice."""
    from curator.services.datasets import dataset_files_delete as delete

    deleted = delete(dataset_id=dataset_id)
    logger.info("dataset %s: %d files deleted", dataset_id, deleted)
    return deleted


@shared_task(ignore_result=True)
def jobs_sweep_stale() -> dict[str, int]:
    """Resume or fail every background job whose worker stopped reporting (scheduled by Celery
    beat, settings.CELERY_BEAT_SCHEDULE). Safe to run twice: each change is a conditional update."""
    from curator.services.jobs import jobs_sweep_stale as sweep

    return sweep()


@shared_task(ignore_result=True)
def storage_cleanup_orphan_crops() -> dict[str, int]:
    """Delete crop files no face refers to, older than the grace period (scheduled by Celery beat)."""
    from curator.services.storage_cleanup import orphan_crops_delete

    return orphan_crops_delete().as_dict()


@worker_ready.connect
def _sweep_stale_jobs_on_start(sender=None, **kwargs) -> None:
    """A (re)started worker sweeps at once, so a restarted cluster resumes its orphaned alignment
    jobs without waiting for beat's next tick (and a deployment without beat still recovers)."""
    from django.db import connections

    try:
        from curator.services.jobs import jobs_sweep_stale as sweep

        changed = sum(sweep().values())
        if changed:
            logger.warning("resumed or failed %d orphaned jobs", changed)
    except Exception:  # a worker must start even when the database is not reachable yet
        logger.exception("could not check for orphaned jobs")
    finally:
        # This runs in the main worker process; pool processes forked later must not share its
        # database connection.
        connections.close_all()
