"""Which architecture suits a dataset, how long a job will take, and when to warn: what the train
form (page, admin action) shows before anything is queued.

The rules and estimates are pure Python (no TensorFlow, no database) so they are cheap to test;
`dataset_guidance` at the end is the one read that feeds them from a dataset's faces.

    architecture_recommend(n_faces=41, classes=["female", "male"])
    -> Recommendation(architecture="pretrained", reason="...", seconds=10.2)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from training.config import DEFAULTS
from training.models import Architecture

# --- Cost constants: wall-clock seconds on this 2-core machine (shared with other work while it
# was measured, so they are rounded up rather than down). Sources: the former
# bench/train.py (4,000 UTKFace faces, 70/15/15, seed 0, before bench/quality.py replaced it) and
# bench/quality.py. A constant marked "not measured" is a rough allowance.

# Faces without a split get a 70/15/15 split; epochs run over the train split only.
TRAIN_FRACTION = 0.70
# dlib's ResNet descriptor of its own 150 px chip cut from the photo, plus the same for the
# horizontally flipped chip (test-time augmentation), both in one batch of the face network on
# onnxruntime (embeddings.network: 6 CPU-ms a descriptor, bench/embeddings.py), with decoding the
# photo, the 5-point landmarks, cutting the chips, the region pHash and the pretrained network:
# about 25 CPU-ms a face, rounded up for a shared machine. (dlib's own call took 0.2 CPU-s.)
DESCRIPTOR_CPU_S_PER_FACE = 0.03
DESCRIPTOR_PROCESSES = 2
# dlib-models' gender network (ONNX, onnxruntime, one thread) with its 32 px chip: ~5 ms per face.
PRETRAINED_S_PER_FACE = 0.005
# Logistic regression on the descriptors, C chosen by cross-validation: a few seconds on 4,000 faces.
LINEAR_HEAD_S_PER_FACE = 3.0 / 4000
# The dense head at its default 150 epochs (early stopping usually ends it sooner): bench/train.py
# fitted and chose among three heads in 4.2 s (median) on 4,000 faces. Scaled by epochs / 150.
DENSE_HEAD_S_PER_FACE = 4.2 / 4000
DENSE_HEAD_EPOCHS = 150
# cnn at its 64 px default: bench/quality.py trained 40 epochs on 3,009 train faces in 757 s while
# the machine was shared (load average 4-5), ~0.0063 s per train face and scheduled epoch. (At
# 96 px it had taken 625 s for 41 epochs on 2,800 faces on a quieter machine.)
CNN_S_PER_FACE_EPOCH = 0.0063
CNN_MEASURED_INPUT = 64
# seed-cnn at 150 px: 537 s for 20 epochs on 2,800 train faces, ~0.0096 s per train face and epoch.
SEED_CNN_S_PER_FACE_EPOCH = 537.0 / (2800 * 20)
SEED_CNN_MEASURED_INPUT = 150
# Not measured: a convolution's cost grows with the pixels, so another input_size scales the
# per-face-epoch cost by (input_size / measured input) squared.
# finetune: cutting dlib's chips from the photos (2 processes) and, per epoch over the train split,
# the forward pass of the whole face network and the backward pass of its top stages on augmented
# chips; then the test-time-augmentation choice on the validation split and the predictions of
# every face (chips cut again, up to 6 views each). bench/quality.py on the dev set, 2 cores shared
# with other work: see FINETUNE_* below and the README's benchmark table.
FINETUNE_CHIP_S_PER_FACE = 0.01
# 36-54 s an epoch over 3,008 train faces at batch 32 with 2 stages unfrozen (load average 4-5).
FINETUNE_S_PER_FACE_EPOCH = 0.018
# 34.5 s for 4,311 faces with one view; the validation split chose up to 6 views (mirror+jitter).
FINETUNE_PREDICT_S_PER_FACE = 0.03
# Fine-tuning pays once there are enough faces not to over-fit the top stages, and when it finishes
# within a coffee break on this kind of machine; otherwise the embedding model is the start.
FINETUNE_MIN_FACES = 1000
FINETUNE_RECOMMEND_MAX_S = 30 * 60
# Not measured: starting the job (loading TensorFlow), saving the artifact, predicting every face
# and evaluating; a rough allowance per job on top of the figures above.
JOB_OVERHEAD_S = 10.0

# --- Rules.
# Below this many labelled faces in any class a female/male dataset has little to train on: the
# pretrained network, which needs no training, is the better start.
PRETRAINED_BELOW_PER_CLASS = 50
# A CNN trained from scratch needs thousands of faces; below this it over-fits (bench/train.py:
# cnn 0.862 against embedding 0.893 even on 4,000 faces).
CNN_MIN_FACES = 2000
CNN_ARCHITECTURES = (Architecture.CNN.value, Architecture.SEED_CNN.value)
# Architectures whose job computes (or reuses) the cached descriptors.
DESCRIPTOR_ARCHITECTURES = (Architecture.EMBEDDING.value, Architecture.FINETUNE.value)
# The measured gain, for the recommendation (bench/quality.py, dev set test split; README table).
FINETUNE_GAIN_TEXT = "end to end 0.964 against 0.959 for embedding on 439 test photos"
GENDER_CLASSES = ("female", "male")

CNN_WARNING = (
    "A CNN trained from scratch on a few hundred faces over-fits; embedding reaches higher accuracy in seconds."
)


@dataclass(frozen=True)
class Recommendation:
    architecture: str
    reason: str
    seconds: float

    @property
    def time_text(self) -> str:
        return duration_text(self.seconds)


@dataclass
class ArchitectureRow:
    """One line of the form's table: an architecture, its expected time with default settings,
    and whether it is recommended, unavailable (and why) or comes with a warning."""

    architecture: str
    label: str
    seconds: float | None
    time_text: str
    recommended: bool = False
    unavailable: str = ""
    warning: str = ""


@dataclass
class DatasetGuidance:
    per_class: dict[str, int]
    n_faces: int
    descriptors_cached: int
    recommendation: Recommendation
    rows: list[ArchitectureRow] = field(default_factory=list)
    # Architectures that get CNN_WARNING on this dataset (read by the form page and its script).
    warn_architectures: tuple[str, ...] = ()

    @property
    def warning(self) -> str:
        return cnn_warning_text(n_faces=self.n_faces)

    @property
    def unavailable(self) -> dict[str, str]:
        return {row.architecture: row.unavailable for row in self.rows if row.unavailable}


def is_gender_pair(classes: list[str]) -> bool:
    """The pretrained network answers female/male: the classes must be exactly those two."""
    return sorted(classes) == sorted(GENDER_CLASSES)


def architecture_unavailable(*, architecture: str, classes: list[str], n_versions: int | None = None) -> str:
    """Why `architecture` cannot be trained on a dataset with these classes ("" when it can).
    `n_versions` (the dataset's existing versions), when given, is checked for ensembles."""
    if architecture == Architecture.PRETRAINED and not is_gender_pair(classes):
        return (
            "Unavailable: the pretrained network answers only female/male, and this dataset's classes are "
            f"{', '.join(classes) or 'none'}."
        )
    if architecture == Architecture.ENSEMBLE and n_versions is not None and n_versions < 2:
        # Any two versions of the dataset's classes combine (training.services.architecture_check);
        # on other classes than female/male the pretrained network just cannot be one of them.
        return "Unavailable until the dataset has two or more versions (not ensembles) to combine."
    return ""


def cnn_warning_text(*, n_faces: int) -> str:
    return f"This dataset has {n_faces} labelled faces. {CNN_WARNING}"


def architecture_warning(*, architecture: str, n_faces: int) -> str:
    """The warning for a CNN chosen with too few faces to train one from scratch ("" otherwise)."""
    if architecture in CNN_ARCHITECTURES and n_faces < CNN_MIN_FACES:
        return cnn_warning_text(n_faces=n_faces)
    return ""


def training_time_estimate(
    *, architecture: str, n_faces: int, config: dict[str, Any] | None = None, descriptors_cached: int = 0
) -> float:
    """Expected wall-clock seconds of a job on `n_faces` labelled faces with `config` (missing
    keys take the architecture's defaults), `descriptors_cached` of them already having their dlib
    descriptor. Ensembles count only the combining: their members are trained already."""
    config = {**DEFAULTS.get(architecture, {}), **(config or {})}
    n = max(0, int(n_faces))
    train = n * TRAIN_FRACTION
    if architecture == Architecture.EMBEDDING:
        missing = max(0, n - max(0, int(descriptors_cached)))
        seconds = missing * DESCRIPTOR_CPU_S_PER_FACE / DESCRIPTOR_PROCESSES
        if config.get("pretrained_feature", "no") != "no":
            seconds += n * PRETRAINED_S_PER_FACE
        head = config.get("head", "auto")
        if head in ("auto", "linear"):
            seconds += n * LINEAR_HEAD_S_PER_FACE
        if head in ("auto", "dense"):
            epochs = config.get("epochs", DENSE_HEAD_EPOCHS)
            seconds += n * DENSE_HEAD_S_PER_FACE * epochs / DENSE_HEAD_EPOCHS
        return seconds + JOB_OVERHEAD_S
    if architecture == Architecture.PRETRAINED:
        return n * PRETRAINED_S_PER_FACE + JOB_OVERHEAD_S
    if architecture == Architecture.ENSEMBLE:
        # Members' probabilities are stored; stacking fits one small logistic regression.
        return n * LINEAR_HEAD_S_PER_FACE + JOB_OVERHEAD_S
    if architecture == Architecture.FINETUNE:
        missing = max(0, n - max(0, int(descriptors_cached)))
        seconds = missing * DESCRIPTOR_CPU_S_PER_FACE / DESCRIPTOR_PROCESSES
        seconds += n * (FINETUNE_CHIP_S_PER_FACE + FINETUNE_PREDICT_S_PER_FACE)
        return seconds + train * config.get("epochs", 1) * FINETUNE_S_PER_FACE_EPOCH + JOB_OVERHEAD_S
    if architecture in CNN_ARCHITECTURES:
        per_face_epoch, measured = (
            (CNN_S_PER_FACE_EPOCH, CNN_MEASURED_INPUT)
            if architecture == Architecture.CNN
            else (SEED_CNN_S_PER_FACE_EPOCH, SEED_CNN_MEASURED_INPUT)
        )
        size = config.get("input_size", measured)
        return train * config.get("epochs", 1) * per_face_epoch * (size / measured) ** 2 + JOB_OVERHEAD_S
    raise ValueError(f"unknown architecture {architecture!r}")


def duration_text(seconds: float | None) -> str:
    """Rounded for people: about 12 s, about 4 min, about 1.5 h."""
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


def architecture_recommend(
    *, n_faces: int, classes: list[str], faces_per_class: dict[str, int] | None = None, descriptors_cached: int = 0
) -> Recommendation:
    """The architecture to train first on a dataset of `n_faces` labelled faces with these
    classes, why, and how long it should take with default settings. `faces_per_class` (labelled
    faces of each class), when known, decides the small-class rule; otherwise faces are taken to be
    spread evenly."""
    if faces_per_class:
        smallest = min(faces_per_class.get(name, 0) for name in classes) if classes else 0
    else:
        smallest = n_faces // max(1, len(classes))
    if is_gender_pair(classes) and smallest < PRETRAINED_BELOW_PER_CLASS:
        architecture = Architecture.PRETRAINED.value
        reason = (
            f"With fewer than {PRETRAINED_BELOW_PER_CLASS} labelled faces in a class ({smallest} in the smallest) "
            "there is little to train on: the pretrained female/male network needs no training and is evaluated "
            "on this dataset's test split like any version. Train embedding once more faces are labelled."
        )
    elif (
        n_faces >= FINETUNE_MIN_FACES
        and (
            finetune_s := training_time_estimate(
                architecture=Architecture.FINETUNE, n_faces=n_faces, descriptors_cached=descriptors_cached
            )
        )
        <= FINETUNE_RECOMMEND_MAX_S
    ):
        architecture = Architecture.FINETUNE.value
        reason = (
            f"With {n_faces} labelled faces, fine-tuning dlib's face network for these classes is worth its "
            f"{duration_text(finetune_s)}: it was the most accurate single model on the development set "
            f"({FINETUNE_GAIN_TEXT}). Train embedding first if you want a model in seconds."
        )
    else:
        architecture = Architecture.EMBEDDING.value
        reason = (
            "dlib's face descriptor of the photo with a linear or dense head gives the highest accuracy of the "
            "models that train in seconds once descriptors are cached"
        )
        if n_faces >= FINETUNE_MIN_FACES:
            reason += (
                f"; finetune is more accurate but would take "
                f"{duration_text(training_time_estimate(architecture=Architecture.FINETUNE, n_faces=n_faces))}"
            )
        if n_faces < CNN_MIN_FACES:
            reason += f"; with {n_faces} labelled faces a CNN trained from scratch would over-fit."
        else:
            reason += (
                f"; with {n_faces} labelled faces a cnn is possible too, but it is slower and was less accurate "
                "on the development set."
            )
        missing = max(0, n_faces - descriptors_cached)
        if missing:
            reason += (
                f" The next job computes the descriptor of {missing} faces "
                f"({duration_text(missing * DESCRIPTOR_CPU_S_PER_FACE / DESCRIPTOR_PROCESSES)}); later jobs reuse them."
            )
        if not is_gender_pair(classes):
            reason += (
                " The pretrained network answers only female/male, so it does not apply here, not even as an "
                "ensemble member."
            )
    config = DEFAULTS[architecture]
    cached = descriptors_cached if architecture in DESCRIPTOR_ARCHITECTURES else 0
    seconds = training_time_estimate(
        architecture=architecture, n_faces=n_faces, config=_config_for(config, classes), descriptors_cached=cached
    )
    return Recommendation(architecture=architecture, reason=reason, seconds=seconds)


def _config_for(config: dict[str, Any], classes: list[str]) -> dict[str, Any]:
    # The pretrained feature is only computed for female/male datasets.
    if "pretrained_feature" in config and not is_gender_pair(classes):
        return {**config, "pretrained_feature": "no"}
    return config


def architecture_rows(
    *,
    n_faces: int,
    classes: list[str],
    faces_per_class: dict[str, int] | None = None,
    descriptors_cached: int = 0,
    n_versions: int | None = None,
    pretrained_error: str = "",
) -> tuple[Recommendation, list[ArchitectureRow]]:
    """The recommendation and one row per architecture for the form's table (default settings)."""
    recommendation = architecture_recommend(
        n_faces=n_faces, classes=classes, faces_per_class=faces_per_class, descriptors_cached=descriptors_cached
    )
    if pretrained_error and recommendation.architecture == Architecture.PRETRAINED:
        # The network cannot be loaded here: fall back to the trainable default.
        recommendation = Recommendation(
            architecture=Architecture.EMBEDDING.value,
            reason=f"The pretrained network would suit this small dataset but cannot be used: {pretrained_error}",
            seconds=training_time_estimate(
                architecture=Architecture.EMBEDDING,
                n_faces=n_faces,
                config=_config_for(DEFAULTS[Architecture.EMBEDDING], classes),
                descriptors_cached=descriptors_cached,
            ),
        )
    rows = []
    for architecture, label in Architecture.choices:
        unavailable = architecture_unavailable(architecture=architecture, classes=classes, n_versions=n_versions)
        if not unavailable and pretrained_error and architecture == Architecture.PRETRAINED:
            unavailable = f"Unavailable: {pretrained_error}"
        seconds = None
        if not unavailable:
            seconds = training_time_estimate(
                architecture=architecture,
                n_faces=n_faces,
                config=_config_for(DEFAULTS[architecture], classes),
                descriptors_cached=descriptors_cached if architecture in DESCRIPTOR_ARCHITECTURES else 0,
            )
        rows.append(
            ArchitectureRow(
                architecture=architecture,
                label=label,
                seconds=seconds,
                time_text=duration_text(seconds),
                recommended=architecture == recommendation.architecture,
                unavailable=unavailable,
                warning=architecture_warning(architecture=architecture, n_faces=n_faces),
            )
        )
    return recommendation, rows


def dataset_guidance(*, dataset) -> DatasetGuidance:
    """The guidance for one dataset from its labelled, included faces per class: the faces a job
    would train on (the same filter as training.data.training_data_collect: not excluded, not
    unsure, labelled with one of the classes, with a crop). Read-only."""
    from django.db.models import Count

    from curator.models import Face
    from embeddings.models import FaceDescriptor
    from training.models import ModelVersion

    faces = Face.objects.filter(dataset=dataset, is_excluded=False, is_unsure=False, label__in=dataset.classes).exclude(
        crop=""
    )
    counts = dict(faces.values_list("label").annotate(n=Count("id")).order_by())
    per_class = {name: counts.get(name, 0) for name in dataset.classes}
    n_faces = sum(per_class.values())
    # Rows of today's method only (older ones are computed again); a row whose photo changed since
    # is counted as cached too, a small over-count.
    from curator.faces.chips import DESCRIPTOR_METHOD

    cached = FaceDescriptor.objects.filter(face__in=faces, method=DESCRIPTOR_METHOD).count()
    n_versions = ModelVersion.objects.filter(dataset=dataset).exclude(architecture=Architecture.ENSEMBLE).count()
    pretrained_error = ""
    if is_gender_pair(list(dataset.classes)):
        from embeddings import pretrained

        ok, why = pretrained.available()
        pretrained_error = "" if ok else why
    recommendation, rows = architecture_rows(
        n_faces=n_faces,
        classes=list(dataset.classes),
        faces_per_class=per_class,
        descriptors_cached=cached,
        n_versions=n_versions,
        pretrained_error=pretrained_error,
    )
    return DatasetGuidance(
        per_class=per_class,
        n_faces=n_faces,
        descriptors_cached=cached,
        recommendation=recommendation,
        rows=rows,
        warn_architectures=tuple(a for a in CNN_ARCHITECTURES if architecture_warning(architecture=a, n_faces=n_faces)),
    )
