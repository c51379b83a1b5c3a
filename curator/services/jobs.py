"""The stale-job sweep: every running background job whose worker stopped reporting is resumed
or failed by its own model's rule (BackgroundJob.on_stale). Celery beat runs it every quarter of
CURATOR_JOB_STALE_SECONDS (curator.tasks.jobs_sweep_stale); pages only read a job's state."""

import logging

from django.db import DatabaseError

from curator.jobs import job_models

logger = logging.getLogger(__name__)


def jobs_sweep_stale() -> dict[str, int]:
    """Apply the stale rule of every job model; returns, per model label, how many jobs it changed."""
    changed: dict[str, int] = {}
    for model in job_models():
        count = 0
        for job in model.stale_jobs():
            try:
                count += bool(job.on_stale())
            except DatabaseError:  # one job's trouble must not stop the sweep of the others
                logger.exception("could not sweep %s %s", model._meta.label, job.pk)
        if count:
            logger.warning("stale-job sweep: %d %s changed", count, model._meta.label)
        changed[model._meta.label] = count
    # Imports are not BackgroundJobs (their page is a report), but they go stale the same way.
    from curator.services.imports import import_batches_sweep_stale

    try:
        changed["curator.ImportBatch"] = import_batches_sweep_stale()
    except DatabaseError:
        logger.exception("could not sweep import batches")
    return changed
