"""Celery tasks of the embeddings app (queue `embed`). Thin: they take ids and call a service."""

import logging

from celery import shared_task

from curator.tasks import RETRIED_TASK

logger = logging.getLogger(__name__)


@shared_task(**RETRIED_TASK, ignore_result=True)
def descriptors_compute(face_ids: list[int], dataset_ids: list[int]) -> int:
    """Descriptors of a batch of faces (cached ones are found, not recomputed: safe to run twice)."""
    from embeddings.services import descriptors_compute as compute

    done = compute(face_ids=face_ids, dataset_ids=dataset_ids)
    logger.info("descriptors: %d of %d faces", done, len(face_ids))
    return done
