"""Training reads: the jobs and versions a user may see, a job's progress, and the comparison of
two versions."""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from curator.models import Dataset, Face, SourceImage
from curator.permissions import visible_datasets
from training.models import JobStatus, ModelVersion, Prediction, TrainingJob

PHASE_NAMES = {
    "queued": "Waiting for the training worker",
    "checking data": "Checking the faces and crop files",
    "computing descriptors": "Computing dlib face descriptors",
    "reading crops": "Reading the crops",
    "loading TensorFlow": "Loading TensorFlow",
    "training": "Training",
    "saving": "Saving the model",
    "predicting": "Predicting every face",
    "evaluating": "Evaluating on the test split",
}


def job_for(user: AbstractBaseUser, job_id: int) -> TrainingJob:
    """A job of a dataset the user may see; 404 otherwise (ids are not confirmed to exist)."""
    return get_object_or_404(
        TrainingJob.objects.select_related("dataset", "created_by").filter(dataset__in=visible_datasets(user)),
        pk=job_id,
    )


def version_for(user: AbstractBaseUser, version_id: int) -> ModelVersion:
    return get_object_or_404(
        ModelVersion.objects.select_related("dataset", "job").filter(dataset__in=visible_datasets(user)),
        pk=version_id,
    )


def dataset_jobs(*, dataset: Dataset) -> QuerySet[TrainingJob]:
    return TrainingJob.objects.filter(dataset=dataset).select_related("created_by").order_by("-created_at")


def dataset_versions(*, dataset: Dataset) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(dataset=dataset).order_by("-number")


def queue_position(*, job: TrainingJob) -> int:
    """How many jobs (of any dataset) run or wait before this queued one."""
    if job.status != JobStatus.QUEUED:
        return 0
    return (
        TrainingJob.objects.filter(status=JobStatus.RUNNING).count()
        + TrainingJob.objects.filter(status=JobStatus.QUEUED, created_at__lt=job.created_at).count()
    )


def job_progress(*, job: TrainingJob) -> dict:
    finished = job.status in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
    epochs = max(job.epochs, 1)
    batches = max(job.batches_per_epoch, 1)
    if job.phase == "training" or (job.history and not finished):
        done_epochs = max(job.epoch - 1, 0) + min(job.batch, batches) / batches
        percent = 100.0 * min(done_epochs / epochs, 1.0)
    elif job.status == JobStatus.SUCCEEDED:
        percent = 100.0
    else:
        percent = 100.0 * len(job.history) / epochs if job.history else 0.0
    last = job.history[-1] if job.history else {}
    version = ModelVersion.objects.filter(job=job).only("pk", "number", "is_active").first()
    active = ModelVersion.objects.filter(dataset_id=job.dataset_id, is_active=True).only("pk", "number").first()
    return {
        "id": job.pk,
        "status": job.status,
        "status_display": job.get_status_display(),
        "phase": job.phase,
        "phase_display": PHASE_NAMES.get(job.phase, job.phase.capitalize()),
        "phase_done": job.phase_done,
        "phase_total": job.phase_total,
        "epoch": job.epoch_shown,
        "epochs": job.epochs,
        "batch": job.batch,
        "batches_per_epoch": job.batches_per_epoch,
        "percent": round(percent, 1),
        "last_epoch": last,
        "history": job.history,
        "cancel_requested": job.cancel_requested,
        "finished": finished,
        "error": job.error,
        "timings": job.timings,
        "queue_position": queue_position(job=job),
        "model_version": version.pk if version else None,
        "model_version_number": version.number if version else None,
        "model_version_active": bool(version and version.is_active),
        # The dataset's first version is activated by the job itself (services.model_version_activate_first).
        "first_version": bool(version)
        and not ModelVersion.objects.filter(dataset_id=job.dataset_id, number__lt=version.number).exists(),
        "active_version": active.pk if active else None,
        "active_version_number": active.number if active else None,
    }


def versions_compare(*, a: ModelVersion, b: ModelVersion, limit: int = 300) -> dict:
    """The two versions' metrics side by side, and the faces on which their predictions differ."""
    pa = dict(Prediction.objects.filter(model_version=a).values_list("face_id", "predicted_label"))
    pb = dict(Prediction.objects.filter(model_version=b).values_list("face_id", "predicted_label"))
    common = pa.keys() & pb.keys()
    differ_ids = sorted(fid for fid in common if pa[fid] != pb[fid])
    from curator.models import Face

    faces = Face.objects.filter(pk__in=differ_ids[:limit]).order_by("id")
    rows = [{"face": f, "a": pa[f.pk], "b": pb[f.pk], "label": f.label} for f in faces]
    return {
        "common": len(common),
        "differ": len(differ_ids),
        "rows": rows,
        "shown": len(rows),
        "a_right_on_shown": sum(1 for r in rows if r["label"] and r["label"] == r["a"]),
        "b_right_on_shown": sum(1 for r in rows if r["label"] and r["label"] == r["b"]),
        "metric_rows": _metric_rows(a, b),
    }


def _metric_rows(a: ModelVersion, b: ModelVersion) -> list[dict]:
    """Rows of the comparison: `digits` to show (None: a count), and for the counts of faces the
    grid parameters (`grid`, besides model=<version>) that select exactly those faces."""
    rows = []
    for key, name, digits in (
        ("accuracy", "Test accuracy", 3),
        ("balanced_accuracy", "Balanced accuracy", 3),
        ("macro_f1", "Macro F1", 3),
        ("roc_auc", "ROC AUC", 3),
        ("ece", "Calibration error (ECE)", 3),
        ("n_test", "Test faces", None),
        ("train_seconds", "Training seconds", 1),
        ("best_epoch", "Best epoch", None),
    ):
        row = {"name": name, "a": a.metrics.get(key), "b": b.metrics.get(key), "digits": digits}
        if key == "n_test":
            row["grid"] = {"model_split": "test"}
        rows.append(row)
        if key == "n_test":
            rows.append(
                {
                    "name": "Test errors",
                    "a": _test_errors(a),
                    "b": _test_errors(b),
                    "digits": None,
                    "grid": {"model_split": "test", "model_correct": "0"},
                }
            )
    rows.append(
        {
            "name": "Disputed faces (prediction differs from the current label)",
            "a": Prediction.objects.filter(model_version=a, disagrees=True).count(),
            "b": Prediction.objects.filter(model_version=b, disagrees=True).count(),
            "digits": None,
            "grid": {"disagrees": "1"},
        }
    )
    for kind in sorted(set(a.metrics.get("bias", {})) | set(b.metrics.get("bias", {}))):
        ga = a.metrics.get("bias", {}).get(kind, {}).get("gap")
        gb = b.metrics.get("bias", {}).get(kind, {}).get("gap")
        rows.append({"name": f"Accuracy gap across {kind.replace('_', ' ')}", "a": ga, "b": gb, "digits": 3})
    return rows


def _test_errors(version: ModelVersion) -> int | None:
    """Wrong predictions on the test split (accuracy is stored to 6 places: exact for any n here)."""
    n, accuracy = version.metrics.get("n_test"), version.metrics.get("accuracy")
    if not isinstance(n, int) or not isinstance(accuracy, (int, float)):
        return None
    return n - round(accuracy * n)


# --- Predictions for labeling's grid and detail panel (see labeling/extensions.py) ---------------


class _PredictionProvider:
    """Training's predictions as labeling reads them; registered in TrainingConfig.ready()."""

    def versions(self, *, dataset: Dataset) -> QuerySet[ModelVersion]:
        return dataset_versions(dataset=dataset)

    def version(self, *, dataset: Dataset, version_id: int) -> ModelVersion | None:
        return ModelVersion.objects.filter(dataset=dataset, pk=version_id).first()

    def active_version(self, *, dataset: Dataset) -> ModelVersion | None:
        return ModelVersion.objects.filter(dataset=dataset, is_active=True).first()

    def predictions(self, *, model_version: ModelVersion, face_ids: list[int]) -> dict[int, tuple[str, float]]:
        if model_version is None or not face_ids:
            return {}
        rows = Prediction.objects.filter(model_version=model_version, face_id__in=list(face_ids))
        return {
            face_id: (label, conf)
            for face_id, label, conf in rows.values_list("face_id", "predicted_label", "confidence")
        }

    def face_history(self, *, face, limit: int = 10) -> list[dict]:
        rows = Prediction.objects.filter(face=face).select_related("model_version").order_by("-model_version__number")
        return [
            {
                "version": p.model_version,
                "label": p.predicted_label,
                "confidence": p.confidence,
                "probabilities": list(zip(p.model_version.classes, p.probabilities, strict=False)),
                "disagrees": p.disagrees,
            }
            for p in rows[:limit]
        ]

    def face_ids(self, *, model_version: ModelVersion, **lookups) -> QuerySet:
        return Prediction.objects.filter(model_version=model_version, **lookups).values("face_id")

    def version_has_splits(self, *, model_version: ModelVersion) -> bool:
        return bool(model_version.snapshot)

    def version_splits(self, *, model_version: ModelVersion) -> dict[int, str] | None:
        """The snapshot's splits (the job's own split of faces the dataset had none for included)."""
        from training.data import snapshot_read

        if not model_version.snapshot:
            return None
        try:
            return {row["face_id"]: row["split"] for row in snapshot_read(model_version.snapshot)}
        except (FileNotFoundError, OSError):
            return None


PREDICTION_PROVIDER = _PredictionProvider()


# --- Rows the review queues start from (review joins them with its decisions) -----------------


def active_predictions_progress(*, dataset: Dataset) -> dict | None:
    """The active version's predictions of the dataset's faces: how many faces it has predicted,
    of how many aligned faces, and whether new faces' predictions are being computed (queued on
    `predict`, or waiting for their alignment or descriptors). None without an active version."""
    from embeddings.models import DescriptorSet

    version = ModelVersion.objects.filter(dataset=dataset, is_active=True).first()
    if version is None:
        return None
    faces = Face.objects.filter(dataset=dataset).exclude(crop="").count()
    done = Prediction.objects.filter(model_version=version, face__dataset=dataset).count()
    upstream = (
        DescriptorSet.objects.filter(dataset=dataset, batches_pending__gt=0).exists()
        or SourceImage.objects.filter(dataset=dataset, status=SourceImage.Status.PENDING).exists()
    )
    # Faces still being aligned or described will be predicted next: that is "computing" too.
    computing = version.predictions_pending > 0 or upstream
    return {"version": version, "faces": faces, "done": done, "computing": computing, "missing": faces - done}


def version_disputed_count(*, version: ModelVersion) -> int:
    """Faces where the version's prediction differs from the current label: included faces only,
    as the review queue counts them (an excluded face is out of the data, so not disputed). The
    version page and the model card both say this number."""
    return Prediction.objects.filter(model_version=version, disagrees=True, face__is_excluded=False).count()


def version_class_colours(*, version: ModelVersion) -> list[str]:
    """The version's classes in the colours of its dataset's class list (every page's colours)."""
    from curator.colours import class_colour

    return [class_colour(version.dataset.classes, name) for name in version.classes]


def version_predictions(*, model_version: ModelVersion) -> QuerySet[Prediction]:
    """Every prediction of one model version (a queryset to narrow)."""
    return Prediction.objects.filter(model_version=model_version)


def run_scores(*, run) -> QuerySet:
    """Every face's out-of-fold score of one run (a queryset to narrow)."""
    from training.models import OutOfFoldScore

    return OutOfFoldScore.objects.filter(run=run)


def dataset_runs(*, dataset: Dataset) -> QuerySet:
    """The dataset's out-of-fold runs, newest first."""
    from training.models import OutOfFoldRun

    return OutOfFoldRun.objects.filter(dataset=dataset).order_by("-created_at")


def version_latest_retrain(*, version: ModelVersion) -> tuple[TrainingJob | None, ModelVersion | None]:
    """The latest job that retrains this version, and the version it made (None until it has)."""
    job = TrainingJob.objects.filter(retrain_of=version).order_by("-created_at").first()
    return job, (ModelVersion.objects.filter(job=job).first() if job else None)


def ensemble_members(*, version: ModelVersion) -> list[dict]:
    """An ensemble's member versions in order; a deleted one is listed as missing."""
    ids = list(version.config.get("members") or []) if version.architecture == "ensemble" else []
    found = ModelVersion.objects.filter(pk__in=ids, dataset_id=version.dataset_id).in_bulk()
    return [{"id": pk, "version": found.get(pk)} for pk in ids]


def version_settings(*, version: ModelVersion) -> list[tuple[str, str]]:
    """The config as (key, value) rows for the page, the stacking weights summarised."""
    rows = []
    for key, value in version.config.items():
        if key == "stacker" and isinstance(value, dict):
            value = f"logistic regression on the members' log probabilities, {len(value.get('coef', [[]])[0])} weights"
        rows.append((key, str(value)))
    return rows
