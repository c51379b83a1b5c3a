"""Celery tasks of the dataset core (queue `align`). Thin: they take ids and call a service."""

import logging

from celery import shared_task
from celery.signals import worker_ready
from django.db import InterfaceError, OperationalError

logger = logging.getLogger(__name__)

# Failures of the infrastructure, worth retrying; a bad image never raises (it is recorded).
TRANSIENT_ERRORS = (OperationalError, InterfaceError, ConnectionError, TimeoutError, OSError)


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=6,
)
def align_chunk(job_id: int, image_ids: list[int]) -> int:
    """Align the still-pending images of a chunk of an alignment job; safe to run twice."""
    from curator.services.alignment import alignment_chunk_process

    processed = alignment_chunk_process(job_id=job_id, image_ids=image_ids)
    logger.info("alignment job %s: chunk of %d images, %d aligned here", job_id, len(image_ids), processed)
    return processed


@shared_task(acks_late=True)
def resume_orphaned_alignment_jobs() -> int:
    from curator.services.alignment import alignment_jobs_resume_orphaned

    return alignment_jobs_resume_orphaned()


@worker_ready.connect
def _resume_orphaned_jobs_on_start(sender=None, **kwargs) -> None:
    """A (re)started worker looks for running jobs whose workers vanished, so a restarted
    cluster finishes them instead of leaving them 'running' forever."""
    from django.db import connections

    try:
        from curator.services.alignment import alignment_jobs_resume_orphaned

        changed = alignment_jobs_resume_orphaned()
        if changed:
            logger.warning("resumed or failed %d orphaned alignment jobs", changed)
    except Exception:  # a worker must start even when the database is not reachable yet
        logger.exception("could not check for orphaned alignment jobs")
    finally:
        # This runs in the main worker process; pool processes forked later must not share its
        # database connection.
        connections.close_all()
