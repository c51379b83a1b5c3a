"""A dataset's near-duplicate groups, computed on the `embed` queue and stored (DuplicateGroups):
finding them builds the descriptor neighbour graph of every face (embeddings.graph), which at a
million faces takes minutes and gigabytes, so the duplicates page only reads what is stored.

    duplicates_request(dataset_id=d.pk)      # queue unless stored for these descriptors or underway
    duplicates_request(dataset_id=d.pk, again=True)   # a curator's "compute again"
    duplicates_state(dataset=d)              # what the page shows: status, step, stale or current
    duplicates_stored(dataset=d)             # (groups, {(a, b): Evidence}) or None
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

from django.db import transaction
from django.utils import timezone

from curator.models import Dataset
from embeddings import selectors
from embeddings.duplicates import Evidence, complete_linkage_groups, pair_evidence
from embeddings.maps import HEARTBEAT_SECONDS, current_stamp, stamped_job_queue, stamped_job_step
from embeddings.models import DuplicateGroups

logger = logging.getLogger(__name__)


def duplicates_request(*, dataset_id: int, again: bool = False) -> DuplicateGroups:
    """Queue the groups of the dataset's current descriptors, unless they are stored already
    (`again`: even then) or being computed."""
    from embeddings import duplicate_tasks

    target = current_stamp(dataset_id)
    with transaction.atomic():
        row, _ = DuplicateGroups.objects.select_for_update().get_or_create(
            dataset_id=dataset_id, defaults={"status": DuplicateGroups.SUCCEEDED}
        )
        if row.status in (DuplicateGroups.QUEUED, DuplicateGroups.RUNNING):
            if row.target_stamp == target or again:
                return row  # underway (a second click does not queue a second computation)
        elif row.stamp == target and row.status == DuplicateGroups.SUCCEEDED and not again:
            return row
        stamped_job_queue(row, target)
        transaction.on_commit(lambda: duplicate_tasks.duplicates_compute.delay(row.pk))
    return row


def duplicates_compute(*, job_id: int) -> None:
    """The task's work: every pair passing a test, complete-linkage groups, stored with the
    evidence of their pairs. A row that is not queued (taken by another worker, or done) is left
    alone."""
    now = timezone.now()
    claimed = DuplicateGroups.objects.filter(pk=job_id, status=DuplicateGroups.QUEUED).update(
        status=DuplicateGroups.RUNNING, started_at=now, heartbeat_at=now, step="reading the descriptors"
    )
    if not claimed:
        return
    row = DuplicateGroups.objects.select_related("dataset").get(pk=job_id)
    try:
        started = time.monotonic()
        records = selectors.duplicate_records(dataset=row.dataset)
        stamped_job_step(row, f"comparing {len(records)} faces")
        # The neighbour graph reports nothing while it is built: a thread computes, this one
        # keeps the heartbeat fresh so the stale-job sweep does not fail a big dataset's groups.
        with ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(pair_evidence, records)
            while True:
                try:
                    pairs = future.result(timeout=HEARTBEAT_SECONDS)
                    break
                except TimeoutError:
                    row.heartbeat()
        groups = complete_linkage_groups(pairs)
        grouped = {f: i for i, g in enumerate(groups) for f in g}
        kept = [
            [a, b, e.exact, e.hash_bits, e.descriptor, e.tests]
            for (a, b), e in pairs.items()
            if a in grouped and grouped.get(b) == grouped[a]
        ]
        DuplicateGroups.objects.filter(pk=row.pk).update(
            status=DuplicateGroups.SUCCEEDED,
            stamp=row.target_stamp,
            groups=groups,
            pairs=kept,
            faces=len(records),
            seconds=round(time.monotonic() - started, 2),
            step="",
            finished_at=timezone.now(),
        )
    except Exception as exc:  # the page must say why, not show "computing" forever
        if not Dataset.objects.filter(pk=row.dataset_id).exists():
            logger.info("dataset %s was deleted while its duplicates were computed", row.dataset_id)
            return
        row.mark_failed(f"The duplicates could not be computed: {exc}")
        raise


def duplicates_stored(*, dataset: Dataset) -> tuple[list[list[int]], dict[tuple[int, int], Evidence]] | None:
    """(groups, evidence of each grouped pair keyed by (smaller id, larger)) as last stored; None
    when none were computed yet."""
    row = DuplicateGroups.objects.filter(dataset=dataset).exclude(stamp="").only("groups", "pairs").first()
    if row is None:
        return None
    pairs = {
        (a, b): Evidence(exact=exact, hash_bits=bits, descriptor=distance, tests=list(tests))
        for a, b, exact, bits, distance, tests in row.pairs
    }
    return [list(g) for g in row.groups], pairs


def duplicates_state(*, dataset: Dataset) -> dict:
    """What the duplicates page shows: `status` none / queued / running / succeeded / failed,
    whether stored groups exist and are of the current descriptors (`current`; new descriptors
    make them stale), what the task is doing and since when."""
    row = DuplicateGroups.objects.filter(dataset=dataset).defer("groups", "pairs").first()
    if row is None:
        return {"status": "none", "current": False, "has_groups": False, "computing": False}
    return {
        "status": row.status,
        "computing": row.status in (DuplicateGroups.QUEUED, DuplicateGroups.RUNNING),
        "current": row.stamp == current_stamp(dataset.pk),
        "has_groups": bool(row.stamp),
        "step": row.step,
        "error": row.error if row.status == DuplicateGroups.FAILED else "",
        "faces": row.faces,
        "seconds": row.seconds,
        "finished_at": row.finished_at,
    }
