"""Label history. Every change of a face's label state is a LabelEvent, so
any change can be shown, undone, or reverted as part of its bulk action."""

from django.conf import settings
from django.db import models

from curator.jobs import BackgroundJob
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
        # The history page, newest first, by keyset from the action it continues (issue 21): a
        # backward walk of this index from the cursor, one page long, at any depth.
        indexes = [models.Index(fields=["dataset", "created_at", "id"], name="action_dataset_created_id")]


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
        indexes = [
            models.Index(fields=["face", "-created_at"]),
            # An action's events in face order: the revert preview's pages (a 100,000-face action).
            models.Index(fields=["action", "face"], name="labelevent_action_face"),
        ]


class ExportJob(BackgroundJob):
    """One export zip, built in the background part by part (labeling.services.export_job_run):
    the faces are cut into parts of EXPORT_PART_FACES by id when the job starts (`boundaries`,
    the last face id of each part), each part is written to storage as it is finished and
    counted in `parts_done`, so a task re-run after its worker died continues with the next part;
    the parts are then joined into the one zip (`path`) and deleted."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="export_jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=16, default=BackgroundJob.QUEUED, db_index=True)
    splits = models.CharField(
        max_length=32, default="dataset", help_text='"dataset" (the faces\' own splits) or "version:<id>".'
    )
    include_unassigned = models.BooleanField(default=True)
    name_suffix = models.CharField(max_length=40, blank=True)
    total = models.PositiveIntegerField(default=0, help_text="Faces to export.")
    done = models.PositiveIntegerField(default=0, help_text="Faces written to finished parts.")
    boundaries = models.JSONField(default=list, blank=True, help_text="Last face id of each part.")
    columns = models.JSONField(default=list, blank=True, help_text="The manifest's columns, fixed at the start.")
    parts_done = models.PositiveIntegerField(default=0)
    step = models.CharField(max_length=40, blank=True, help_text="What the task is doing now.")
    resumed_count = models.PositiveSmallIntegerField(default=0)
    path = models.CharField(max_length=500, blank=True, help_text="Storage path of the finished zip.")

    class Meta:
        ordering = ["-created_at", "-id"]

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0

    def on_stale(self) -> bool:
        """Queue the task again (it continues after the last finished part), up to
        MAX_RESUMES times, then fail."""
        from labeling.services import export_job_check_stale

        return export_job_check_stale(job=self)
