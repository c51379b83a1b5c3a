"""Writes of the embeddings app: queue and compute face descriptors on the `embed` queue, and
the identity clusters derived from them.

    descriptors_queue(face_ids=[...])        # from the faces_aligned hook, after commit
    descriptors_compute(face_ids=[...], dataset_ids=[...])   # in the embed worker
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import F

from embeddings.models import DescriptorSet

logger = logging.getLogger(__name__)

# Faces per embed task: about 0.3 s a face (descriptor of the chip and its mirror), so a task
# takes a minute or so and a lost worker loses little.
BATCH_FACES = 200


def descriptors_queue(*, dataset_ids, face_ids: list[int]) -> None:
    """Queue the descriptor computation of these faces on the `embed` queue once the current
    transaction commits (outside it: alignment never waits for, or fails because of, this)."""
    face_ids = sorted({int(f) for f in face_ids})
    dataset_ids = sorted({int(d) for d in dataset_ids})
    if face_ids:
        transaction.on_commit(lambda: descriptors_send(dataset_ids=dataset_ids, face_ids=face_ids), robust=True)


def descriptors_send(*, dataset_ids: list[int], face_ids: list[int]) -> int:
    """Send the batches now, counted per dataset so its page can say "computing". Returns the
    number of batches."""
    from embeddings import tasks

    batches = [face_ids[i : i + BATCH_FACES] for i in range(0, len(face_ids), BATCH_FACES)]
    for dataset_id in dataset_ids:
        DescriptorSet.objects.get_or_create(dataset_id=dataset_id)
    DescriptorSet.objects.filter(dataset_id__in=dataset_ids).update(batches_pending=F("batches_pending") + len(batches))
    for batch in batches:
        tasks.descriptors_compute.delay(batch, dataset_ids)
    return len(batches)


def descriptors_compute(*, face_ids: list[int], dataset_ids: list[int]) -> int:
    """Compute (or find cached) the descriptors and region hashes of these faces; when it was the
    last batch pending for a dataset, recompute the dataset's identity clusters. Returns the
    number of faces that have features."""
    from embeddings.descriptors import features_for_faces

    try:
        # One process: the embed worker runs one per core already (and a prefork child may not fork).
        done = len(features_for_faces(face_ids, region_hash=True, processes=1))
    finally:
        DescriptorSet.objects.filter(dataset_id__in=dataset_ids, batches_pending__gt=0).update(
            batches_pending=F("batches_pending") - 1
        )
        # The active model predicts these faces next (training listens): after their
        # descriptors, so a descriptor-based model does not compute them a second time.
        from embeddings.signals import descriptors_computed

        for _, error in descriptors_computed.send_robust(sender=None, dataset_ids=dataset_ids, face_ids=face_ids):
            if isinstance(error, Exception):
                logger.error("a descriptors_computed receiver failed: %r", error)
    for dataset_id in dataset_ids:
        pending = DescriptorSet.objects.filter(dataset_id=dataset_id).values_list("batches_pending", flat=True).first()
        if not pending:
            ann_update(dataset_id=dataset_id)
            identity_clusters_update(dataset_id=dataset_id)
            # The map and uniqueness scores follow the new descriptors (queued; a no-op when current).
            from embeddings.maps import derived_request

            derived_request(dataset_id=dataset_id)
    return done


def ann_update(*, dataset_id: int) -> int:
    """Bring the dataset's stored nearest-neighbour index (embeddings.ann) to its current
    descriptors, building it the first time the dataset is large enough, and save it for every
    host. Returns the faces added, replaced or removed (0: small dataset or nothing changed)."""
    from embeddings import ann
    from embeddings.selectors import dataset_index

    index = dataset_index(dataset_id)
    return ann.ann_update(dataset_id, index.ids, index.vectors, index.stamp)


def identity_clusters_update(*, dataset_id: int, force: bool = False) -> int:
    """Recompute the dataset's identity clusters when its descriptors changed since the last
    time. Returns the number of clusters (0 when nothing was done)."""
    from embeddings.identities import identity_clusters_compute

    state, _ = DescriptorSet.objects.get_or_create(dataset_id=dataset_id)
    if state.clusters_stamp == state.stamp and not force:
        return 0
    return identity_clusters_compute(dataset_id=dataset_id, stamp=state.stamp)
