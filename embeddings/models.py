"""Face embeddings: dlib's 128-D descriptor of every face (computed from the original photo,
cached per photo and landmark box), and what is derived from them."""

from django.conf import settings
from django.db import models

from curator.jobs import BackgroundJob
from curator.models import Face


class FaceDescriptor(models.Model):
    """A face's features computed from its original photo (embeddings.features), cached: dlib's
    128-D descriptor of its own chip and of the mirrored chip, and the pretrained gender
    network's probabilities. Moved here from `training`; the table keeps its name and rows."""

    face = models.OneToOneField(Face, on_delete=models.CASCADE, related_name="descriptor")
    vector = models.BinaryField(help_text="128 float32 values: descriptor of dlib's 150-px chip.")
    vector_flipped = models.BinaryField(help_text="128 float32 values: descriptor of the mirrored chip.")
    pretrained = models.BinaryField(
        null=True, help_text="2 float32 values, female/male, of the pretrained network (null: it was unavailable)."
    )
    method = models.CharField(max_length=64, help_text="How it was computed (rows of another method are redone).")
    source = models.CharField(max_length=600, help_text="Photo path and landmark box (stale if they differ).")
    region_phash = models.BigIntegerField(
        null=True, help_text="64-bit pHash of the face's region of the original photo (not of the aligned crop)."
    )
    region_phash_mirrored = models.BigIntegerField(null=True, help_text="The same of the mirrored region.")

    class Meta:
        db_table = "training_facedescriptor"


class DescriptorSet(models.Model):
    """Per dataset: a stamp bumped whenever descriptors of its faces are stored (the in-process
    nearest-neighbour index and the identity clusters are keyed by it), and the descriptor
    batches queued on the `embed` queue and not finished yet (progress on the dataset page)."""

    dataset = models.OneToOneField("curator.Dataset", on_delete=models.CASCADE, related_name="descriptor_set")
    stamp = models.PositiveBigIntegerField(default=0)
    batches_pending = models.IntegerField(default=0)
    clusters_stamp = models.BigIntegerField(default=-1, help_text="Stamp the identity clusters were computed at.")
    updated_at = models.DateTimeField(auto_now=True)


class FaceIdentity(models.Model):
    """The identity cluster of a face: dlib's Chinese whispers over the dataset's descriptors
    (embeddings.identities.CLUSTER_DISTANCE joins two faces), or the person named in the photo's
    metadata when the dataset has it, then corrected by the curators' decisions
    (IdentityDecision). Faces of one cluster are kept on one side of a train/test split."""

    face = models.OneToOneField(Face, on_delete=models.CASCADE, related_name="identity")
    dataset = models.ForeignKey("curator.Dataset", on_delete=models.CASCADE, related_name="+")
    cluster = models.IntegerField(help_text="Cluster number after the curators' decisions, unique within the dataset.")
    computed_cluster = models.IntegerField(
        default=0,
        help_text="Cluster number as computed, before the curators' decisions (they are applied again to it).",
    )
    known = models.BooleanField(default=False, help_text="From the photo's metadata, not from the descriptors.")
    name = models.CharField(max_length=200, blank=True, help_text="The person the photo names (known faces only).")

    class Meta:
        indexes = [models.Index(fields=["dataset", "cluster"])]


class IdentityDecision(models.Model):
    """A curator's correction of the identity clusters, kept apart from the computed clusters so
    that recomputing them (new descriptors, new faces) does not undo it: after every computation
    the active decisions are applied again, oldest first (embeddings.identities).

    - merge ("same person"): must-link. `face_ids` are every face of the merged clusters at the
      time; whatever clusters hold them later become one.
    - split ("these are different people"): cannot-link. `face_ids` are the faces the curator
      picked; they leave whatever cluster holds them later and form a cluster of their own.

    The labeling history records each as an action (labeling.BulkAction params name the
    decision); reverting the action sets `active` off, reverting the revert sets it on again."""

    class Kind(models.TextChoices):
        MERGE = "merge", "Same person"
        SPLIT = "split", "Different people"

    dataset = models.ForeignKey("curator.Dataset", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    face_ids = models.JSONField(default=list)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["dataset", "active"])]


# --- The map, uniqueness scores and saved selections (embeddings/maps.py, embeddings/uniqueness.py) ---


class DatasetMap(BackgroundJob):
    """A dataset's 2-D map (embeddings.projection of its descriptors) and, computed by the same
    task from the same descriptors, its faces' uniqueness scores. One row per dataset, reused:
    `stamp` says which descriptor set the stored map was computed for, so a map is computed
    again only when the descriptors changed; the old map stays shown while a new one computes."""

    dataset = models.OneToOneField("curator.Dataset", on_delete=models.CASCADE, related_name="embedding_map")
    status = models.CharField(max_length=16, default=BackgroundJob.QUEUED)
    stamp = models.CharField(
        max_length=64,
        blank=True,
        help_text="Descriptor stamp of the stored map and scores (selectors.descriptor_stamp).",
    )
    target_stamp = models.CharField(max_length=64, blank=True, help_text="Descriptor stamp being computed.")
    method = models.CharField(max_length=32, blank=True)
    step = models.CharField(max_length=120, blank=True, help_text="What the task is doing now (shown while computing).")
    points = models.PositiveIntegerField(default=0)
    face_ids = models.BinaryField(default=b"", help_text="int64 face ids, in the order of `coords`.")
    coords = models.BinaryField(default=b"", help_text="float32 [points, 2], each axis in [0, 1].")
    seconds = models.FloatField(null=True, blank=True, help_text="How long the projection took.")


class FaceUniqueness(models.Model):
    """How unlike the rest of its dataset a face is: the mean descriptor distance to its k
    nearest neighbours (high: unique, low: typical, ~0: it has a near-copy)."""

    face = models.OneToOneField(Face, on_delete=models.CASCADE, related_name="uniqueness")
    dataset = models.ForeignKey("curator.Dataset", on_delete=models.CASCADE, related_name="+")
    score = models.FloatField()

    class Meta:
        indexes = [models.Index(fields=["dataset", "score"])]


class FaceSelection(models.Model):
    """A set of faces picked on the map, saved so the grid can open it as a filter
    (`?selection=<id>`): thousands of ids do not fit in a URL."""

    dataset = models.ForeignKey("curator.Dataset", on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    face_ids = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)


class DuplicateGroups(BackgroundJob):
    """A dataset's near-duplicate groups (embeddings.duplicates), computed by a task on the
    `embed` queue and stored here, so the duplicates page never builds the neighbour graph of a
    million faces inside a request. One row per dataset, reused: `stamp` is the descriptor set
    the stored groups were computed from; new descriptors make them stale (the page says so and
    a curator computes them again), and the old groups stay shown while new ones compute."""

    dataset = models.OneToOneField("curator.Dataset", on_delete=models.CASCADE, related_name="duplicate_groups")
    status = models.CharField(max_length=16, default=BackgroundJob.QUEUED)
    stamp = models.CharField(max_length=64, blank=True, help_text="Descriptor stamp of the stored groups.")
    target_stamp = models.CharField(max_length=64, blank=True, help_text="Descriptor stamp being computed.")
    step = models.CharField(max_length=120, blank=True, help_text="What the task is doing now (shown while computing).")
    groups = models.JSONField(default=list, blank=True, help_text="Lists of face ids, as complete_linkage_groups.")
    pairs = models.JSONField(
        default=list, blank=True, help_text="[a, b, exact, hash bits, descriptor distance, tests] of each grouped pair."
    )
    faces = models.PositiveIntegerField(default=0, help_text="Faces compared.")
    seconds = models.FloatField(null=True, blank=True, help_text="How long the computation took.")
