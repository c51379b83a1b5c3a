"""One lifecycle for every background job (alignment, training, out-of-fold runs).

A job's state lives in its own row, not in Celery, so the browser can show it and a lost worker
is seen. Every job has a status, an error, timestamps and a heartbeat its worker keeps fresh.
A running job whose heartbeat is older than CURATOR_JOB_STALE_SECONDS has lost its worker: the
stale-job sweep (curator.tasks.jobs_sweep_stale, run by Celery beat) finds every concrete
subclass of BackgroundJob and calls each stale job's `on_stale()`, which each model defines
(alignment resumes, training and out-of-fold runs fail). Page views never change a job.

Stored status values stay what each table has always had: a finished alignment job is "done",
a finished training job or run is "succeeded"; `SUCCEEDED` names the value of each model.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models.functions import Coalesce
from django.utils import timezone


class BackgroundJob(models.Model):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # AlignmentJob stores "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Shown as the job's error when the sweep fails it.
    STALE_MESSAGE = "The worker stopped reporting (it was stopped or lost); start the job again."

    # Each concrete model redeclares `status` with its own choices (and index); this one is the
    # shape they share.
    status = models.CharField(max_length=16, default=QUEUED)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    @classmethod
    def finished_statuses(cls) -> frozenset[str]:
        return frozenset({cls.SUCCEEDED, cls.FAILED, cls.CANCELLED})

    @property
    def is_finished(self) -> bool:
        return self.status in self.finished_statuses()

    @property
    def last_sign_of_life(self) -> datetime:
        return self.heartbeat_at or self.started_at or self.created_at

    @staticmethod
    def stale_after() -> timedelta:
        return timedelta(seconds=settings.CURATOR_JOB_STALE_SECONDS)

    def is_stale(self, *, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.status == self.RUNNING and now - self.last_sign_of_life > self.stale_after()

    def heartbeat(self) -> None:
        """Record a sign of life of a running job (a worker calls this as it progresses)."""
        now = timezone.now()
        type(self).objects.filter(pk=self.pk, status=self.RUNNING).update(heartbeat_at=now)
        self.heartbeat_at = now

    def mark_failed(self, reason: str, *, if_heartbeat_unchanged: bool = False, **fields) -> bool:
        """Fail a job that has not finished (`fields`: more columns to set); False when it had
        finished already or, with if_heartbeat_unchanged, when its worker reported since this
        row was read (it is alive after all)."""
        jobs = type(self).objects.filter(pk=self.pk, status__in=[self.QUEUED, self.RUNNING])
        if if_heartbeat_unchanged:
            jobs = jobs.filter(heartbeat_at=self.heartbeat_at)
        rows = jobs.update(status=self.FAILED, error=reason, finished_at=timezone.now(), **fields)
        self.refresh_from_db()
        return bool(rows)

    @classmethod
    def stale_jobs(cls, *, now: datetime | None = None) -> models.QuerySet:
        """Running jobs with no sign of life for CURATOR_JOB_STALE_SECONDS (queued jobs may be
        waiting behind other work, so they are left alone)."""
        now = now or timezone.now()
        return (
            cls.objects.filter(status=cls.RUNNING)
            .annotate(_last_sign=Coalesce("heartbeat_at", "started_at", "created_at"))
            .filter(_last_sign__lt=now - cls.stale_after())
            .order_by("pk")
        )

    def on_stale(self) -> bool:
        """What the sweep does with this job once stale; True when it changed the job. The
        default fails it; a model whose work can be resumed overrides this."""
        return self.mark_failed(self.STALE_MESSAGE, if_heartbeat_unchanged=True)


def job_models() -> list[type[BackgroundJob]]:
    """Every concrete job model of every installed app (so curator imports no higher app)."""
    from django.apps import apps

    return [m for m in apps.get_models() if issubclass(m, BackgroundJob)]
