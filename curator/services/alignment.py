"""Alignment jobs: split a set of images into chunks over the `align` queue, align each image
(replacing its faces), keep the job's counters and heartbeat, and resume or fail orphaned jobs.

Why it survives lost workers: chunk tasks are acknowledged only after they finish (`acks_late`),
so a chunk whose worker died is delivered again; an image is processed only while it is still
pending for this job, and its new faces, its status and the job's counters are written in one
transaction, so a redelivered chunk skips what was already done and nothing is counted twice.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from curator.models import AlignmentJob, Dataset, Face, ImportBatch, SourceImage
from curator.signals import faces_aligned

logger = logging.getLogger(__name__)

# A job whose workers stopped reporting is re-queued this many times, then failed.
MAX_RESUMES = 3
# An image whose alignment killed its worker this many times is recorded as an error.
MAX_ATTEMPTS = 3
# Results are written to the database in groups of images: fewer round trips, yet the progress
# bar and the heartbeat still move at least this often.
FLUSH_EVERY_IMAGES = 8
FLUSH_EVERY_SECONDS = 1.0
# Two boxes of the same photo are "the same face" (keeping its human label) above this overlap.
SAME_FACE_IOU = 0.5
# Writing a crop failed because the disk or quota is full: the image's outcome, not a retry.
STORAGE_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
# Face fields a person sets; kept when a re-run finds the same face again.
HUMAN_FIELDS = ("is_unsure", "is_excluded", "exclusion_reason", "split", "split_manual")


# --- Starting a job -------------------------------------------------------------------------------

# Chunks per worker process over a job: more chunks balance better (a slow photo delays one
# small chunk only), fewer cost fewer task round trips.
CHUNKS_PER_WORKER = 2
# A streaming import hands its new images to the workers at least this often, so they start
# at once even while it reads large files.
FEED_EVERY_SECONDS = 0.5
# ... and keeps its job's and batch's heartbeat at least this fresh.
HEARTBEAT_EVERY_SECONDS = 2.0


def chunk_size_for(remaining: int, *, workers: int | None = None, largest: int | None = None) -> int:
    """Guided chunking: a share of what is left per worker process, between 1 and the largest
    chunk (CURATOR_ALIGN_CHUNK_SIZE). Big chunks while much is left, small ones at the end, so
    every process finishes at about the same time (no 16+4 split leaving one idle)."""
    workers = max(1, workers or settings.CURATOR_ALIGN_WORKERS)
    largest = max(1, largest or settings.CURATOR_ALIGN_CHUNK_SIZE)
    return max(1, min(largest, -(-remaining // (workers * CHUNKS_PER_WORKER))))


def chunk_sizes(count: int, *, workers: int | None = None, largest: int | None = None) -> list[int]:
    """The sizes a job of `count` images is split into (see chunk_size_for)."""
    sizes = []
    while count > 0:
        size = chunk_size_for(count, workers=workers, largest=largest)
        sizes.append(size)
        count -= size
    return sizes


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    start = 0
    for size in chunk_sizes(len(ids)):
        yield ids[start : start + size]
        start += size


def _queue_chunks(job_id: int, image_ids: list[int], *, split: bool = True) -> None:
    """Queue the images as guided chunks, or (split=False) as the one chunk a streaming import
    already sized."""
    from curator.tasks import align_chunk

    for chunk in _chunks(image_ids) if split else [image_ids]:
        align_chunk.delay(job_id, chunk)


def alignment_job_start(
    *,
    dataset: Dataset,
    images: QuerySet[SourceImage],
    batch: ImportBatch | None = None,
    user: AbstractBaseUser | None = None,
) -> AlignmentJob:
    """Create the job and queue its chunks once the transaction commits."""
    from curator.faces.pipeline import AlignOptions

    options = AlignOptions.from_dataset(dataset)
    with transaction.atomic():
        image_ids = list(images.filter(dataset=dataset).order_by("id").values_list("id", flat=True))
        job = AlignmentJob.objects.create(
            dataset=dataset,
            batch=batch,
            created_by=user if user is not None and user.is_authenticated else None,
            options=options.as_dict(),
            total=len(image_ids),
        )
        # An image belongs to the newest job that will align it; an older job still running
        # skips it from now on.
        SourceImage.objects.filter(id__in=image_ids).update(
            alignment_job=job, status=SourceImage.Status.PENDING, status_reason="", align_attempts=0
        )
        if not image_ids:
            now = timezone.now()
            job.status = AlignmentJob.Status.DONE
            job.started_at = job.finished_at = now
            job.save(update_fields=["status", "started_at", "finished_at"])
        else:
            transaction.on_commit(lambda: _queue_chunks(job.pk, image_ids))
    return job


# --- Streaming from an import ---------------------------------------------------------------------


def alignment_job_open_for_import(*, batch: ImportBatch) -> AlignmentJob:
    """The job an import feeds while it reads its files. It is running from the start (its
    import is its first worker and keeps its heartbeat), its total grows with each handed-over
    chunk, and it cannot finish before alignment_job_close_import."""
    from curator.faces.pipeline import AlignOptions

    now = timezone.now()
    user = batch.created_by
    return AlignmentJob.objects.create(
        dataset=batch.dataset,
        batch=batch,
        created_by=user if user is not None and user.is_active else None,
        options=AlignOptions.from_dataset(batch.dataset).as_dict(),
        status=AlignmentJob.Status.RUNNING,
        started_at=now,
        heartbeat_at=now,
        import_open=True,
    )


def alignment_job_add_images(*, job_id: int, image_ids: list[int]) -> None:
    """Hand newly imported images to an open job and queue their chunks once this commits."""
    if not image_ids:
        return
    with transaction.atomic():
        # An "align again" started meanwhile may have taken some: they stay with that job.
        ids = list(
            SourceImage.objects.filter(
                pk__in=image_ids, alignment_job__isnull=True, status=SourceImage.Status.PENDING
            ).values_list("pk", flat=True)
        )
        SourceImage.objects.filter(pk__in=ids).update(alignment_job_id=job_id)
        AlignmentJob.objects.filter(pk=job_id).update(total=F("total") + len(ids), heartbeat_at=timezone.now())
        if ids:
            transaction.on_commit(lambda: _queue_chunks(job_id, ids, split=False))


def alignment_job_close_import(*, job_id: int, batch_id: int) -> None:
    """The import is over (finished, failed or lost): hand over the images it stored but had not
    handed over yet, close the job to new images, and finish it if every chunk is done."""
    with transaction.atomic():
        job = AlignmentJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or not job.import_open:
            return
        left = list(
            SourceImage.objects.filter(
                batch_id=batch_id, alignment_job__isnull=True, status=SourceImage.Status.PENDING
            ).values_list("pk", flat=True)
        )
        if left:
            SourceImage.objects.filter(pk__in=left).update(alignment_job=job)
        AlignmentJob.objects.filter(pk=job_id).update(
            import_open=False, total=F("total") + len(left), heartbeat_at=timezone.now()
        )
        transaction.on_commit(lambda: _queue_chunks(job_id, left))
    _finish_if_complete(job_id)


class ImportAlignmentFeed:
    """Hands the images an import stores to one alignment job while the import goes on: a
    chunk is queued (after its rows commit) whenever enough images wait (guided by how many
    files are left) or FEED_EVERY_SECONDS have passed, so the align workers start at once and
    the import's time hides behind alignment. The job is opened on the first stored image (an
    import of duplicates only gets none). `tick()` between files keeps the job's and the
    batch's heartbeat fresh, so the stale sweep can tell a lost import from a slow one."""

    def __init__(self, *, batch: ImportBatch):
        self.batch = batch
        self.job: AlignmentJob | None = None
        self.waiting: list[int] = []
        self.first_waiting_at = 0.0
        self.last_beat = time.monotonic()

    def add_many(self, image_ids: list[int], *, files_left: int) -> None:
        """Images whose rows just committed; `files_left`: files the import has yet to read.
        Every full chunk waiting is handed over (a group of rows may hold several at the end)."""
        if image_ids and not self.waiting:
            self.first_waiting_at = time.monotonic()
        self.waiting += image_ids
        handed = False
        while self.waiting:
            size = chunk_size_for(files_left + len(self.waiting))
            if len(self.waiting) < size:
                break
            self._hand_over(self.waiting[:size])
            self.waiting = self.waiting[size:]
            handed = True
        if handed:  # what still waits arrived with this group
            self.first_waiting_at = time.monotonic()
        self.tick()

    def tick(self) -> None:
        now = time.monotonic()
        if self.waiting and now - self.first_waiting_at >= FEED_EVERY_SECONDS:
            self.flush()
        elif now - self.last_beat >= HEARTBEAT_EVERY_SECONDS:
            self._beat()

    def flush(self) -> None:
        if self.waiting:
            self._hand_over(self.waiting)
            self.waiting = []
        self._beat()

    def _hand_over(self, image_ids: list[int]) -> None:
        if self.job is None:
            self.job = alignment_job_open_for_import(batch=self.batch)
        alignment_job_add_images(job_id=self.job.pk, image_ids=image_ids)

    def _beat(self) -> None:
        now = timezone.now()
        ImportBatch.objects.filter(pk=self.batch.pk).update(heartbeat_at=now)
        if self.job is not None:
            AlignmentJob.objects.filter(pk=self.job.pk, import_open=True).update(heartbeat_at=now)
        self.last_beat = time.monotonic()

    def close(self) -> AlignmentJob | None:
        """Hand over what waits and close the job (or open one for images a lost feed left)."""
        if self.job is None and self.waiting:
            self.job = alignment_job_open_for_import(batch=self.batch)
        if self.job is not None:
            self.waiting = []  # the close hands over every image of the batch not handed over yet
            alignment_job_close_import(job_id=self.job.pk, batch_id=self.batch.pk)
        return self.job


# --- Processing a chunk (in a worker) -----------------------------------------------------------


@dataclass
class _Outcome:
    """What aligning one image produced, before it is written."""

    image: SourceImage
    status: str
    reason: str = ""
    faces: list = field(default_factory=list)  # AlignedFace
    crop_paths: list[str] = field(default_factory=list)


def _crop_path(image: SourceImage, run: str, index: int) -> str:
    # A new name per run (`j<job id>` for an alignment job): the media view lets browsers cache a
    # crop for a day, so a re-run must never reuse the name of an older crop.
    return f"datasets/{image.dataset_id}/faces/{image.pk % 1000:03d}/{image.pk}-{run}-{index}.jpg"


def face_crops_save(*, image: SourceImage, aligned_faces: list, run: str) -> list[str]:
    """Store the aligned crops of one photo under the dataset's crop names; their paths, in order."""
    from curator.faces.pipeline import encode_jpeg

    return [_save_file(_crop_path(image, run, face.index), encode_jpeg(face.crop)) for face in aligned_faces]


def _save_file(path: str, data: bytes) -> str:
    # A redelivered chunk writes the same names again: replace, never get a suffixed copy.
    if default_storage.exists(path):
        default_storage.delete(path)
    return default_storage.save(path, ContentFile(data))


def _delete_files(paths: Iterable[str]) -> None:
    for path in paths:
        if not path:
            continue
        try:
            default_storage.delete(path)
        except OSError:  # a missing or undeletable old crop must not fail the image
            logger.warning("could not delete old crop %s", path, exc_info=True)


def _align_image(image: SourceImage, job_id: int, options) -> _Outcome:
    """Load, detect and align one image and store its crops. Faults of the image itself become
    its outcome; faults of the infrastructure (database, broker) propagate so the task retries."""
    from curator.faces.pipeline import align_photo, load_photo
    from curator.images import ImageRejected

    try:
        with default_storage.open(image.file, "rb") as handle:
            # Decoded only as finely as detection needs (a JPEG at 1/2-1/8 when it is large);
            # finer pixels are decoded later only for faces that need them.
            photo = load_photo(handle, options)
    except FileNotFoundError:
        return _Outcome(image, SourceImage.Status.ERROR, "the original file is missing from storage")
    except ImageRejected as exc:
        return _Outcome(image, SourceImage.Status.ERROR, f"unreadable image: {exc}")
    except MemoryError:
        return _Outcome(image, SourceImage.Status.ERROR, "not enough memory to decode this image")
    try:
        aligned = align_photo(photo, options)
        faces = aligned.faces
    except MemoryError:
        return _Outcome(image, SourceImage.Status.ERROR, "not enough memory to align this image")
    except Exception as exc:  # any failure of the pipeline is this image's outcome
        logger.exception("alignment of image %s failed", image.pk)
        return _Outcome(image, SourceImage.Status.ERROR, f"alignment failed: {type(exc).__name__}: {exc}")
    if not faces:
        # With the whole-photo fallback: why the photo was not kept whole (the face check).
        reason = f"no face found; {aligned.note}" if aligned.note else "no face found"
        return _Outcome(image, SourceImage.Status.NO_FACE, reason)
    try:
        paths = face_crops_save(image=image, aligned_faces=faces, run=f"j{job_id}")
    except OSError as exc:
        if exc.errno not in STORAGE_FULL_ERRNOS:
            raise  # a passing fault of the storage: the chunk is retried
        # Retrying cannot help until someone frees space: the image gets the reason, so it can be
        # aligned again later. Crops stored before the failure are swept as orphans.
        return _Outcome(
            image,
            SourceImage.Status.ERROR,
            f"could not store the aligned crop: {os.strerror(exc.errno)} (the storage is full; free space "
            "and align again)",
        )
    count = len(faces)
    reason = f"{count} face{'s' if count != 1 else ''}"
    if faces[0].whole_image:
        reason = f"no detection; the whole photo is kept as the face ({aligned.note})"
    return _Outcome(image, SourceImage.Status.ALIGNED, reason, faces, paths)


def _match_old_faces(old: list[Face], new_boxes: list[tuple[int, int, int, int]]) -> dict[int, Face]:
    """Pair new faces with old faces of the same photo by box overlap, best pairs first."""
    from curator.faces.detection import box_iou  # dlib: workers only

    pairs = sorted(
        ((box_iou(face.box, box), i, face) for i, box in enumerate(new_boxes) for face in old),
        key=lambda p: -p[0],
    )
    matched: dict[int, Face] = {}
    used: set[int] = set()
    for iou, i, face in pairs:
        if iou < SAME_FACE_IOU:
            break
        if i in matched or face.pk in used:
            continue
        matched[i] = face
        used.add(face.pk)
    return matched


def _fill_face(face: Face, aligned, path: str, image: SourceImage) -> None:
    left, top, right, bottom = aligned.box
    face.index = aligned.index
    face.box_left, face.box_top, face.box_right, face.box_bottom = left, top, right, bottom
    face.landmarks = aligned.landmarks_list()
    face.crop = path
    face.is_largest = aligned.is_largest
    face.whole_image = aligned.whole_image
    face.detector_score = aligned.detector_score
    face.size_px = aligned.size_px
    face.sharpness = aligned.sharpness
    face.yaw = aligned.yaw
    face.roll = aligned.roll
    face.landmark_fit = aligned.landmark_fit
    face.phash = aligned.phash
    if face.label_origin != Face.LabelOrigin.HUMAN:
        # The image-level label from the import belongs to the largest face only.
        if aligned.is_largest and image.label:
            face.label, face.label_origin = image.label, Face.LabelOrigin.IMPORT
        else:
            face.label, face.label_origin = "", Face.LabelOrigin.NONE


FACE_UPDATE_FIELDS = [
    "index",
    "box_left",
    "box_top",
    "box_right",
    "box_bottom",
    "landmarks",
    "crop",
    "is_largest",
    "whole_image",
    "detector_score",
    "size_px",
    "sharpness",
    "yaw",
    "roll",
    "landmark_fit",
    "phash",
    "label",
    "label_origin",
    "updated_at",
]


def aligned_photo_store(
    *,
    dataset: Dataset,
    data: bytes,
    sha256: str,
    info,
    original_name: str,
    aligned_faces: list,
    metadata: dict | None = None,
    suggested_labels: dict[int, str] | None = None,
    faces_added: Callable[[SourceImage, list[Face]], None] | None = None,
) -> SourceImage:
    """Add a photo that was aligned elsewhere (the predict page aligns it to classify it) to a
    dataset: the original stored as imports store it, its faces filled and their crops named as
    an alignment job's. `suggested_labels` ({face index: label}) become `Face.suggested_label`,
    never labels. `faces_added(image, faces)` runs inside the same transaction, so the caller's
    own rows (a model's predictions) are written with the faces or not at all. On any failure
    the files stored here are deleted again."""
    from curator.services.imports import source_image_add

    saved_paths: list[str] = []
    try:
        with transaction.atomic():
            image, written = source_image_add(
                dataset=dataset,
                data=data,
                original_name=original_name,
                info=info,
                sha256=sha256,
                metadata=metadata or {},
                status=SourceImage.Status.ALIGNED if aligned_faces else SourceImage.Status.NO_FACE,
                status_reason="" if aligned_faces else "no face found by the detector",
                face_count=len(aligned_faces),
            )
            if written:
                saved_paths.append(image.file)
            paths = face_crops_save(image=image, aligned_faces=aligned_faces, run="p")
            saved_paths += paths
            faces = []
            for aligned, path in zip(aligned_faces, paths, strict=True):
                face = Face(dataset=dataset, image=image)
                _fill_face(face, aligned, path, image)
                face.suggested_label = (suggested_labels or {}).get(aligned.index, "")
                faces.append(face)
            faces = Face.objects.bulk_create(faces)
            if faces_added is not None:
                faces_added(image, faces)
            if faces:
                faces_aligned.send(sender=Face, dataset_ids={dataset.pk}, face_ids=[f.pk for f in faces])
    except Exception:
        _delete_files(saved_paths)
        raise
    return image


def _write_outcomes(job_id: int, outcomes: list[_Outcome]) -> None:
    """Replace the faces of the aligned images, record each image's outcome and advance the job,
    all in one transaction. Images no longer pending for this job (done by an earlier delivery of
    this chunk, or taken over by a newer job) are left alone and their new crops discarded."""
    files_to_delete: list[str] = []
    with transaction.atomic():
        ids = [o.image.pk for o in outcomes]
        still_pending = set(
            SourceImage.objects.select_for_update()
            .filter(pk__in=ids, alignment_job_id=job_id, status=SourceImage.Status.PENDING)
            .values_list("pk", flat=True)
        )
        keep = [o for o in outcomes if o.image.pk in still_pending]
        unused = [p for o in outcomes if o.image.pk not in still_pending for p in o.crop_paths if p]
        if unused:
            # Another delivery of this chunk may have stored the same names and committed them.
            referenced = set(Face.objects.filter(crop__in=unused).values_list("crop", flat=True))
            files_to_delete += [p for p in unused if p not in referenced]
        old_by_image: dict[int, list[Face]] = {}
        for face in Face.objects.filter(image_id__in=[o.image.pk for o in keep]).order_by("index"):
            old_by_image.setdefault(face.image_id, []).append(face)

        now = timezone.now()
        to_create: list[Face] = []
        to_update: list[Face] = []
        to_delete: list[int] = []
        for o in keep:
            old = old_by_image.get(o.image.pk, [])
            matched = _match_old_faces(old, [f.box for f in o.faces])
            matched_ids = {f.pk for f in matched.values()}
            for face in old:
                if face.pk not in matched_ids:
                    to_delete.append(face.pk)
                if face.crop and face.crop not in o.crop_paths:
                    files_to_delete.append(face.crop)
            for i, aligned in enumerate(o.faces):
                face = matched.get(i) or Face(dataset_id=o.image.dataset_id, image_id=o.image.pk)
                _fill_face(face, aligned, o.crop_paths[i], o.image)
                face.updated_at = now
                (to_update if face.pk else to_create).append(face)
        if to_delete:
            Face.objects.filter(pk__in=to_delete).delete()
        if to_update:
            # Indexes are unique per photo and may swap between kept faces: move them out of the
            # way first, then write the final values.
            final_index = {face.pk: face.index for face in to_update}
            for face in to_update:
                face.index = 10_000 + final_index[face.pk] % 10_000
            Face.objects.bulk_update(to_update, ["index"])
            for face in to_update:
                face.index = final_index[face.pk]
            Face.objects.bulk_update(to_update, FACE_UPDATE_FIELDS)
        if to_create:
            Face.objects.bulk_create(to_create)

        counts = {"done": 0, "faces": 0, "no_face": 0, "errors": 0}
        images = []
        for o in keep:
            image = o.image
            image.status, image.status_reason = o.status, o.reason
            image.face_count = len(o.faces)
            image.aligned_at = now
            images.append(image)
            counts["done"] += 1
            counts["faces"] += len(o.faces)
            counts["no_face"] += o.status == SourceImage.Status.NO_FACE
            counts["errors"] += o.status == SourceImage.Status.ERROR
        if images:
            SourceImage.objects.bulk_update(images, ["status", "status_reason", "face_count", "aligned_at"])
        AlignmentJob.objects.filter(pk=job_id).update(
            done=F("done") + counts["done"],
            faces=F("faces") + counts["faces"],
            no_face=F("no_face") + counts["no_face"],
            errors=F("errors") + counts["errors"],
            heartbeat_at=now,
        )
        transaction.on_commit(lambda: _delete_files(files_to_delete))
        aligned_ids = [face.pk for face in to_update + to_create if face.pk]
        if aligned_ids:
            # Descriptors and the like are the apps above's business (embeddings/apps.py).
            faces_aligned.send(sender=Face, dataset_ids={o.image.dataset_id for o in keep}, face_ids=aligned_ids)


def _finish_if_complete(job_id: int) -> None:
    """Mark the job done once none of its images is pending any more."""
    with transaction.atomic():
        job = AlignmentJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.is_finished or job.import_open:
            return  # an open job's import is still adding images
        if SourceImage.objects.filter(alignment_job_id=job_id, status=SourceImage.Status.PENDING).exists():
            return
        now = timezone.now()
        job.status = AlignmentJob.Status.DONE
        job.finished_at = job.heartbeat_at = now
        job.started_at = job.started_at or now
        if job.done < job.total:
            job.error = (
                f"{job.total - job.done} of the job's images were deleted or taken over by a later "
                "alignment job before this one reached them."
            )
        job.save(update_fields=["status", "finished_at", "heartbeat_at", "started_at", "error"])


def alignment_chunk_process(*, job_id: int, image_ids: list[int]) -> int:
    """Align the images of one chunk that are still pending for the job; returns how many were
    processed here. Safe to run again with the same arguments (see the module docstring)."""
    from curator.faces.pipeline import AlignOptions

    job = AlignmentJob.objects.filter(pk=job_id).first()
    if job is None or job.is_finished:
        return 0
    now = timezone.now()
    AlignmentJob.objects.filter(pk=job_id, status=AlignmentJob.Status.QUEUED).update(
        status=AlignmentJob.Status.RUNNING, started_at=now, heartbeat_at=now
    )
    options = AlignOptions.from_dict(job.options)
    images = list(
        SourceImage.objects.filter(pk__in=image_ids, alignment_job_id=job_id, status=SourceImage.Status.PENDING)
        .only("id", "dataset_id", "file", "label", "status", "alignment_job_id", "align_attempts")
        .order_by("id")
    )
    processed = 0
    pending: list[_Outcome] = []
    last_flush = time.monotonic()
    for image in images:
        if image.align_attempts and pending:
            # This image was being aligned when a worker died: keep the results so far safe
            # before trying it again, so only the image at fault is ever given up on.
            _write_outcomes(job_id, pending)
            processed += len(pending)
            pending, last_flush = [], time.monotonic()
        if image.align_attempts >= MAX_ATTEMPTS:
            pending.append(
                _Outcome(
                    image,
                    SourceImage.Status.ERROR,
                    f"aligning this image stopped its worker {image.align_attempts} times (out of memory or "
                    "a crash); it was not tried again",
                )
            )
        else:
            SourceImage.objects.filter(pk=image.pk).update(align_attempts=F("align_attempts") + 1)
            pending.append(_align_image(image, job_id, options))
        if len(pending) >= FLUSH_EVERY_IMAGES or time.monotonic() - last_flush >= FLUSH_EVERY_SECONDS:
            _write_outcomes(job_id, pending)
            processed += len(pending)
            pending, last_flush = [], time.monotonic()
    if pending:
        _write_outcomes(job_id, pending)
        processed += len(pending)
    _finish_if_complete(job_id)
    return processed


# --- Orphaned jobs ------------------------------------------------------------------------------


def _close_lost_import(job: AlignmentJob, now) -> None:
    """Inside the stale check's transaction: fail the job's lost import and hand its stored but
    not yet handed-over images to the job, which then resumes as any orphaned job does."""
    lost_import_fail(batch_id=job.batch_id, now=now)
    left = SourceImage.objects.filter(
        batch_id=job.batch_id, alignment_job__isnull=True, status=SourceImage.Status.PENDING
    ).values_list("pk", flat=True)
    added = SourceImage.objects.filter(pk__in=list(left)).update(alignment_job=job)
    AlignmentJob.objects.filter(pk=job.pk).update(import_open=False, total=F("total") + added)
    job.import_open = False


def lost_import_fail(*, batch_id: int | None, now) -> bool:
    """Mark an import whose worker was lost as failed, saying what to do; False if it was not
    importing any more."""
    if batch_id is None:
        return False
    return bool(
        ImportBatch.objects.filter(pk=batch_id, status=ImportBatch.Status.RECEIVING).update(
            status=ImportBatch.Status.FAILED,
            finished_at=now,
            error=(
                f"The import stopped: its worker stopped reporting for {settings.CURATOR_JOB_STALE_SECONDS} s "
                "(stopped or lost). The photos it stored are aligned; import the same files again to add "
                "the rest (those already in are reported as duplicates)."
            ),
        )
    )


def alignment_job_check_stale(*, job: AlignmentJob) -> AlignmentJob:
    """Resume (re-queue unfinished images) or fail a job whose workers stopped reporting.

    A running job with no heartbeat for CURATOR_JOB_STALE_SECONDS lost its workers (or its
    messages): its pending images are queued again, up to MAX_RESUMES times; after that the job
    is failed and its unfinished images are marked as errors with the reason, so they can be
    aligned again from the dataset page. While another job is progressing the workers are
    alive, so nothing is done. Queued jobs are left alone: they may be waiting behind other
    work, and the job page says how long they have waited. The stale-job sweep calls this
    (AlignmentJob.on_stale); pages only read the job."""
    if job.status != AlignmentJob.Status.RUNNING:
        return job
    stale_after = timedelta(seconds=settings.CURATOR_JOB_STALE_SECONDS)
    last_sign = job.heartbeat_at or job.started_at or job.created_at
    if timezone.now() - last_sign < stale_after:
        return job
    if (
        AlignmentJob.objects.filter(status=AlignmentJob.Status.RUNNING, heartbeat_at__gte=timezone.now() - stale_after)
        .exclude(pk=job.pk)
        .exists()
    ):
        # Workers are alive and busy with another job: this one's chunks are waiting in the
        # queue behind it (a chunk lost with its worker comes back after the broker's
        # visibility timeout), so re-queueing now would only duplicate work.
        return job
    with transaction.atomic():
        locked = AlignmentJob.objects.select_for_update().get(pk=job.pk)
        last_sign = locked.heartbeat_at or locked.started_at or locked.created_at
        now = timezone.now()
        if locked.status != AlignmentJob.Status.RUNNING or now - last_sign < stale_after:
            return locked  # someone else resumed it, or it came back to life
        if locked.import_open:
            # Its import keeps the heartbeat fresh while it reads files: it was lost with its
            # worker. The batch says so, and what it stored is aligned like the rest.
            _close_lost_import(locked, now)
        pending = SourceImage.objects.filter(alignment_job=locked, status=SourceImage.Status.PENDING)
        pending_ids = list(pending.order_by("id").values_list("id", flat=True))
        if not pending_ids:
            transaction.on_commit(lambda: _finish_if_complete(locked.pk))
            return locked
        if locked.resumed_count >= MAX_RESUMES:
            reason = (
                f"alignment job {locked.pk} failed: its workers stopped reporting "
                f"{MAX_RESUMES + 1} times; align this image again from the dataset page"
            )
            pending.update(status=SourceImage.Status.ERROR, status_reason=reason, aligned_at=now)
            locked.status = AlignmentJob.Status.FAILED
            locked.errors = F("errors") + len(pending_ids)
            locked.done = F("done") + len(pending_ids)
            locked.finished_at = now
            locked.error = (
                f"No worker reported for {settings.CURATOR_JOB_STALE_SECONDS} s after {MAX_RESUMES} "
                f"resumes; the {len(pending_ids)} unfinished images were marked as errors."
            )
            locked.save(update_fields=["status", "errors", "done", "finished_at", "error"])
            logger.warning("alignment job %s failed: no heartbeat", locked.pk)
        else:
            locked.resumed_count = F("resumed_count") + 1
            # The resume itself counts as a sign of life, so it is not resumed again at once.
            locked.heartbeat_at = now
            locked.save(update_fields=["resumed_count", "heartbeat_at"])
            logger.warning("alignment job %s resumed: %d images re-queued", locked.pk, len(pending_ids))
            transaction.on_commit(lambda: _queue_chunks(locked.pk, pending_ids))
    locked.refresh_from_db()
    return locked
