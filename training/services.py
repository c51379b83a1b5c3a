"""Training writes: create, run, cancel and fail jobs; register, activate and predict with model
versions. TensorFlow is imported only inside `training_job_run` and `predictions_compute`, which
run in the `train` worker (or synchronously in tests), never when the web process imports this."""

import logging
import os
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import InterfaceError, OperationalError, connections, transaction
from django.db.models import F, Max
from django.utils import timezone

from curator.models import Dataset, Face
from training.config import config_build
from training.data import (
    SPLITS,
    TrainingData,
    TrainingDataError,
    read_crop_bytes,
    read_storage_file,
    snapshot_write,
    streamed_file_gone,
    training_data_collect,
)
from training.models import Architecture, JobStatus, ModelVersion, Prediction, TrainingJob

logger = logging.getLogger(__name__)

FINISHED = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}


class DatasetGone(Exception):
    """The job's dataset was deleted while the job ran: nothing of it may be stored any more (its
    files were deleted with it, and any written now would never be)."""


class JobCancelled(Exception):
    """Raised inside a running job when a curator cancelled it before training began."""


# --- Creating, cancelling, failing -------------------------------------------------------------


def training_job_create(
    *,
    dataset: Dataset,
    user: AbstractBaseUser | None,
    architecture: str = Architecture.EMBEDDING,
    config: dict | None = None,
    keep_best_on_cancel: bool = False,
    retrain_of: ModelVersion | None = None,
    enqueue: bool = True,
) -> TrainingJob:
    """Check the configuration and the dataset (raising ConfigError or TrainingDataError with a
    message for the curator), create the job and queue it on `train` once the transaction commits."""
    full_config = config_build(architecture, config)
    data = training_data_collect(dataset=dataset, seed=full_config["seed"])
    architecture_check(architecture=architecture, config=full_config, dataset=dataset, classes=data.classes)
    job = TrainingJob.objects.create(
        dataset=dataset,
        created_by=user if user is not None and user.is_authenticated else None,
        architecture=architecture,
        config=full_config,
        keep_best_on_cancel=keep_best_on_cancel,
        retrain_of=retrain_of,
        epochs=full_config.get("epochs", 0),
        phase="queued",
        log=_line(f"Queued: {architecture}, {len(data.examples)} labelled faces, classes {', '.join(data.classes)}."),
    )
    if enqueue:
        from training.tasks import train_model

        transaction.on_commit(lambda: train_model.delay(job.pk))
    return job


def training_job_cancel(*, job: TrainingJob, keep_best: bool = False) -> TrainingJob:
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


def training_jobs_check_stale(*, dataset: Dataset | None = None) -> int:
    """Fail the running jobs whose worker stopped sending heartbeats (killed, machine lost), by
    the rule of the stale-job sweep (TrainingJob.on_stale); returns how many were failed. The
    train worker calls this before it starts a job; beat runs the sweep for everything else."""
    jobs = TrainingJob.stale_jobs()
    if dataset is not None:
        jobs = jobs.filter(dataset=dataset)
    return sum(job.on_stale() for job in jobs)


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
        job = TrainingJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status != JobStatus.QUEUED:
            return None  # deleted with its dataset, cancelled while queued, or delivered twice
        job.status = JobStatus.RUNNING
        job.started_at = job.heartbeat_at = timezone.now()
        job.phase = "checking data"
        job.save(update_fields=["status", "started_at", "heartbeat_at", "phase"])
    return job


# Tries to record a job's end across a database restart (waits 1, 2, 4, 8, 10 s between them).
FINISH_ATTEMPTS = 6


def _job_finish(job_id: int, *, status: str, reporter: JobReporter, error: str = "", timings: dict | None = None):
    fields = {"status": status, "finished_at": timezone.now(), "phase": status, "log": reporter.log_text}
    if error:
        fields["error"] = error
    if timings is not None:
        fields["timings"] = timings
    # The job's end must be recorded even when the database just restarted (or failed over) and
    # cut this process's connection: a new connection, a moment later, a few times; otherwise the
    # job would stay "running" until the stale-job sweep fails it with a wrong reason.
    for attempt in range(FINISH_ATTEMPTS):
        try:
            TrainingJob.objects.filter(pk=job_id).update(**fields)
            return
        except (OperationalError, InterfaceError):
            if attempt == FINISH_ATTEMPTS - 1:
                raise
            logger.warning("training job %s: database unreachable, recording its end again", job_id)
            connections["default"].close()
            time.sleep(min(2**attempt, 10))


def training_job_run(*, job_id: int) -> TrainingJob | None:
    """The whole job, in this process: check the data, (compute descriptors,) train, save the
    artifact and snapshot, register the version, predict every face, evaluate on the test split."""
    training_jobs_check_stale()  # one train worker: any other "running" job with an old heartbeat is orphaned
    job = _job_start(job_id)
    if job is None:
        return TrainingJob.objects.filter(pk=job_id).first()  # None: deleted with its dataset
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
            if model_version_activate_first(model_version=version):
                reporter.log(f"Version {version.number} is the dataset's first: it is now the active model.")
            _job_finish(job.pk, status=JobStatus.SUCCEEDED, reporter=reporter, timings=timings)
    except JobCancelled:
        timings["total_s"] = round(time.monotonic() - started, 2)
        reporter.log("Cancelled before training began.")
        _job_finish(job.pk, status=JobStatus.CANCELLED, reporter=reporter, timings=timings)
    except DatasetGone:
        # The job's row went with the dataset: nothing to record, nothing was stored.
        logger.info("training job %s: its dataset was deleted while it ran; nothing stored", job_id)
        return None
    except TrainingDataError as exc:
        reporter.log(f"Refused: {exc}")
        _job_finish(job.pk, status=JobStatus.FAILED, reporter=reporter, error=str(exc), timings=timings)
    except Exception as exc:
        logger.exception("training job %s failed", job.pk)
        reporter.log_text += traceback.format_exc()
        error = streamed_file_gone(exc) or f"{type(exc).__name__}: {exc}"
        if isinstance(exc, (OperationalError, InterfaceError)):
            error = f"The connection to the database was lost ({exc}); start the job again."
        _job_finish(job.pk, status=JobStatus.FAILED, reporter=reporter, error=error, timings=timings)
    finally:
        heartbeat.stop.set()
        heartbeat.join(timeout=5)
    return TrainingJob.objects.filter(pk=job_id).first()


def _run(job: TrainingJob, reporter: JobReporter, timings: dict) -> ModelVersion | None:
    config = dict(job.config)
    t = time.monotonic()
    reporter.phase("checking data")
    data = training_data_collect(dataset=job.dataset, seed=config["seed"], check_files=True)
    architecture_check(architecture=job.architecture, config=config, dataset=job.dataset, classes=data.classes)
    for note in data.notes:
        reporter.log(note)
    counts = data.counts()
    reporter.log(
        "Faces per split: " + "; ".join(f"{s} " + ", ".join(f"{c} {n}" for c, n in counts[s].items()) for s in SPLITS)
    )
    timings["prepare_s"] = round(time.monotonic() - t, 2)

    features = {}
    if job.architecture in (Architecture.EMBEDDING, Architecture.PRETRAINED, Architecture.FINETUNE):
        # Every face of the dataset: training uses the labelled ones, predictions all of them.
        t = time.monotonic()
        from embeddings.descriptors import features_for_faces

        face_ids = list(job.dataset.faces.exclude(crop="").values_list("pk", flat=True))
        reporter.phase("computing descriptors", 0, len(face_ids))
        # The pretrained network alone needs no descriptor: its pre-labels take seconds.
        needs_descriptor = job.architecture != Architecture.PRETRAINED
        features = features_for_faces(face_ids, descriptor=needs_descriptor, progress=reporter.phase_progress)
        unreadable = [e for e in data.examples if e.face_id not in features]
        if unreadable:
            raise TrainingDataError(
                f"The original photos of {len(unreadable)} labelled faces cannot be read from storage (e.g. face "
                f"{unreadable[0].face_id}); this model reads the photo itself. Re-import them or exclude those faces."
            )
        timings["descriptors_s"] = round(time.monotonic() - t, 2)
        reporter.log(
            f"{'Descriptors' if needs_descriptor else 'Pretrained network outputs'} of {len(features)} faces ready "
            f"in {timings['descriptors_s']:.0f} s."
        )

    t = time.monotonic()
    versions = {"tensorflow": "", "keras": ""}
    if job.architecture == Architecture.PRETRAINED:
        result = _Unfitted(choice={"features": "pretrained"})
        reporter.log("The pretrained network needs no training: evaluating it on this dataset's test split.")
    elif job.architecture == Architecture.ENSEMBLE:
        reporter.phase("combining")
        result = _Unfitted(choice=ensemble_fit(config=config, data=data, reporter=reporter))
    else:
        reporter.phase("loading TensorFlow")
        from training import engine

        versions = engine.versions()
        reporter.phase("training")
        result = _fit(job=job, config=config, data=data, reporter=reporter, engine=engine, features=features)
        fitted_without_epochs = job.architecture == Architecture.EMBEDDING and not result.history
        reporter.log(
            f"Fitted in {result.seconds:.1f} s."
            if fitted_without_epochs
            else f"Training stopped ({result.stopped.replace('_', ' ')}) after {len(result.history)} full epochs; "
            f"best validation loss at epoch {result.best_epoch}."
        )
    timings["train_s"] = round(time.monotonic() - t, 2)
    if result.stopped == "cancelled":
        job.refresh_from_db(fields=["keep_best_on_cancel"])
        if not job.keep_best_on_cancel or not result.best_epoch:
            return None

    t = time.monotonic()
    reporter.phase("saving")
    version = model_version_register(job=job, data=data, fit=result, config=config, versions=versions)
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


@dataclass
class _Unfitted:
    """What a version without training (pretrained, ensemble) reports in place of a fit."""

    choice: dict
    model: object = None
    output: str = "softmax"
    history: list = dc_field(default_factory=list)
    best_epoch: int = 0
    stopped: str = "completed"
    seconds: float = 0.0


def _fit(*, job: TrainingJob, config: dict, data: TrainingData, reporter: JobReporter, engine, features: dict):
    """Train the Keras architectures (embedding heads on `features`, CNNs on the crops)."""
    train, val = data.of_split("train"), data.of_split("val")
    if job.architecture == Architecture.EMBEDDING:
        from embeddings.features import model_inputs

        options = embedding_feature_options(config=config, classes=data.classes, features=features.values())
        inputs = {
            option: tuple(
                model_inputs([features[e.face_id] for e in split], use_pretrained=option) for split in (train, val)
            )
            for option in options
        }
        return engine.fit_embedding(
            config=config,
            classes=data.classes,
            inputs=inputs,
            train_labels=data.labels("train"),
            val_labels=data.labels("val"),
            reporter=reporter,
        )
    if job.architecture == Architecture.FINETUNE:
        return _fit_finetune(
            config=config, data=data, reporter=reporter, engine=engine, features=features, dataset_id=job.dataset_id
        )
    # The crops stream from storage while the model trains (training.engine.file_dataset): the
    # job holds their paths, never their bytes.
    return engine.fit(
        architecture=job.architecture,
        config=config,
        classes=data.classes,
        train_inputs=[e.crop for e in train],
        train_labels=data.labels("train"),
        val_inputs=[e.crop for e in val],
        val_labels=data.labels("val"),
        reporter=reporter,
        read=read_storage_file,
    )


def _fit_finetune(*, config: dict, data: TrainingData, reporter: JobReporter, engine, features: dict, dataset_id: int):
    """The face network fine-tuned on dlib's chips of the training faces, its head started from the
    descriptors already computed. The chips are cut from the photos once per face and kept in
    storage as PNG files (embeddings.descriptors.chip_files_for_faces), which the training streams:
    a chip is 67 kB decoded, 67 GB at a million faces, too much to hold, and cutting it again from
    the photo every epoch would decode every photo every epoch. PNG is lossless, so the model sees
    exactly the chips it saw when they were held in memory."""
    from embeddings.descriptors import chip_files_for_faces

    train, val = data.of_split("train"), data.of_split("val")
    reporter.phase("cutting chips", 0, len(train) + len(val))
    chips = chip_files_for_faces(
        [e.face_id for e in train + val], dataset_id=dataset_id, progress=reporter.phase_progress
    )
    missing = [e.face_id for e in train + val if e.face_id not in chips]
    if missing:
        raise TrainingDataError(
            f"The original photos of {len(missing)} labelled faces cannot be decoded (e.g. face {missing[0]}); "
            "re-import them or exclude those faces."
        )
    descriptors = [features[e.face_id].descriptor for e in train] + [
        features[e.face_id].descriptor_flipped for e in train
    ]
    reporter.phase("training")
    return engine.fit_finetune(
        config=config,
        classes=data.classes,
        train_chips=[chips[e.face_id] for e in train],
        train_descriptors=np.stack(descriptors).astype(np.float32),
        train_labels=data.labels("train"),
        val_chips=[chips[e.face_id] for e in val],
        val_labels=data.labels("val"),
        read=read_storage_file,
        reporter=reporter,
    )


def embedding_feature_options(*, config: dict, classes: list[str], features) -> list[bool]:
    """Whether the embedding model may use the pretrained network's logit (True), not (False), or
    both to be chosen between on held-out data."""
    from embeddings import pretrained

    wanted = config.get("pretrained_feature", "auto")
    usable = pretrained.classes_supported(classes) and all(f.pretrained is not None for f in features)
    if wanted == "yes":
        if not usable:
            raise TrainingDataError(
                "pretrained_feature is yes, but the pretrained gender network "
                + (
                    "only answers female/male and this dataset's classes are " + ", ".join(classes) + "."
                    if not pretrained.classes_supported(classes)
                    else "is not available here (" + pretrained.available()[1] + ")."
                )
            )
        return [True]
    if wanted == "no" or not usable:
        return [False]
    return [False, True]


# --- Architectures that combine or reuse -----------------------------------------------------------


def architecture_check(*, architecture: str, config: dict, dataset: Dataset, classes: list[str]) -> None:
    """What the data checks cannot see: the pretrained network's classes and availability, an
    ensemble's members. Raises TrainingDataError with the reason."""
    from embeddings import pretrained

    if architecture == Architecture.PRETRAINED:
        if not pretrained.classes_supported(classes):
            raise TrainingDataError(
                "The pretrained network answers female/male only; this dataset trains "
                f"{', '.join(classes)}. Use the embedding architecture."
            )
        ok, why = pretrained.available()
        if not ok:
            raise TrainingDataError(why)
    if architecture != Architecture.ENSEMBLE:
        return
    member_ids = list(config.get("members") or [])
    if len(member_ids) < 2:
        raise TrainingDataError("An ensemble needs at least two member versions (config “members”).")
    members = {v.pk: v for v in ModelVersion.objects.filter(pk__in=member_ids, dataset=dataset)}
    missing = [str(pk) for pk in member_ids if pk not in members]
    if missing:
        raise TrainingDataError(
            f"Ensemble members {', '.join(missing)} are not versions of “{dataset.name}” (deleted, or of "
            "another dataset)."
        )
    for pk in member_ids:
        member = members[pk]
        if member.architecture == Architecture.ENSEMBLE:
            raise TrainingDataError(f"v{member.number} is itself an ensemble; combine its members instead.")
        if list(member.classes) != list(classes):
            raise TrainingDataError(
                f"v{member.number} was trained on {', '.join(member.classes)}; the dataset trains "
                f"{', '.join(classes)} now. Every member must have the dataset's classes."
            )


def ensemble_fit(*, config: dict, data: TrainingData, reporter: JobReporter) -> dict:
    """The ensemble's combination, a measured choice for "auto": the average of the members'
    probabilities, or a logistic regression on their log probabilities (stacking), each scored on
    the validation faces (stacking out of fold, by cross-validation there); stacking is kept only
    when it scores higher. Members whose own fit used the validation split (the linear head, fitted
    on train+val) look better there than they are, which favours neither combine over the other."""
    from training.inference import load_model_version, stacking_inputs
    from training.linear import logistic_cv_fit

    wanted = config.get("combine", "auto")
    choice: dict = {"members": list(config["members"]), "combine": wanted}
    if wanted == "average":
        return choice
    val = data.of_split("val")
    members = [load_model_version(ModelVersion.objects.get(pk=pk)) for pk in choice["members"]]
    kept, parts = faces_probabilities(models=members, rows=[(e.face_id, e.crop) for e in val])
    labels = {e.face_id: e for e in val}
    index = {name: i for i, name in enumerate(data.classes)}
    y = np.array([index[labels[face_id].label] for face_id in kept])
    if len(set(y.tolist())) < 2:
        if wanted == "stacked":
            raise TrainingDataError("Stacking needs validation faces of at least two classes.")
        reporter.log("Fewer than two classes among the validation faces: averaging the members.")
        choice["combine"] = "average"
        return choice
    search, stacked_accuracy = logistic_cv_fit(stacking_inputs(parts), y)
    average_accuracy = float((np.mean(parts, axis=0).argmax(axis=1) == y).mean())
    choice["combine_val_accuracy"] = {"average": round(average_accuracy, 4), "stacked": round(stacked_accuracy, 4)}
    if wanted == "auto":
        choice["combine"] = "stacked" if stacked_accuracy > average_accuracy else "average"
    reporter.log(
        f"On {len(kept)} validation faces: average {average_accuracy:.4f}, stacked {stacked_accuracy:.4f} "
        f"(cross-validated, C={search.C_[0]:.3g}); combining by {choice['combine']}."
    )
    if choice["combine"] == "stacked":
        choice["stacker"] = {"coef": search.coef_.tolist(), "intercept": search.intercept_.tolist()}
    return choice


# --- The registry ---------------------------------------------------------------------------------


def model_version_register(*, job: TrainingJob, data: TrainingData, fit, config: dict, versions: dict) -> ModelVersion:
    """Save the artifact and the frozen snapshot under datasets/<id>/models/ and create the version."""
    dataset = job.dataset
    with transaction.atomic():
        # The dataset's row, locked until the version is committed: a deletion that came first has
        # taken its files already (store nothing: DatasetGone); one that comes now waits for this
        # commit, then deletes this version and its files with the rest (curator's dataset_delete
        # locks the row before it collects what to delete).
        if Dataset.objects.select_for_update().filter(pk=dataset.pk).first() is None:
            raise DatasetGone(f"dataset {dataset.pk} was deleted")
        number = (ModelVersion.objects.filter(dataset=dataset).aggregate(n=Max("number"))["n"] or 0) + 1
        base = f"datasets/{dataset.pk}/models/v{number}-{job.architecture}-job{job.pk}"
        artifact = ""
        if fit.model is not None:  # pretrained and ensemble versions have no weights of their own
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
            config={**config, "output": fit.output, **fit.choice},
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
    metrics = evaluate(
        classes=model_version.classes,
        y_true=np.array([index[e.label] for e in test], dtype=np.int64),
        probabilities=np.array([stored[e.face_id] for e in test], dtype=np.float64).reshape(
            len(test), len(model_version.classes)
        ),
        slices=[e.metadata for e in test],
    )
    metrics["identity_leakage"] = identity_leakage_measure(model_version=model_version, data=data, test=test)
    return metrics


def identity_leakage_measure(*, model_version: ModelVersion, data: TrainingData, test: list) -> dict | None:
    """How many test faces share an identity cluster (embeddings.identities) with a training face:
    their accuracy says little about unseen people. None when the clusters cannot be computed."""
    from embeddings.selectors import identity_leakage
    from embeddings.services import identity_clusters_update

    try:
        identity_clusters_update(dataset_id=model_version.dataset_id)
    except Exception:  # the metrics must not fail because of this extra figure
        logger.exception("identity clusters of dataset %s could not be computed", model_version.dataset_id)
        return None
    return identity_leakage(train_ids=[e.face_id for e in data.of_split("train")], test_ids=[e.face_id for e in test])


class ActivationRefused(ValueError):
    """The version cannot serve its dataset as it is now; the message says why."""


def model_version_activate(*, model_version: ModelVersion) -> ModelVersion:
    """Make this the dataset's active version (at most one per dataset). A version whose classes
    the dataset no longer has, or an ensemble with a deleted member, is refused."""
    from training.serving import version_classes_problem

    problem = version_classes_problem(model_version)
    if not problem and model_version.architecture == Architecture.ENSEMBLE:
        members = list(model_version.config.get("members") or [])
        found = ModelVersion.objects.filter(pk__in=members, dataset_id=model_version.dataset_id).count()
        if found != len(members):
            problem = f"Ensemble v{model_version.number} has a member version that was deleted."
    if problem:
        raise ActivationRefused(problem)
    with transaction.atomic():
        ModelVersion.objects.filter(dataset_id=model_version.dataset_id, is_active=True).exclude(
            pk=model_version.pk
        ).update(is_active=False)
        ModelVersion.objects.filter(pk=model_version.pk).update(is_active=True)
    model_version.refresh_from_db()
    return model_version


def model_version_activate_first(*, model_version: ModelVersion) -> bool:
    """Activate a dataset's first version (a successful job's, when the dataset has no other
    version), so a new user's first model serves predictions, suggestions and the predict page
    at once; later versions are activated by a curator (one click on the job page or the models
    table). Returns whether it was activated."""
    if ModelVersion.objects.filter(dataset_id=model_version.dataset_id).exclude(pk=model_version.pk).exists():
        return False
    try:
        model_version_activate(model_version=model_version)
    except ActivationRefused:
        return False
    return True


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
    Re-running replaces the rows (keyed by face and version). Faces whose crop or photo is gone
    are skipped. Returns the number of faces predicted. Runs in a worker: it imports TensorFlow."""
    from training.inference import load_model_version

    model = load_model_version(model_version)
    queryset = faces if faces is not None else Face.objects.filter(dataset_id=model_version.dataset_id)
    queryset = queryset.exclude(crop="").order_by("id")
    total = queryset.count()
    done, last_id = 0, 0
    # A page of faces at a time, by id (keyset): memory stays one batch whatever the dataset's size.
    while chunk := list(queryset.filter(id__gt=last_id).values_list("id", "crop", "label")[:batch_size]):
        last_id = chunk[-1][0]
        labels = {face_id: label for face_id, _, label in chunk}
        kept, (probabilities,) = faces_probabilities(models=[model], rows=[(r[0], r[1]) for r in chunk])
        if kept:
            _store_predictions(model_version, [(fid, labels[fid]) for fid in kept], probabilities, model.classes)
        done += len(chunk)
        if progress:
            progress(done, max(total, done))
    return Prediction.objects.filter(model_version=model_version).count()


def predictions_follow_queue(*, dataset_ids, face_ids: list[int]) -> int:
    """Queue the predictions of these faces by their dataset's active version, if it has one, on
    the `predict` queue once the transaction commits; the version counts the batch as pending
    meanwhile, so pages say "computing". Returns the number of versions queued."""
    from training import tasks

    face_ids = sorted({int(f) for f in face_ids})
    versions = list(ModelVersion.objects.filter(dataset_id__in=list(dataset_ids), is_active=True))
    for version in versions:
        ids = list(Face.objects.filter(pk__in=face_ids, dataset_id=version.dataset_id).values_list("pk", flat=True))
        if not ids:
            continue

        def send(version_id=version.pk, ids=ids):
            ModelVersion.objects.filter(pk=version_id).update(predictions_pending=F("predictions_pending") + 1)
            tasks.predict_faces.delay(version_id, ids)

        transaction.on_commit(send, robust=True)
    return len(versions)


def predictions_follow_compute(*, version_id: int, face_ids: list[int]) -> int:
    """Predict these faces with the version (gone faces and a deleted version are skipped), then
    count the batch as done. Returns the number of faces predicted."""
    try:
        version = ModelVersion.objects.filter(pk=version_id).first()
        if version is None:
            return 0
        faces = Face.objects.filter(pk__in=face_ids, dataset_id=version.dataset_id)
        predictions_compute(model_version=version, faces=faces)
        return Prediction.objects.filter(model_version=version, face_id__in=face_ids).count()
    finally:
        ModelVersion.objects.filter(pk=version_id, predictions_pending__gt=0).update(
            predictions_pending=F("predictions_pending") - 1
        )


def faces_probabilities(*, models: list, rows: list[tuple[int, str]]) -> tuple[list[int], list[np.ndarray]]:
    """Each loaded model's probabilities of the faces (face id, crop path) it can see: the crops
    are read when a model takes crops, the photo features when it takes features (cached by
    embeddings.descriptors). Returns the face ids kept (crop and photo readable) and one
    [len(kept), n_classes] array per model."""
    from embeddings.descriptors import chips_for_faces, features_for_faces
    from embeddings.features import decode_crop

    kept = [r for r, ok in zip(rows, _exist([r[1] for r in rows]), strict=True) if ok]
    features = None
    if any(m.needs_features for m in models):
        features = features_for_faces(
            [face_id for face_id, _ in kept], descriptor=any(m.needs_descriptor for m in models)
        )
        kept = [r for r in kept if r[0] in features]
    chips = None
    if any(m.needs_chips for m in models):
        # One process: predictions run in chunks, and a pool per chunk costs more than it saves.
        cut = chips_for_faces([face_id for face_id, _ in kept], processes=1)
        kept = [r for r in kept if r[0] in cut]
        chips = np.stack([cut[face_id] for face_id, _ in kept]) if kept else None
    crops = None
    if any(m.needs_crops for m in models):
        decoded = [decode_crop(b) for b in read_crop_bytes([path for _, path in kept])]
        crops = _stack_crops(decoded)
    face_features = [features[face_id] for face_id, _ in kept] if features is not None else None
    results = []
    for model in models:
        if not kept:
            results.append(np.zeros((0, len(model.classes)), dtype=np.float32))
        elif model.needs_crops and len(crops) > 1:
            # Crops of different sizes (a dataset re-aligned at another size) cannot be one array.
            results.append(_predict_groups(model, crops, face_features, chips))
        else:
            results.append(model.predict(crops=crops[0] if crops else None, features=face_features, chips=chips))
    return [face_id for face_id, _ in kept], results


def _predict_groups(model, crop_groups: list[np.ndarray], features, chips) -> np.ndarray:
    parts, offset = [], 0
    for group in crop_groups:
        part = slice(offset, offset + len(group))
        parts.append(
            model.predict(
                crops=group,
                features=features[part] if features is not None else None,
                chips=chips[part] if chips is not None else None,
            )
        )
        offset += len(group)
    return np.concatenate(parts)


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
    """rows: (face id, its label now) per row of probabilities."""
    objects = []
    for (face_id, label), probs in zip(rows, probabilities, strict=True):
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


# --- Retraining and labels changed elsewhere ------------------------------------------------------


def version_retrain(*, version: ModelVersion, user: AbstractBaseUser | None) -> TrainingJob:
    """A new training job with exactly the configuration of the version's job (same architecture,
    seed and hyper-parameters) on the dataset's labels as they are now (the review queue's
    one-click retrain). Raises what training_job_create raises (ValueError subclasses)."""
    from training.config import DEFAULTS

    source = version.job.config if version.job_id and version.job else version.config
    config = {k: v for k, v in (source or {}).items() if k in DEFAULTS.get(version.architecture, {})}
    return training_job_create(
        dataset=version.dataset, user=user, architecture=version.architecture, config=config, retrain_of=version
    )


def predictions_disagrees_sync(*, face_ids: list[int], label: str) -> None:
    """`Prediction.disagrees` is denormalised for the review queue: a face disagrees when it has
    a label and the prediction differs from it. Called (through labeling's `labels_changed`
    signal, inside the labeling transaction) when faces got a new label; only rows whose flag
    flips are written."""
    from django.db import connection
    from django.db.models.expressions import RawSQL

    ids = list(face_ids)
    if connection.vendor == "postgresql" and len(ids) > 100:
        # One array parameter instead of thousands of placeholders (as labeling's bulk writes do).
        ids = RawSQL("SELECT unnest(%s::bigint[])", [ids])
    preds = Prediction.objects.filter(face_id__in=ids)
    if not label:
        preds.filter(disagrees=True).update(disagrees=False)
        return
    preds.filter(disagrees=True, predicted_label=label).update(disagrees=False)
    preds.filter(disagrees=False).exclude(predicted_label=label).update(disagrees=True)
