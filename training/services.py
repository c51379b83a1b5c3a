"""Training writes: create, run, cancel and fail jobs; register, activate and predict with model
versions. TensorFlow is imported only inside `training_job_run` and `predictions_compute`, which
run in the `train` worker (or synchronously in tests), never when the web process imports this."""

import logging
import os
import tempfile
import threading
import time
import traceback
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connections, transaction
from django.db.models import Max
from django.utils import timezone

from curator.models import Dataset, Face
from training.config import config_build
from training.data import (
    SPLITS,
    TrainingData,
    TrainingDataError,
    read_crop_bytes,
    snapshot_write,
    training_data_collect,
)
from training.models import Architecture, JobStatus, ModelVersion, Prediction, TrainingJob

logger = logging.getLogger(__name__)

FINISHED = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}


class JobCancelled(Exception):
    """Raised inside a running job when a curator cancelled it before training began."""


# --- Creating, cancelling, failing -------------------------------------------------------------


def training_job_create(
    *,
    dataset: Dataset,
    user: AbstractBaseUser | None,
    architecture: str = Architecture.CNN,
    config: dict | None = None,
    keep_best_on_cancel: bool = True,
    retrain_of: ModelVersion | None = None,
    enqueue: bool = True,
) -> TrainingJob:
    """Check the configuration and the dataset (raising ConfigError or TrainingDataError with a
    message for the curator), create the job and queue it on `train` once the transaction commits."""
    full_config = config_build(architecture, config)
    data = training_data_collect(dataset=dataset, seed=full_config["seed"])
    job = TrainingJob.objects.create(
        dataset=dataset,
        created_by=user if user is not None and user.is_authenticated else None,
        architecture=architecture,
        config=full_config,
        keep_best_on_cancel=keep_best_on_cancel,
        retrain_of=retrain_of,
        epochs=full_config["epochs"],
        phase="queued",
        log=_line(f"Queued: {architecture}, {len(data.examples)} labelled faces, classes {', '.join(data.classes)}."),
    )
    if enqueue:
        from training.tasks import train_model

        transaction.on_commit(lambda: train_model.delay(job.pk))
    return job


def training_job_cancel(*, job: TrainingJob, keep_best: bool = True) -> TrainingJob:
    """A queued job is cancelled at once; a running one is asked to stop, which its worker sees
    within about a second (between two batches)."""
    with transaction.atomic():
        job = TrainingJob.objects.select_for_update().get(pk=job.pk)
        if job.status == JobStatus.QUEUED:
            job.status = JobStatus.CANCELLED
            job.finished_at = timezone.now()
            job.phase = "cancelled"
            job.log += _line("Cancelled before it started.")
            job.save(update_fields=["status", "finished_at", "phase", "log"])
        elif job.status == JobStatus.RUNNING:
            job.cancel_requested = True
            job.keep_best_on_cancel = keep_best
            job.save(update_fields=["cancel_requested", "keep_best_on_cancel"])
    return job


def stale_after() -> timedelta:
    return timedelta(seconds=settings.CURATOR_JOB_STALE_SECONDS)


def training_job_check_stale(*, job: TrainingJob) -> TrainingJob:
    """Mark a running job failed when its worker stopped sending heartbeats (killed, machine
    lost): without this it would show "running" forever."""
    if job.status != JobStatus.RUNNING:
        return job
    last = job.heartbeat_at or job.started_at or job.created_at
    if timezone.now() - last <= stale_after():
        return job
    seconds = int((timezone.now() - last).total_seconds())
    updated = TrainingJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING, heartbeat_at=job.heartbeat_at).update(
        status=JobStatus.FAILED,
        finished_at=timezone.now(),
        phase="failed",
        error=f"The training worker stopped reporting {seconds} s ago (it was probably killed or its machine "
        "was lost). Start the job again.",
    )
    if updated:
        logger.warning("training job %s marked failed: no heartbeat for %s s", job.pk, seconds)
    job.refresh_from_db()
    return job


def training_jobs_check_stale(*, dataset: Dataset | None = None) -> int:
    jobs = TrainingJob.objects.filter(status=JobStatus.RUNNING)
    if dataset is not None:
        jobs = jobs.filter(dataset=dataset)
    return sum(training_job_check_stale(job=j).status == JobStatus.FAILED for j in jobs)


# --- Running ---------------------------------------------------------------------------------------


def _line(message: str) -> str:
    return f"[{timezone.now():%H:%M:%S}] {message}\n"


class JobReporter:
    """Carries a running job's progress to its row (throttled) and the cancel request back."""

    def __init__(self, job: TrainingJob):
        self.job_id = job.pk
        self.log_text = job.log
        self.history: list[dict] = list(job.history)
        self.last_write = 0.0
        self.cancelled = False

    def log(self, message: str) -> None:
        logger.info("training job %s: %s", self.job_id, message)
        self.log_text += _line(message)
        TrainingJob.objects.filter(pk=self.job_id).update(log=self.log_text, heartbeat_at=timezone.now())

    def phase(self, name: str, done: int = 0, total: int = 0) -> None:
        TrainingJob.objects.filter(pk=self.job_id).update(
            phase=name, phase_done=done, phase_total=total, heartbeat_at=timezone.now()
        )
        self.last_write = time.monotonic()

    def phase_progress(self, done: int, total: int) -> None:
        if time.monotonic() - self.last_write >= 0.5 or done == total:
            self.last_write = time.monotonic()
            TrainingJob.objects.filter(pk=self.job_id).update(
                phase_done=done, phase_total=total, heartbeat_at=timezone.now()
            )
            if self._poll_cancel():
                raise JobCancelled

    def phase_progress_nocancel(self, done: int, total: int) -> None:
        """For steps a cancel must not cut short (predictions of a version that already exists)."""
        if time.monotonic() - self.last_write >= 0.5 or done == total:
            self.last_write = time.monotonic()
            TrainingJob.objects.filter(pk=self.job_id).update(
                phase_done=done, phase_total=total, heartbeat_at=timezone.now()
            )

    def batch(self, *, epoch: int, epochs: int, batch: int, batches: int) -> None:
        if time.monotonic() - self.last_write < 0.5 and batch not in (0, batches):
            return
        self.last_write = time.monotonic()
        TrainingJob.objects.filter(pk=self.job_id).update(
            epoch=epoch, epochs=epochs, batch=batch, batches_per_epoch=batches, heartbeat_at=timezone.now()
        )
        self._poll_cancel()

    def epoch_end(self, row: dict) -> None:
        self.history.append(row)
        self.log_text += _line(
            "epoch {epoch}: loss {loss:.4f}, accuracy {accuracy:.4f}, validation loss {val_loss:.4f}, "
            "validation accuracy {val_accuracy:.4f}, lr {lr:.2g} ({seconds:.1f} s)".format(**row)
        )
        TrainingJob.objects.filter(pk=self.job_id).update(
            history=self.history, epoch=row["epoch"], log=self.log_text, heartbeat_at=timezone.now()
        )

    def _poll_cancel(self) -> bool:
        if not self.cancelled:
            self.cancelled = TrainingJob.objects.filter(pk=self.job_id, cancel_requested=True).exists()
        return self.cancelled

    def cancel_requested(self) -> bool:
        # Polled from every batch; the DB is asked at most twice a second (in batch()).
        return self.cancelled


class Heartbeat(threading.Thread):
    """Keeps heartbeat_at fresh through long steps that report nothing (TensorFlow start-up,
    building the graph, saving). Dies with the process, which is the point."""

    def __init__(self, job_id: int):
        super().__init__(daemon=True, name=f"training-heartbeat-{job_id}")
        self.job_id = job_id
        self.stop = threading.Event()
        self.interval = max(1.0, min(15.0, settings.CURATOR_JOB_STALE_SECONDS / 4))

    def run(self) -> None:
        try:
            while not self.stop.wait(self.interval):
                TrainingJob.objects.filter(pk=self.job_id, status=JobStatus.RUNNING).update(heartbeat_at=timezone.now())
        except Exception:  # a heartbeat must never take the job down
            logger.exception("heartbeat of training job %s", self.job_id)
        finally:
            connections.close_all()


def _job_start(job_id: int) -> TrainingJob | None:
    with transaction.atomic():
        job = TrainingJob.objects.select_for_update().get(pk=job_id)
        if job.status != JobStatus.QUEUED:
            return None  # cancelled while queued, or delivered twice
        job.status = JobStatus.RUNNING
        job.started_at = job.heartbeat_at = timezone.now()
        job.phase = "checking data"
        job.save(update_fields=["status", "started_at", "heartbeat_at", "phase"])
    return job


def _job_finish(job_id: int, *, status: str, reporter: JobReporter, error: str = "", timings: dict | None = None):
    fields = {"status": status, "finished_at": timezone.now(), "phase": status, "log": reporter.log_text}
    if error:
        fields["error"] = error
    if timings is not None:
        fields["timings"] = timings
    TrainingJob.objects.filter(pk=job_id).update(**fields)


def training_job_run(*, job_id: int) -> TrainingJob:
    """The whole job, in this process: check the data, (compute descriptors,) train, save the
    artifact and snapshot, register the version, predict every face, evaluate on the test split."""
    training_jobs_check_stale()  # one train worker: any other "running" job with an old heartbeat is orphaned
    job = _job_start(job_id)
    if job is None:
        return TrainingJob.objects.get(pk=job_id)
    reporter = JobReporter(job)
    heartbeat = Heartbeat(job.pk)
    heartbeat.start()
    timings: dict[str, float] = {}
    started = time.monotonic()
    try:
        version = _run(job, reporter, timings)
        timings["total_s"] = round(time.monotonic() - started, 2)
        if reporter.cancelled:
            reporter.log(f"Cancelled; kept the best epoch as version {version.number}." if version else "Cancelled.")
            _job_finish(job.pk, status=JobStatus.CANCELLED, reporter=reporter, timings=timings)
        else:
            reporter.log(f"Done in {timings['total_s']:.0f} s: version {version.number}.")
            _job_finish(job.pk, status=JobStatus.SUCCEEDED, reporter=reporter, timings=timings)
    except JobCancelled:
        timings["total_s"] = round(time.monotonic() - started, 2)
        reporter.log("Cancelled before training began.")
        _job_finish(job.pk, status=JobStatus.CANCELLED, reporter=reporter, timings=timings)
    except TrainingDataError as exc:
        reporter.log(f"Refused: {exc}")
        _job_finish(job.pk, status=JobStatus.FAILED, reporter=reporter, error=str(exc), timings=timings)
    except Exception as exc:
        logger.exception("training job %s failed", job.pk)
        reporter.log_text += traceback.format_exc()
        _job_finish(
            job.pk, status=JobStatus.FAILED, reporter=reporter, error=f"{type(exc).__name__}: {exc}", timings=timings
        )
    finally:
        heartbeat.stop.set()
        heartbeat.join(timeout=5)
    return TrainingJob.objects.get(pk=job_id)


def _run(job: TrainingJob, reporter: JobReporter, timings: dict) -> ModelVersion | None:
    config = dict(job.config)
    t = time.monotonic()
    reporter.phase("checking data")
    data = training_data_collect(dataset=job.dataset, seed=config["seed"], check_files=True)
    for note in data.notes:
        reporter.log(note)
    counts = data.counts()
    reporter.log(
        "Faces per split: " + "; ".join(f"{s} " + ", ".join(f"{c} {n}" for c, n in counts[s].items()) for s in SPLITS)
    )
    timings["prepare_s"] = round(time.monotonic() - t, 2)

    t = time.monotonic()
    train, val = data.of_split("train"), data.of_split("val")
    if job.architecture == Architecture.EMBEDDING:
        from training.descriptors import descriptors_for_faces

        reporter.phase("computing descriptors", 0, len(train) + len(val))
        vectors = descriptors_for_faces([(e.face_id, e.crop) for e in train + val], progress=reporter.phase_progress)
        train_inputs = np.stack([vectors[e.face_id] for e in train])
        val_inputs = np.stack([vectors[e.face_id] for e in val])
        timings["descriptors_s"] = round(time.monotonic() - t, 2)
    else:
        reporter.phase("reading crops", 0, len(train) + len(val))
        train_inputs = read_crop_bytes([e.crop for e in train])
        val_inputs = read_crop_bytes([e.crop for e in val])
        timings["read_s"] = round(time.monotonic() - t, 2)

    reporter.phase("loading TensorFlow")
    from training import engine

    reporter.phase("training")
    t = time.monotonic()
    result = engine.fit(
        architecture=job.architecture,
        config=config,
        classes=data.classes,
        train_inputs=train_inputs,
        train_labels=data.labels("train"),
        val_inputs=val_inputs,
        val_labels=data.labels("val"),
        reporter=reporter,
    )
    timings["train_s"] = round(time.monotonic() - t, 2)
    reporter.log(
        f"Training stopped ({result.stopped.replace('_', ' ')}) after {len(result.history)} full epochs; "
        f"best validation loss at epoch {result.best_epoch}."
    )
    if result.stopped == "cancelled":
        job.refresh_from_db(fields=["keep_best_on_cancel"])
        if not job.keep_best_on_cancel or not result.best_epoch:
            return None

    t = time.monotonic()
    reporter.phase("saving")
    version = model_version_register(job=job, data=data, fit=result, config=config, versions=engine.versions())
    timings["save_s"] = round(time.monotonic() - t, 2)

    t = time.monotonic()
    reporter.phase("predicting", 0, job.dataset.faces.count())
    n = predictions_compute(model_version=version, progress=reporter.phase_progress_nocancel)
    reporter.log(f"Stored predictions of version {version.number} for {n} faces.")
    timings["predict_s"] = round(time.monotonic() - t, 2)

    t = time.monotonic()
    reporter.phase("evaluating")
    metrics = model_version_evaluate(model_version=version, data=data)
    metrics.update(
        history=result.history,
        best_epoch=result.best_epoch,
        stopped=result.stopped,
        counts=counts,
        train_seconds=round(result.seconds, 2),
    )
    version.metrics = metrics
    version.save(update_fields=["metrics"])
    timings["evaluate_s"] = round(time.monotonic() - t, 2)
    reporter.log(
        f"Test accuracy {metrics['accuracy']:.4f} on {metrics['n_test']} faces"
        + (f", ROC AUC {metrics['roc_auc']:.4f}" if metrics.get("roc_auc") is not None else "")
        + "."
    )
    return version


# --- The registry ---------------------------------------------------------------------------------


def model_version_register(*, job: TrainingJob, data: TrainingData, fit, config: dict, versions: dict) -> ModelVersion:
    """Save the artifact and the frozen snapshot under datasets/<id>/models/ and create the version."""
    dataset = job.dataset
    with transaction.atomic():
        Dataset.objects.select_for_update().filter(pk=dataset.pk).first()
        number = (ModelVersion.objects.filter(dataset=dataset).aggregate(n=Max("number"))["n"] or 0) + 1
        base = f"datasets/{dataset.pk}/models/v{number}-{job.architecture}-job{job.pk}"
        fd, local = tempfile.mkstemp(suffix=".keras")
        os.close(fd)
        try:
            fit.model.save(local)
            with open(local, "rb") as handle:
                artifact = default_storage.save(f"{base}.keras", File(handle))
        finally:
            os.unlink(local)
        snapshot = snapshot_write(data=data, path=f"{base}-snapshot.csv")
        return ModelVersion.objects.create(
            dataset=dataset,
            job=job,
            number=number,
            architecture=job.architecture,
            artifact=artifact,
            snapshot=snapshot,
            classes=data.classes,
            config={**config, "output": fit.output},
            tf_version=versions["tensorflow"],
            keras_version=versions["keras"],
        )


def model_version_evaluate(*, model_version: ModelVersion, data: TrainingData) -> dict:
    """Metrics on the test split, from the version's stored predictions (so the figures describe
    exactly what the registry holds)."""
    from training.evaluation import evaluate

    test = data.of_split("test")
    stored = dict(
        Prediction.objects.filter(model_version=model_version, face_id__in=[e.face_id for e in test]).values_list(
            "face_id", "probabilities"
        )
    )
    test = [e for e in test if e.face_id in stored]
    index = {name: i for i, name in enumerate(model_version.classes)}
    return evaluate(
        classes=model_version.classes,
        y_true=np.array([index[e.label] for e in test], dtype=np.int64),
        probabilities=np.array([stored[e.face_id] for e in test], dtype=np.float64).reshape(
            len(test), len(model_version.classes)
        ),
        slices=[e.metadata for e in test],
    )


def model_version_activate(*, model_version: ModelVersion) -> ModelVersion:
    """Make this the dataset's active version (at most one per dataset)."""
    with transaction.atomic():
        ModelVersion.objects.filter(dataset_id=model_version.dataset_id, is_active=True).exclude(
            pk=model_version.pk
        ).update(is_active=False)
        ModelVersion.objects.filter(pk=model_version.pk).update(is_active=True)
    model_version.refresh_from_db()
    return model_version


def model_version_deactivate(*, model_version: ModelVersion) -> ModelVersion:
    ModelVersion.objects.filter(pk=model_version.pk).update(is_active=False)
    model_version.refresh_from_db()
    return model_version


# --- Predictions -------------------------------------------------------------------------------------


def predictions_queue(*, model_version: ModelVersion) -> None:
    """Recompute the version's predictions on the `predict` queue once the transaction commits."""
    from training import tasks

    transaction.on_commit(lambda: tasks.predict_version.delay(model_version.pk))


def predictions_compute(*, model_version: ModelVersion, batch_size: int = 256, progress=None, faces=None) -> int:
    """Store the version's probabilities for every face of its dataset (or `faces`), in batches.
    Re-running replaces the rows (keyed by face and version). Faces whose crop file is gone are
    skipped. Returns the number of faces predicted. Runs in a worker: it imports TensorFlow."""
    from training.descriptors import decode_crop, descriptors_for_faces
    from training.inference import load_model_version

    model = load_model_version(model_version)
    queryset = faces if faces is not None else Face.objects.filter(dataset_id=model_version.dataset_id)
    rows = list(queryset.exclude(crop="").order_by("id").values_list("id", "crop", "label"))
    done = 0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        present = [r for r, ok in zip(chunk, _exist([r[1] for r in chunk]), strict=True) if ok]
        if present:
            if model.architecture == Architecture.EMBEDDING:
                vectors = descriptors_for_faces([(r[0], r[1]) for r in present])
                probabilities = model.predict_descriptors(np.stack([vectors[r[0]] for r in present]))
            else:
                crops = _stack_crops([decode_crop(b) for b in read_crop_bytes([r[1] for r in present])])
                probabilities = (
                    np.concatenate([model.predict_crops(group) for group in crops])
                    if crops
                    else np.zeros((0, len(model.classes)))
                )
            _store_predictions(model_version, present, probabilities, model.classes)
        done += len(chunk)
        if progress:
            progress(done, len(rows))
    return Prediction.objects.filter(model_version=model_version).count()


def _exist(paths: list[str]) -> list[bool]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(default_storage.exists, paths))


def _stack_crops(crops: list[np.ndarray]) -> list[np.ndarray]:
    """Group crops by shape (crops of one dataset usually share one size) so each group stacks,
    preserving the order overall."""
    groups: list[np.ndarray] = []
    current: list[np.ndarray] = []
    for crop in crops:
        if current and crop.shape != current[0].shape:
            groups.append(np.stack(current))
            current = []
        current.append(crop)
    if current:
        groups.append(np.stack(current))
    return groups


def _store_predictions(model_version: ModelVersion, rows, probabilities: np.ndarray, classes: list[str]) -> None:
    objects = []
    for (face_id, _crop, label), probs in zip(rows, probabilities, strict=True):
        best = int(np.argmax(probs))
        predicted = classes[best]
        objects.append(
            Prediction(
                face_id=face_id,
                model_version=model_version,
                probabilities=[round(float(p), 7) for p in probs],
                predicted_label=predicted,
                confidence=float(probs[best]),
                disagrees=bool(label) and label != predicted,
            )
        )
    Prediction.objects.bulk_create(
        objects,
        update_conflicts=True,
        unique_fields=["face", "model_version"],
        update_fields=["probabilities", "predicted_label", "confidence", "disagrees"],
    )
