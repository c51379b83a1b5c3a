"""Training jobs, the model registry, per-face predictions and out-of-fold label-issue runs."""

import logging

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from curator.jobs import BackgroundJob
from curator.models import Dataset, Face

logger = logging.getLogger(__name__)


class Architecture(models.TextChoices):
    EMBEDDING = "embedding", "embedding (dlib descriptor of the photo + linear or dense head, default)"
    FINETUNE = "finetune", "finetune (dlib's face ResNet fine-tuned for the classes; most accurate, minutes)"
    PRETRAINED = "pretrained", "pretrained (dlib-models' CC0 gender network, no training)"
    ENSEMBLE = "ensemble", "ensemble (average or stack of other versions)"
    CNN = "cnn", "cnn (batch-norm CNN trained from scratch on the crops)"
    SEED_CNN = "seed-cnn", "seed-cnn (the original scripts' small CNN)"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class TrainingJob(BackgroundJob):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="training_jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    architecture = models.CharField(max_length=16, choices=Architecture.choices, default=Architecture.EMBEDDING)
    config = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    cancel_requested = models.BooleanField(default=False)
    # A cancelled job registers no version unless the curator asked for its best epoch.
    keep_best_on_cancel = models.BooleanField(default=False)
    epoch = models.PositiveIntegerField(default=0)
    epochs = models.PositiveIntegerField(default=0)
    batch = models.PositiveIntegerField(default=0)
    batches_per_epoch = models.PositiveIntegerField(default=0)
    # What the job is doing now (checking data, computing descriptors, training, predicting...),
    # with a count for the phases that are not epochs.
    phase = models.CharField(max_length=32, blank=True)
    phase_done = models.PositiveIntegerField(default=0)
    phase_total = models.PositiveIntegerField(default=0)
    history = models.JSONField(default=list, blank=True, help_text="Per-epoch metrics, one dict per epoch.")
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    timings = models.JSONField(default=dict, blank=True)
    retrain_of = models.ForeignKey(
        "ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="retrain_jobs"
    )

    @property
    def epoch_shown(self) -> int:
        """The epoch every page shows (the job page and the models table alike): the one being
        trained while the job runs, the epochs completed once it has finished."""
        if self.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            return self.epoch
        return len(self.history)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"training job {self.pk} ({self.architecture}) on {self.dataset}"

    def on_stale(self) -> bool:
        seconds = int((timezone.now() - self.last_sign_of_life).total_seconds())
        message = (
            f"The training worker stopped reporting {seconds} s ago (it was probably killed or its machine "
            "was lost). Start the job again."
        )
        failed = self.mark_failed(message, if_heartbeat_unchanged=True, phase="failed")
        if failed:
            logger.warning("training job %s marked failed: no heartbeat for %s s", self.pk, seconds)
        return failed


class ModelVersion(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="model_versions")
    job = models.OneToOneField(
        TrainingJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="model_version"
    )
    number = models.PositiveIntegerField()
    architecture = models.CharField(max_length=16, choices=Architecture.choices)
    artifact = models.CharField(
        max_length=500, blank=True, help_text="Storage path of the .keras file (none for pretrained and ensemble)."
    )
    snapshot = models.CharField(
        max_length=500, blank=True, help_text="Storage path of the frozen faces/labels/splits snapshot."
    )
    classes = models.JSONField(default=list)
    config = models.JSONField(default=dict, blank=True)
    tf_version = models.CharField(max_length=32, blank=True)
    keras_version = models.CharField(max_length=32, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=False)
    # Batches of new or re-aligned faces queued for this version's predictions and not done yet
    # (the active version follows the data); pages say "computing" while it is above 0.
    predictions_pending = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "number"], name="unique_version_number"),
            models.UniqueConstraint(fields=["dataset"], condition=Q(is_active=True), name="one_active_version"),
        ]

    def __str__(self) -> str:
        return f"{self.dataset} v{self.number} ({self.architecture})"


class Prediction(models.Model):
    # Neither key has an index of its own: unique_prediction starts with the face and the indexes
    # below with the version, and every index of this table is written again whenever a relabel
    # flips `disagrees` (100,000 of them in a bulk relabel at a million faces).
    face = models.ForeignKey(Face, on_delete=models.CASCADE, related_name="predictions", db_index=False)
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="predictions", db_index=False
    )
    probabilities = models.JSONField(help_text="One probability per class of the model version, in order.")
    predicted_label = models.CharField(max_length=64)
    confidence = models.FloatField()
    # Denormalised at prediction time and kept in step by relabels, so the queue is one index scan.
    disagrees = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["face", "model_version"], name="unique_prediction")]
        indexes = [
            # The grid's prediction filters at a million faces (issue 21, training/filters.py):
            # each is a semi-join (or, sorted by confidence, an inner join walked in the index's
            # order) on one version's predictions; with face_id last the semi-joins and the
            # counts are index-only scans and the confidence sort's id tie-break is the index's.
            # The disagreement index also serves the review queues (most confident first).
            models.Index(
                fields=["model_version", "disagrees", "confidence", "face"], name="prediction_version_disagrees"
            ),
            models.Index(
                fields=["model_version", "predicted_label", "confidence", "face"], name="prediction_version_label_conf"
            ),
            models.Index(fields=["model_version", "confidence", "face"], name="prediction_version_conf"),
        ]


class OutOfFoldRun(BackgroundJob):
    """k-fold training of the embedding model so every labelled face gets probabilities from a
    model that did not see it; ranked by confident learning."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="out_of_fold_runs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    folds = models.PositiveSmallIntegerField(default=5)
    classes = models.JSONField(default=list)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.JSONField(default=dict, blank=True)

    STALE_MESSAGE = "The worker stopped reporting (it was stopped or lost); start a new run."

    class Meta:
        ordering = ["-created_at"]


class OutOfFoldScore(models.Model):
    run = models.ForeignKey(OutOfFoldRun, on_delete=models.CASCADE, related_name="scores")
    face = models.ForeignKey(Face, on_delete=models.CASCADE, related_name="out_of_fold_scores")
    given_label = models.CharField(max_length=64)
    probabilities = models.JSONField()
    predicted_label = models.CharField(max_length=64)
    is_label_issue = models.BooleanField(default=False)
    # Higher is more likely wrong (e.g. 1 - self-confidence of the given label).
    issue_score = models.FloatField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "face"], name="unique_oof_score")]
        indexes = [models.Index(fields=["run", "is_label_issue", "-issue_score"])]
