"""Label history. Every change of a face's label state is a LabelEvent, so
any change can be shown, undone, or reverted as part of its bulk action."""

from django.conf import settings
from django.db import models

from curator.models import Dataset, Face


class BulkAction(models.Model):
    """One action by one person over one or more faces (a key press is an action of one face)."""

    class Kind(models.TextChoices):
        LABEL = "label", "Set label"
        UNSURE = "unsure", "Mark unsure"
        EXCLUDE = "exclude", "Exclude"
        INCLUDE = "include", "Include"
        SPLIT = "split", "Assign split"
        RULE = "rule", "Exclusion rule"
        AUTO_SPLIT = "auto_split", "Automatic split"
        DEDUPLICATE = "deduplicate", "Keep one of duplicates"
        REVIEW = "review", "Model review"
        NOT_A_FACE = "not_a_face", "Not a face"
        # Identity clusters (the identities page): no face field changes, the action names an
        # embeddings.IdentityDecision in its params, which a revert turns off.
        SAME_PERSON = "same_person", "Same person (merge)"
        DIFFERENT_PEOPLE = "different_people", "Different people (split)"
        UNDO = "undo", "Undo"
        REVERT = "revert", "Revert"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="bulk_actions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    params = models.JSONField(default=dict, blank=True)
    face_count = models.PositiveIntegerField(default=0)
    reverts = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reverted_by")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]


class LabelEvent(models.Model):
    """One field of one face changed: which, from what, to what, by whom, in which action."""

    class Field(models.TextChoices):
        LABEL = "label", "Label"
        UNSURE = "is_unsure", "Unsure"
        EXCLUDED = "is_excluded", "Excluded"
        SPLIT = "split", "Split"

    face = models.ForeignKey(Face, on_delete=models.CASCADE, related_name="label_events")
    action = models.ForeignKey(BulkAction, on_delete=models.CASCADE, related_name="events")
    field = models.CharField(max_length=16, choices=Field.choices)
    old_value = models.CharField(max_length=64, blank=True)
    new_value = models.CharField(max_length=64, blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["face", "-created_at"])]
