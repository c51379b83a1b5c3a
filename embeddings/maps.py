"""A dataset's map (2-D projection of its descriptors) and its faces' uniqueness scores: both are
derived from the same descriptor set by one task on the `embed` queue, cached in DatasetMap and
computed again only when the descriptor stamp changes (descriptors stored, faces added/removed).

    derived_request(dataset_id=d.pk)   # queue it unless current or underway (cheap otherwise)
    map_state(dataset=d)               # what the page shows: status, step, progress
    map_points(dataset=d)              # (ids int64 [n], xy float32 [n, 2]) of the stored map
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from django.db import transaction
from django.utils import timezone

from curator.models import Dataset
from embeddings import projection, selectors, uniqueness
from embeddings.models import DatasetMap

logger = logging.getLogger(__name__)

# Seconds per 10,000 faces measured here (README "Face embeddings"); the page's progress estimate.
SECONDS_PER_10K = 45.0
HEARTBEAT_SECONDS = 10.0


def current_stamp(dataset_id: int) -> str:
    return "-".join(str(v) for v in selectors.descriptor_stamp(dataset_id))


def derived_request(*, dataset_id: int) -> DatasetMap:
    """Queue the map and uniqueness of the dataset's current descriptors, unless they are stored
    already or being computed. Safe to call often (the embeddings core calls it when a dataset's
    descriptor batches are stored; the map page when it opens)."""
    from embeddings import map_tasks

    target = current_stamp(dataset_id)
    with transaction.atomic():
        row, _ = DatasetMap.objects.select_for_update().get_or_create(
            dataset_id=dataset_id, defaults={"status": DatasetMap.SUCCEEDED}
        )
        if row.stamp == target and row.status == DatasetMap.SUCCEEDED:
            return row
        if row.target_stamp == target and row.status in (DatasetMap.QUEUED, DatasetMap.RUNNING):
            return row
        stamped_job_queue(row, target)
        transaction.on_commit(lambda: map_tasks.map_compute.delay(row.pk))
    return row


def stamped_job_queue(row, target: str) -> None:
    """Set a stored result of the embed queue (DatasetMap, DuplicateGroups: a BackgroundJob with
    `stamp`, `target_stamp` and `step`) to be computed again for the descriptors at `target`."""
    row.status, row.target_stamp, row.error = row.QUEUED, target, ""
    row.step = "waiting for a worker of the embed queue"
    row.started_at = row.finished_at = row.heartbeat_at = None
    row.save()


def stamped_job_step(row, text: str) -> None:
    """What a running stored result is doing now, with a heartbeat (see stamped_job_queue)."""
    now = timezone.now()
    type(row).objects.filter(pk=row.pk, status=row.RUNNING).update(step=text, heartbeat_at=now)
    row.step, row.heartbeat_at = text, now


def map_compute(*, map_id: int) -> None:
    """The task's work: project the dataset's descriptors, score their uniqueness, store both.
    A row that is not queued (taken by another worker, or done) is left alone."""
    now = timezone.now()
    claimed = DatasetMap.objects.filter(pk=map_id, status=DatasetMap.QUEUED).update(
        status=DatasetMap.RUNNING, started_at=now, heartbeat_at=now, step="reading the descriptors"
    )
    if not claimed:
        return
    row = DatasetMap.objects.select_related("dataset").get(pk=map_id)
    try:
        ids, vectors = selectors.dataset_vectors(dataset=row.dataset)
        stamped_job_step(row, f"projecting {len(ids)} faces (PCA + t-SNE)")
        started = time.monotonic()
        # t-SNE reports nothing while it runs: a thread computes, this one keeps the heartbeat
        # fresh so the stale-job sweep does not fail a long map of a big dataset.
        with ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(projection.projection_compute, vectors)
            while True:
                try:
                    xy = future.result(timeout=HEARTBEAT_SECONDS)
                    break
                except TimeoutError:
                    row.heartbeat()
        seconds = time.monotonic() - started
        stamped_job_step(row, "scoring uniqueness")
        scores = uniqueness.uniqueness_scores(vectors)
        uniqueness.uniqueness_store(dataset=row.dataset, ids=ids, scores=scores)
        DatasetMap.objects.filter(pk=row.pk).update(
            status=DatasetMap.SUCCEEDED,
            stamp=row.target_stamp,
            method=projection.METHOD,
            points=len(ids),
            face_ids=ids.astype(np.int64).tobytes(),
            coords=np.asarray(xy, dtype=np.float32).tobytes(),
            seconds=round(seconds, 2),
            step="",
            finished_at=timezone.now(),
        )
    except Exception as exc:  # the page must say why, not show "computing" forever
        if not Dataset.objects.filter(pk=row.dataset_id).exists():
            # Deleted while its map was computed: its faces went with it (storing their scores
            # failed on their foreign keys); nothing is wrong and nothing is left to store.
            logger.info("dataset %s was deleted while its map was computed; the map is dropped", row.dataset_id)
            return
        row.mark_failed(f"The map could not be computed: {exc}")
        raise


def map_points(*, dataset: Dataset) -> tuple[np.ndarray, np.ndarray] | None:
    """(face ids, xy) of the stored map, None when there is none yet."""
    row = DatasetMap.objects.filter(dataset=dataset).exclude(stamp="").first()
    if row is None:
        return None
    ids = np.frombuffer(bytes(row.face_ids), dtype=np.int64)
    xy = np.frombuffer(bytes(row.coords), dtype=np.float32).reshape(-1, 2)
    return ids, xy


def map_state(*, dataset: Dataset) -> dict:
    """What the map page shows: `status` none / queued / running / succeeded / failed, whether
    the stored map is of the current descriptors, what the task is doing and a progress estimate
    (t-SNE reports none: elapsed time over the expected time for this many faces)."""
    row = DatasetMap.objects.filter(dataset=dataset).first()
    target = current_stamp(dataset.pk)
    descriptors = selectors.descriptor_progress(dataset=dataset)
    if row is None:
        return {"status": "none", "current": False, "has_map": False, "descriptors": descriptors}
    state = {
        "status": row.status,
        "current": row.stamp == target,
        "has_map": bool(row.stamp),
        "points": row.points,
        "method": row.method,
        "seconds": row.seconds,
        "step": row.step,
        "error": row.error,
        "descriptors": descriptors,
    }
    if row.status == DatasetMap.RUNNING and row.started_at:
        elapsed = (timezone.now() - row.started_at).total_seconds()
        expected = max(5.0, SECONDS_PER_10K * descriptors["done"] / 10_000)
        state["elapsed"] = round(elapsed, 1)
        state["percent"] = min(95, round(100 * elapsed / expected))
    return state
