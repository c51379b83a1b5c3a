"""Celery tasks of the embeddings app (queue `embed`). Thin: they take ids and call a service."""

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS = (OperationalError, InterfaceError, ConnectionError, TimeoutError)


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=6,
    ignore_result=True,
)
def descriptors_compute(face_ids: list[int], dataset_ids: list[int]) -> int:
    """Descriptors of a batch of faces (cached ones are found, not recomputed: safe to run twice)."""
    from embeddings.services import descriptors_compute as compute

    done = compute(face_ids=face_ids, dataset_ids=dataset_ids)
    logger.info("descriptors: %d of %d faces", done, len(face_ids))
    return done
