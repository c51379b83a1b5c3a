"""The dataset core: datasets and who may see them, imported photos, their faces and the jobs
that align them. Image bytes live in storage (MEDIA_ROOT or S3); rows hold only paths."""

from django.conf import settings
from django.db import models, transaction
from django.db.models import F
from django.db.models.functions import Abs

from curator.jobs import BackgroundJob


def default_classes() -> list[str]:
    return list(settings.CURATOR_DEFAULT_CLASSES)


class Dataset(models.Model):
    class Detector(models.TextChoices):
        HOG = "hog", "HOG (fast, frontal faces)"
        CNN = "cnn", "MMOD CNN (slower, more poses)"

    class LandmarkSet(models.TextChoices):
        INNER_EYES_AND_BOTTOM_LIP = "inner_eyes_and_bottom_lip", "Inner eyes + bottom lip"
        OUTER_EYES_AND_NOSE = "outer_eyes_and_nose", "Outer eyes + nose"

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    classes = models.JSONField(default=default_classes)
    # Keyboard key per class for the labeling grid, e.g. {"female": "f", "male": "m"}.
    class_keys = models.JSONField(default=dict, blank=True)
    crop_size = models.PositiveIntegerField(default=160)
    crop_margin = models.FloatField(default=0.0, help_text="Extra border around the template, as a fraction.")
    detector = models.CharField(max_length=8, choices=Detector.choices, default=Detector.HOG)
    upsample = models.PositiveSmallIntegerField(default=1)
    detect_max_side = models.PositiveIntegerField(default=1024)
    landmark_set = models.CharField(
        max_length=32, choices=LandmarkSet.choices, default=LandmarkSet.INNER_EYES_AND_BOTTOM_LIP
    )
    keep_undetected_crops = models.BooleanField(
        default=True,
        help_text="A photo that already is a face crop and yields no detection becomes one face "
        "framed by the whole image, flagged as such.",
    )
    min_faces_per_class = models.PositiveIntegerField(default=10)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="member_datasets", blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """Who may see a dataset, and as what. Staff, and members of the curators group with a
    curator membership, may do everything; annotators (and a curator membership of a user who is
    not in the curators group) may view and relabel. The rule is curator.permissions.can_curate."""

    class Role(models.TextChoices):
        CURATOR = "curator", "Curator"
        ANNOTATOR = "annotator", "Annotator"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "user"], name="unique_membership")]

    def __str__(self) -> str:
        return f"{self.user} {self.role} on {self.dataset}"


class ImportBatch(models.Model):
    """One import: an upload of files, a zip, or a server folder, with its report."""

    class Source(models.TextChoices):
        UPLOAD = "upload", "Uploaded files"
        ZIP = "zip", "Zip archive"
        FOLDER = "folder", "Server folder"

    class LabelLayout(models.TextChoices):
        NONE = "none", "No labels found"
        FOLDERS = "folders", "Folder per class"
        UTKFACE = "utkface", "UTKFace file names"
        CSV = "csv", "labels.csv"

    class Status(models.TextChoices):
        # A browser upload sent in several requests: its files are still arriving in storage.
        UPLOADING = "uploading", "Uploading"
        # Every file is in (or the source is a server folder): the import task reads them.
        RECEIVING = "receiving", "Importing"
        DONE = "done", "Imported"
        FAILED = "failed", "Failed"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="batches")
    # The import's number within its dataset (1, 2, 3...), the one pages show: the primary key
    # counts every dataset's imports, so a new dataset's first import read "#37".
    number = models.PositiveIntegerField(editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=16, choices=Source.choices)
    source_name = models.CharField(max_length=1000, blank=True)
    label_layout = models.CharField(max_length=16, choices=LabelLayout.choices, default=LabelLayout.NONE)
    # Every label source the batch used, with its count of photos ({"csv": 120, "folders": 83}):
    # label_layout is only the most common one, and a report naming one source hid the others.
    label_sources = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVING)
    imported_count = models.PositiveIntegerField(default=0)
    duplicate_count = models.PositiveIntegerField(default=0)
    skipped_count = models.PositiveIntegerField(default=0)
    labelled_count = models.PositiveIntegerField(default=0)
    # Files the import goes through (known once it has listed its source), for "x of n".
    file_count = models.PositiveIntegerField(default=0)
    # Browser uploads are stored under this storage prefix first, then imported by a task.
    staging_prefix = models.CharField(max_length=200, blank=True)
    staged_parts = models.PositiveIntegerField(default=0, help_text="Upload requests received.")
    staged_count = models.PositiveIntegerField(default=0, help_text="Files received in storage.")
    staged_bytes = models.PositiveBigIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The import task's start and sign of life (an upload's: its last part), so the stale-job
    # sweep sees an import whose worker (or browser) was lost.
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "import batches"  # not Django's "import batchs"
        constraints = [models.UniqueConstraint(fields=["dataset", "number"], name="unique_import_number")]

    def __str__(self) -> str:
        return f"Import #{self.number}: {self.get_source_display()} {self.source_name} into {self.dataset}"

    def save(self, *args, **kwargs):
        # The next number of the dataset, under a lock on the dataset's row so that two imports
        # started at once cannot both take it (an invariant of the row, hence here).
        if self.number is None:
            with transaction.atomic():
                Dataset.objects.select_for_update().filter(pk=self.dataset_id).values_list("pk").first()
                last = ImportBatch.objects.filter(dataset_id=self.dataset_id).aggregate(n=models.Max("number"))["n"]
                self.number = (last or 0) + 1
                super().save(*args, **kwargs)
            return
        super().save(*args, **kwargs)

    @property
    def label_sources_display(self) -> str:
        """The sources in words, e.g. labels.csv (120), Folder per class (83); the layout alone without counts."""
        names = dict(self.LabelLayout.choices)
        if not self.label_sources:
            return self.get_label_layout_display()
        parts = sorted(self.label_sources.items(), key=lambda kv: -kv[1])
        return ", ".join(f"{names.get(k, k)} ({n})" for k, n in parts)

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)

    @property
    def processed_count(self) -> int:
        return self.imported_count + self.duplicate_count + self.skipped_count


class ImportIssue(models.Model):
    """A file of a batch that was not imported as a new image (a duplicate or a skipped file), or
    was imported without a label because its label was not one of the dataset's classes."""

    class Kind(models.TextChoices):
        DUPLICATE = "duplicate", "Duplicate"
        SKIPPED = "skipped", "Skipped"
        UNLABELLED = "unlabelled", "Imported without a label"

    batch = models.ForeignKey(ImportBatch, on_delete=models.CASCADE, related_name="issues")
    file_name = models.CharField(max_length=1000)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    reason = models.TextField()

    class Meta:
        ordering = ["id"]


class SourceImage(models.Model):
    """An imported photo, stored unchanged once per dataset (keyed by sha256)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for alignment"
        ALIGNED = "aligned", "Aligned"
        NO_FACE = "no_face", "No face found"
        ERROR = "error", "Error"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="images")
    batch = models.ForeignKey(ImportBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="images")
    file = models.CharField(max_length=500, help_text="Storage path of the original file.")
    original_name = models.CharField(max_length=1000, help_text="Path inside the upload, zip or folder.")
    sha256 = models.CharField(max_length=64)
    byte_size = models.PositiveBigIntegerField(default=0)
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    image_format = models.CharField(max_length=16, blank=True)
    label = models.CharField(max_length=64, blank=True, help_text="Image-level label from the import.")
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    status_reason = models.TextField(blank=True)
    face_count = models.PositiveIntegerField(default=0)
    # Times a worker started aligning this image for its current job. An image that kills its
    # worker process (out of memory, a crash in native code) is given up on after a few tries
    # instead of being redelivered for ever.
    align_attempts = models.PositiveSmallIntegerField(default=0)
    alignment_job = models.ForeignKey(
        "AlignmentJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="images"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    aligned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "sha256"], name="unique_image_per_dataset")]
        indexes = [models.Index(fields=["dataset", "status"])]

    def __str__(self) -> str:
        return self.original_name


class Face(models.Model):
    """One face found in a SourceImage: its box, landmarks, aligned crop, quality and label."""

    class Split(models.TextChoices):
        NONE = "", "Unassigned"
        TRAIN = "train", "Train"
        VAL = "val", "Validation"
        TEST = "test", "Test"

    class LabelOrigin(models.TextChoices):
        NONE = "", "Unlabelled"
        IMPORT = "import", "Import"
        HUMAN = "human", "Person"

    # The exclusion reason of a false detection (a necktie found as a face), set by the grid's
    # "not a face". Kept in the exclusion reason rather than a field of its own: an excluded face
    # already leaves training, history and undo already cover is_excluded, and re-alignment
    # already carries is_excluded + exclusion_reason over to the same box (HUMAN_FIELDS).
    NOT_A_FACE = "not a face"

    # No index of its own: every index in Meta.indexes starts with the dataset (one index less to
    # write on each relabel of a million-face dataset).
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="faces", db_index=False)
    # No index of its own: unique_face_index (image, index) starts with the photo and serves every
    # lookup by photo, and each index of this table costs a bulk relabel an entry per face changed.
    image = models.ForeignKey(SourceImage, on_delete=models.CASCADE, related_name="faces", db_index=False)
    index = models.PositiveSmallIntegerField(default=0, help_text="Position of the face in its photo.")
    # Box in original pixel coordinates.
    box_left = models.IntegerField(default=0)
    box_top = models.IntegerField(default=0)
    box_right = models.IntegerField(default=0)
    box_bottom = models.IntegerField(default=0)
    landmarks = models.JSONField(default=list, blank=True, help_text="68 [x, y] points in original pixels.")
    crop = models.CharField(max_length=500, help_text="Storage path of the aligned crop (JPEG).")
    is_largest = models.BooleanField(default=False)
    whole_image = models.BooleanField(default=False, help_text="No detection: the whole photo is the face.")
    # Quality, all sortable.
    detector_score = models.FloatField(null=True, blank=True)
    size_px = models.PositiveIntegerField(default=0, help_text="Side of the detection box in pixels.")
    sharpness = models.FloatField(null=True, blank=True, help_text="Variance of the Laplacian of the crop.")
    yaw = models.FloatField(null=True, blank=True, help_text="Degrees, estimated from landmarks.")
    roll = models.FloatField(null=True, blank=True, help_text="Degrees, from the eye line.")
    landmark_fit = models.FloatField(
        null=True, blank=True, help_text="Mean distance (px) of the aligned landmarks from the template."
    )
    phash = models.BigIntegerField(null=True, blank=True, help_text="64-bit perceptual hash of the crop.")
    # Label state.
    label = models.CharField(max_length=64, blank=True)  # indexed with dataset in Meta.indexes
    label_origin = models.CharField(max_length=8, choices=LabelOrigin.choices, blank=True, default="")
    suggested_label = models.CharField(
        max_length=64, blank=True, help_text="A model's suggestion, never taken as a human label."
    )
    is_unsure = models.BooleanField(default=False)
    is_excluded = models.BooleanField(default=False)
    exclusion_reason = models.CharField(max_length=200, blank=True)
    split = models.CharField(max_length=8, choices=Split.choices, blank=True, default="")
    split_manual = models.BooleanField(default=False, help_text="Set by a person; automatic splits keep it.")
    # Optimistic concurrency: every label change increments it; a save from a stale page is refused.
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["image", "index"], name="unique_face_index")]
        # The grid's filters and sorts at a million faces (bench/million.py, EXPLAIN ANALYZE): each
        # ends with the id, the grid's tie-break, so a filtered page in id order and a sorted page
        # are one index range scan that stops after the page, and counts are index-only scans.
        # Nullable sort keys have a second index in the grid's descending order (DESC NULLS LAST,
        # which no ascending index read backwards gives).
        indexes = [
            models.Index(fields=["dataset", "label", "id"], name="face_dataset_label_id"),
            models.Index(fields=["dataset", "split", "id"], name="face_dataset_split_id"),
            models.Index(fields=["dataset", "is_excluded", "id"], name="face_dataset_excluded_id"),
            models.Index(fields=["dataset", "size_px", "id"], name="face_dataset_size_id"),
            models.Index(fields=["dataset", "sharpness", "id"], name="face_dataset_sharpness_id"),
            models.Index(
                F("dataset"), F("sharpness").desc(nulls_last=True), F("id").desc(), name="face_dataset_sharpness_desc"
            ),
            models.Index(fields=["dataset", "detector_score", "id"], name="face_dataset_score_id"),
            models.Index(
                F("dataset"), F("detector_score").desc(nulls_last=True), F("id").desc(), name="face_dataset_score_desc"
            ),
            models.Index(F("dataset"), Abs("yaw"), F("id"), name="face_dataset_abs_yaw_id"),
            models.Index(
                F("dataset"), Abs("yaw").desc(nulls_last=True), F("id").desc(), name="face_dataset_abs_yaw_desc"
            ),
        ]

    def __str__(self) -> str:
        return f"face {self.index} of {self.image_id}"

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.box_left, self.box_top, self.box_right, self.box_bottom)


class AlignmentJob(BackgroundJob):
    """Detection and alignment of a set of images, split into chunks over the `align` queue.
    Its state lives here (not in Celery) so the browser can show it and a lost worker is seen."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    SUCCEEDED = Status.DONE  # the value this table has always stored for a finished job

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="alignment_jobs")
    batch = models.ForeignKey(
        ImportBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="alignment_jobs"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    options = models.JSONField(default=dict, blank=True, help_text="Detector and alignment settings used.")
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    faces = models.PositiveIntegerField(default=0)
    no_face = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    resumed_count = models.PositiveIntegerField(default=0)
    # An import still adding images (streaming import): `total` grows as it goes, and the job
    # cannot finish before the import closes it (or the stale sweep does, for a lost import).
    import_open = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"alignment job {self.pk} of {self.dataset}"

    def on_stale(self) -> bool:
        """Re-queue the unfinished images, up to MAX_RESUMES times, then fail (the service says how)."""
        from curator.services.alignment import alignment_job_check_stale

        after = alignment_job_check_stale(job=self)
        return after.status != self.status or after.resumed_count != self.resumed_count
