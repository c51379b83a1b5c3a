"""Alignment jobs: split a set of images into chunks over the `align` queue, align each image
(replacing its faces), keep the job's counters and heartbeat, and resume or fail orphaned jobs."""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from curator.models import AlignmentJob, Dataset, ImportBatch, SourceImage


def alignment_job_start(
    *,
    dataset: Dataset,
    images: QuerySet[SourceImage],
    batch: ImportBatch | None = None,
    user: AbstractBaseUser | None = None,
) -> AlignmentJob:
    """Create the job and queue its chunks once the transaction commits."""
    raise NotImplementedError  # filled in by the alignment work (issue 2)


def alignment_job_check_stale(*, job: AlignmentJob) -> AlignmentJob:
    """Resume (re-queue unfinished images) or fail a job whose workers stopped reporting."""
    return job
