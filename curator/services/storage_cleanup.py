"""Delete aligned crop files that no face refers to: the crops of chunks whose worker was killed
(or whose database write failed) after storing them, which a re-run never reuses.

Crops live under `datasets/<id>/faces/<nnn>/` (curator.services.alignment._crop_path). The store
may be S3, so files are found through the storage API (listdir), never by walking MEDIA_ROOT.
A file is deleted only when it is older than the grace period (a chunk in flight stores its crops
before the transaction that refers to them commits) and no Face row names it; both are checked
again right before the delete. Celery beat runs this (curator.tasks.storage_cleanup_orphan_crops).

The same sweep removes every file under `datasets/<id>/` whose dataset no longer exists (older
than the same grace period): dataset_delete deletes a dataset's files after its rows, and a worker
still busy with that dataset (an alignment chunk, a training job) may store a file after the walk.
Training checks under the dataset's row lock before it stores (training.services), so this is the
net for whatever does not.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone

from curator.models import Dataset, Face
from curator.params import id_param
from curator.storage import storage_listdir, storage_walk

logger = logging.getLogger(__name__)

DATASETS_PREFIX = "datasets"
# Candidates are checked against the database this many at a time.
BATCH = 500


@dataclass
class CleanupReport:
    scanned: int = 0  # crop files seen
    too_new: int = 0  # younger than the grace period: maybe a chunk in flight
    referenced: int = 0
    deleted: int = 0
    failed: int = 0  # could not be deleted (logged); tried again next time
    gone_dataset_files: int = 0  # files under datasets/<id>/ of a deleted dataset, deleted (or counted)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _dataset_dirs() -> tuple[list[str], list[str]]:
    """The folders under datasets/: those of existing datasets, and those of deleted ones."""
    dataset_dirs, _ = storage_listdir(DATASETS_PREFIX)
    ids = {d: id_param(d) for d in dataset_dirs if id_param(d) is not None}
    existing = set(Dataset.objects.filter(pk__in=ids.values()).values_list("pk", flat=True))
    return (
        sorted(d for d in dataset_dirs if ids.get(d) in existing),
        sorted(d for d in ids if ids[d] not in existing),
    )


def _crop_files(dataset_dirs: list[str]) -> Iterator[str]:
    """Every file under datasets/<dir>/faces/ (any depth), as storage names."""
    for dataset_dir in dataset_dirs:
        yield from storage_walk(f"{DATASETS_PREFIX}/{dataset_dir}/faces")


def _gone_dataset_files_delete(dataset_dirs: list[str], cutoff: datetime, report: CleanupReport, dry_run: bool):
    for dataset_dir in dataset_dirs:
        for name in storage_walk(f"{DATASETS_PREFIX}/{dataset_dir}"):
            modified = _modified(name)
            if modified is None:
                continue
            if modified >= cutoff:
                report.too_new += 1
                continue
            if not dry_run:
                try:
                    default_storage.delete(name)
                except Exception:
                    report.failed += 1
                    logger.warning("could not delete %s of a deleted dataset", name, exc_info=True)
                    continue
            report.gone_dataset_files += 1


def _modified(name: str) -> datetime | None:
    try:
        return default_storage.get_modified_time(name)
    except FileNotFoundError:
        return None  # deleted meanwhile (a re-run replaced it, or another sweep)


def _process(batch: list[str], cutoff: datetime, report: CleanupReport, dry_run: bool) -> None:
    referenced = set(Face.objects.filter(crop__in=batch).values_list("crop", flat=True))
    report.referenced += len(referenced)
    for name in batch:
        if name in referenced:
            continue
        modified = _modified(name)
        if modified is None:
            continue
        # Again, just before deleting: a redelivered chunk may have stored this name anew and be
        # about to commit the face that refers to it.
        if modified >= cutoff or Face.objects.filter(crop=name).exists():
            report.too_new += modified >= cutoff
            continue
        if dry_run:
            report.deleted += 1
            continue
        try:
            default_storage.delete(name)
            report.deleted += 1
        except Exception:
            report.failed += 1
            logger.warning("could not delete orphaned crop %s", name, exc_info=True)


def orphan_crops_delete(*, grace_seconds: int | None = None, dry_run: bool = False) -> CleanupReport:
    """Delete the crop files no face refers to that are older than `grace_seconds` (default
    CURATOR_ORPHAN_CROP_GRACE_SECONDS); with dry_run, only count them. Returns the counts."""
    grace = settings.CURATOR_ORPHAN_CROP_GRACE_SECONDS if grace_seconds is None else grace_seconds
    cutoff = timezone.now() - timedelta(seconds=grace)
    report = CleanupReport()
    existing_dirs, gone_dirs = _dataset_dirs()
    _gone_dataset_files_delete(gone_dirs, cutoff, report, dry_run)
    batch: list[str] = []
    for name in _crop_files(existing_dirs):
        report.scanned += 1
        modified = _modified(name)
        if modified is None:
            continue
        if modified >= cutoff:
            report.too_new += 1
            continue
        batch.append(name)
        if len(batch) >= BATCH:
            _process(batch, cutoff, report, dry_run)
            batch = []
    if batch:
        _process(batch, cutoff, report, dry_run)
    logger.info(
        "orphaned crops%s: %d files scanned, %d referenced, %d newer than %d s, %d deleted, %d failed; "
        "%d files of deleted datasets deleted",
        " (dry run)" if dry_run else "",
        report.scanned,
        report.referenced,
        report.too_new,
        grace,
        report.deleted,
        report.failed,
        report.gone_dataset_files,
    )
    return report
