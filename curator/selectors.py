"""Reads of the dataset core for views and the API."""

from django.db.models import Count, Q, QuerySet

from curator.models import AlignmentJob, Dataset, Face, ImportBatch, SourceImage


def dataset_summary(*, dataset: Dataset) -> dict:
    images = SourceImage.objects.filter(dataset=dataset).aggregate(
        total=Count("id"),
        pending=Count("id", filter=Q(status=SourceImage.Status.PENDING)),
        aligned=Count("id", filter=Q(status=SourceImage.Status.ALIGNED)),
        no_face=Count("id", filter=Q(status=SourceImage.Status.NO_FACE)),
        error=Count("id", filter=Q(status=SourceImage.Status.ERROR)),
    )
    faces = Face.objects.filter(dataset=dataset)
    per_label = dict(faces.filter(is_excluded=False).values_list("label").annotate(n=Count("id")).order_by("label"))
    return {
        "images": images,
        "faces": faces.count(),
        "per_label": [(label or "unlabelled", per_label.get(label, 0)) for label in [*dataset.classes, ""]],
        "excluded": faces.filter(is_excluded=True).count(),
        # False detections people marked "not a face" (a measure of the detector on this data).
        "not_a_face": faces.filter(is_excluded=True, exclusion_reason=Face.NOT_A_FACE).count(),
    }


def dataset_faces(*, dataset: Dataset) -> QuerySet[Face]:
    return Face.objects.filter(dataset=dataset).select_related("image").order_by("id")


def dataset_batches(*, dataset: Dataset) -> QuerySet[ImportBatch]:
    return ImportBatch.objects.filter(dataset=dataset).order_by("-created_at")


def dataset_jobs(*, dataset: Dataset) -> QuerySet[AlignmentJob]:
    return AlignmentJob.objects.filter(dataset=dataset).order_by("-created_at")


# Images listed on a job page whose outcome needs a look (no face, error).
JOB_PROBLEMS_SHOWN = 200


def job_progress(*, job: AlignmentJob) -> dict:
    """What the progress bar shows: done/total, faces, no-face, errors, the rate so far, how long
    a queued job has waited, and the images without faces or with errors (with their reasons)."""
    from django.conf import settings
    from django.utils import timezone

    elapsed = None
    if job.started_at:
        end = job.finished_at or job.heartbeat_at or job.started_at
        elapsed = max((end - job.started_at).total_seconds(), 0.0)
    rate = (job.done / elapsed) if elapsed else 0.0
    percent = round(100.0 * job.done / job.total, 1) if job.total else (100.0 if job.is_finished else 0.0)
    remaining = max(job.total - job.done, 0)
    # While its import still adds images the total grows, so no time left is promised.
    eta = round(remaining / rate) if rate and not job.is_finished and not job.import_open else None
    waiting = None
    if job.status == AlignmentJob.Status.QUEUED:
        waiting = round((timezone.now() - job.created_at).total_seconds())
    problems = [
        {"id": image_id, "name": name, "status": status, "reason": reason}
        for image_id, name, status, reason in SourceImage.objects.filter(
            alignment_job=job, status__in=[SourceImage.Status.NO_FACE, SourceImage.Status.ERROR]
        )
        .order_by("status", "id")
        .values_list("id", "original_name", "status", "status_reason")[:JOB_PROBLEMS_SHOWN]
    ]
    return {
        "id": job.pk,
        "status": job.status,
        "total": job.total,
        "done": job.done,
        "faces": job.faces,
        "no_face": job.no_face,
        "errors": job.errors,
        "percent": percent,
        "images_per_s": round(rate, 2),
        "elapsed_s": round(elapsed or 0.0, 1),
        "eta_s": eta,
        "waiting_s": waiting,
        "waiting_long": waiting is not None and waiting > settings.CURATOR_JOB_STALE_SECONDS,
        "resumed_count": job.resumed_count,
        "finished": job.is_finished,
        "importing": job.import_open,
        "error": job.error,
        "problems": problems,
        "problems_more": max(job.no_face + job.errors - len(problems), 0),
        # Faces of this job's photos that people marked "not a face" since (false detections).
        "not_a_face": Face.objects.filter(
            image__alignment_job=job, is_excluded=True, exclusion_reason=Face.NOT_A_FACE
        ).count(),
    }


# Files listed on an import report (the counts cover every file).
BATCH_ISSUES_SHOWN = 1000


def batch_report(*, batch: ImportBatch) -> dict:
    """What the import report shows, live: the counts, how far the import got, whether it waits
    for a worker, its alignment jobs, and whether the page should keep polling."""
    from django.conf import settings
    from django.utils import timezone

    jobs = list(batch.alignment_jobs.order_by("pk"))
    waiting = None
    if batch.status == ImportBatch.Status.RECEIVING and batch.started_at is None:
        waiting = round((timezone.now() - (batch.heartbeat_at or batch.created_at)).total_seconds())
    return {
        "id": batch.pk,
        "number": batch.number,
        "status": batch.status,
        "finished": batch.is_finished,
        "staged": batch.staged_count,
        "files": batch.file_count,
        "processed": batch.processed_count,
        "imported": batch.imported_count,
        "labelled": batch.labelled_count,
        "duplicates": batch.duplicate_count,
        "skipped": batch.skipped_count,
        "error": batch.error,
        "waiting_s": waiting,
        "waiting_long": waiting is not None and waiting > settings.CURATOR_JOB_STALE_SECONDS,
        "jobs": [
            {"id": j.pk, "status": j.status, "done": j.done, "total": j.total, "importing": j.import_open} for j in jobs
        ],
        "live": not batch.is_finished or any(not j.is_finished for j in jobs),
        "job_objects": jobs,
    }
