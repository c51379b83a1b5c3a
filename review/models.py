"""Review decisions: what a person decided about a face a model version (or an out-of-fold run)
disputes or suggests a label for. The model moved here from `labeling`; its table keeps the
old name, so databases migrated before the move keep their rows."""

from django.conf import settings
from django.db import models

from curator.models import Face


class ReviewDecision(models.Model):
    """What a person decided about a face a model version disputes; a decided face leaves that
    version's queue."""

    class Decision(models.TextChoices):
        ACCEPTED_MODEL = "accepted", "Accepted the model's label"
        CONFIRMED_HUMAN = "confirmed", "Confirmed the human label"
        EXCLUDED = "excluded", "Excluded"
        UNSURE = "unsure", "Marked unsure"

    face = models.ForeignKey(Face, on_delete=models.CASCADE, related_name="review_decisions")
    model_version = models.ForeignKey(
        "training.ModelVersion", on_delete=models.CASCADE, null=True, blank=True, related_name="review_decisions"
    )
    out_of_fold_run = models.ForeignKey(
        "training.OutOfFoldRun", on_delete=models.CASCADE, null=True, blank=True, related_name="review_decisions"
    )
    decision = models.CharField(max_length=16, choices=Decision.choices)
    label_before = models.CharField(max_length=64, blank=True)
    label_after = models.CharField(max_length=64, blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # The table labeling created before the model moved to this app.
        db_table = "labeling_reviewdecision"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["model_version", "face"]), models.Index(fields=["out_of_fold_run", "face"])]
