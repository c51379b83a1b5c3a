"""Serving trained models: any photo -> faces (detected and aligned exactly as in the dataset
pipeline) -> per-class probabilities of a model version.

Web processes load a model version once and keep it warm in a per-process cache; the active
versions are loaded as the process starts (curator/warmup.py, `active_versions_warm`), others at
their first request.
Single-image inference runs the model's forward pass compiled once as a tf.function (see
`training.inference`), never `model.predict`, which costs ~50 ms of set-up per call on its own.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied

from curator.images import ImageRejected, decode
from curator.models import Dataset, Face, SourceImage
from curator.permissions import can_curate, visible_datasets
from curator.services.alignment import aligned_photo_store
from training.models import ModelVersion, Prediction

if TYPE_CHECKING:  # pragma: no cover
    from training.inference import LoadedModel

logger = logging.getLogger(__name__)


class PredictError(Exception):
    """A request we cannot answer; `status` is the HTTP status, str() the message shown."""

    def __init__(self, message: str, *, status: int = 400, code: str = "bad_request"):
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass
class FacePrediction:
    index: int
    box: tuple[int, int, int, int]  # left, top, right, bottom in original pixels
    label: str
    confidence: float
    probabilities: dict[str, float]
    detector_score: float | None
    crop: np.ndarray | None = field(default=None, repr=False)

    def as_json(self) -> dict:
        left, top, right, bottom = self.box
        return {
            "index": self.index,
            "box": {"left": left, "top": top, "right": right, "bottom": bottom},
            "label": self.label,
            "confidence": round(self.confidence, 6),
            "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
            "detector_score": None if self.detector_score is None else round(float(self.detector_score), 4),
        }


@dataclass
class PredictResult:
    model_version: ModelVersion
    width: int
    height: int
    faces: list[FacePrediction]
    timings: dict[str, float]
    info: object = field(default=None, repr=False)  # curator.images.ImageInfo of the photo
    aligned: list = field(default_factory=list, repr=False)  # the pipeline's AlignedFace objects

    def as_json(self) -> dict:
        mv = self.model_version
        return {
            "model_version": {
                "id": mv.pk,
                "number": mv.number,
                "dataset": mv.dataset_id,
                "architecture": mv.architecture,
                "classes": list(mv.classes),
                "is_active": mv.is_active,
            },
            "image": {"width": self.width, "height": self.height},
            "faces": [face.as_json() for face in self.faces],
            "timings_ms": {k: round(v, 2) for k, v in self.timings.items()},
        }


# --- Choosing the model version -------------------------------------------------------------------


def model_version_for(
    *, user: AbstractBaseUser, dataset_id: int | None = None, model_version_id: int | None = None
) -> ModelVersion:
    version = _model_version_for(user=user, dataset_id=dataset_id, model_version_id=model_version_id)
    problem = version_classes_problem(version)
    if problem:
        raise PredictError(problem, status=409, code="classes_changed")
    return version


def version_classes_problem(version: ModelVersion) -> str:
    """Why a version no longer fits its dataset (a class it predicts was removed), or ""."""
    gone = [name for name in version.classes if name not in version.dataset.classes]
    if not gone:
        return ""
    return (
        f"Model version v{version.number} predicts {', '.join(version.classes)}, but “{version.dataset.name}” no "
        f"longer has the class(es) {', '.join(gone)}. Train a new version on the dataset's classes."
    )


def _model_version_for(
    *, user: AbstractBaseUser, dataset_id: int | None = None, model_version_id: int | None = None
) -> ModelVersion:
    """The version a prediction uses: the chosen one, or the active one of the chosen dataset, or
    (with neither given) the active one of the only visible dataset that has one.

    Annotators may use active versions only; curators may also try inactive versions of their
    datasets (to judge a candidate before activating it). Ids of versions or datasets the user
    cannot see answer 404, so they are not confirmed to exist."""
    datasets = visible_datasets(user)
    if model_version_id is not None:
        version = (
            ModelVersion.objects.select_related("dataset").filter(pk=model_version_id, dataset__in=datasets).first()
        )
        if version is None:
            raise PredictError(f"No model version {model_version_id} that you can see.", status=404, code="not_found")
        if dataset_id is not None and version.dataset_id != dataset_id:
            raise PredictError(
                f"Model version {model_version_id} does not belong to dataset {dataset_id}.",
                status=400,
                code="version_dataset_mismatch",
            )
        if not version.is_active and not can_curate(user, version.dataset):
            raise PredictError(
                f"Model version v{version.number} of “{version.dataset.name}” is not active; only curators "
                "may predict with inactive versions.",
                status=409,
                code="inactive_version",
            )
        return version
    if dataset_id is not None:
        dataset = datasets.filter(pk=dataset_id).first()
        if dataset is None:
            raise PredictError(f"No dataset {dataset_id} that you can see.", status=404, code="not_found")
        version = ModelVersion.objects.select_related("dataset").filter(dataset=dataset, is_active=True).first()
        if version is None:
            raise PredictError(
                f"Dataset “{dataset.name}” has no active model version; a curator activates one after training.",
                status=409,
                code="no_active_model",
            )
        return version
    actives = list(ModelVersion.objects.select_related("dataset").filter(dataset__in=datasets, is_active=True)[:2])
    if len(actives) == 1:
        return actives[0]
    if not actives:
        raise PredictError("None of your datasets has an active model version.", status=409, code="no_active_model")
    raise PredictError(
        "Several of your datasets have an active model: say which with `dataset` or `model_version`.",
        status=400,
        code="ambiguous",
    )


def datasets_with_models(*, user: AbstractBaseUser) -> list[tuple[Dataset, list[ModelVersion]]]:
    """For the predict page: each visible dataset with its versions (active first)."""
    rows = []
    versions = ModelVersion.objects.filter(dataset__in=visible_datasets(user)).order_by("-is_active", "-number")
    by_dataset: dict[int, list[ModelVersion]] = {}
    for version in versions:
        by_dataset.setdefault(version.dataset_id, []).append(version)
    for dataset in visible_datasets(user).order_by("name"):
        mine = by_dataset.get(dataset.pk, [])
        if not can_curate(user, dataset):
            mine = [v for v in mine if v.is_active]
        if mine:
            rows.append((dataset, mine))
    return rows


# --- The warm model cache --------------------------------------------------------------------------

_warm_lock = threading.Lock()
_threads_configured = False


def _configure_threads() -> None:
    """Several web workers share few cores: one TensorFlow thread each keeps them from fighting
    (CURATOR_PREDICT_THREADS=0 leaves TensorFlow's default)."""
    global _threads_configured
    if _threads_configured:
        return
    _threads_configured = True
    threads = settings.CURATOR_PREDICT_THREADS
    if threads <= 0:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already initialised in this process (e.g. a training worker)
        pass


_served: dict[tuple[int, str], LoadedModel] = {}


def loaded_model(model_version: ModelVersion) -> LoadedModel:
    """The model version, loaded once per process (training.inference keeps it), its forward pass
    compiled and warmed up with one dummy face, so no real request pays for tracing the graph or
    reading dlib's and the pretrained network's files."""
    from embeddings.pretrained import PretrainedModelError
    from training.inference import ModelUnavailable, load_model_version

    key = (model_version.pk, model_version.artifact)
    served = _served.get(key)
    if served is not None:
        return served
    with _warm_lock:
        served = _served.get(key)
        if served is not None:
            return served
        _configure_threads()
        try:
            served = load_model_version(model_version)
        except (FileNotFoundError, OSError) as exc:
            raise PredictError(
                f"The artifact of model version v{model_version.number} cannot be read from storage ({exc}).",
                status=503,
                code="artifact_missing",
            ) from exc
        except (ModelUnavailable, PretrainedModelError) as exc:
            raise PredictError(str(exc), status=503, code="model_unavailable") from exc
        _warm_pipeline(model_version.dataset)
        side = model_version.dataset.crop_size
        dummy = np.full((side, side, 3), 128, dtype=np.uint8)
        _classify(served, dummy, [], warm_up=True)
        _served[key] = served
        return served


def active_versions_warm() -> None:
    """Load every active version now (worker and web start, curator/warmup.py); a version that
    cannot be loaded is logged and skipped, its requests get the loader's clear error."""
    for version in ModelVersion.objects.filter(is_active=True).select_related("dataset").order_by("pk"):
        try:
            loaded_model(version)
        except PredictError as exc:
            logger.warning("Active version v%s of dataset %s not warmed: %s", version.number, version.dataset_id, exc)


def _warm_pipeline(dataset: Dataset) -> None:
    """Load the detector and the landmark predictor now (the 68-point model takes seconds to
    read), so no request pays for it."""
    from curator.faces.chips import five_point_predictor
    from curator.faces.detection import CNN, cnn_detector, hog_detector
    from curator.faces.landmarks import shape_predictor
    from embeddings import network

    hog_detector()
    if dataset.detector == CNN:
        cnn_detector()
    shape_predictor()
    five_point_predictor()
    network.warm()


# --- Predicting ------------------------------------------------------------------------------------


def image_predict(*, data: bytes, model_version: ModelVersion) -> PredictResult:
    """Detect, align and classify every face of one photo. Raises PredictError (415 for what is
    not an image, 413 for too many pixels); a photo without a face gives an empty list."""
    from curator.faces.pipeline import AlignOptions, detect_and_align

    timings: dict[str, float] = {}
    started = time.perf_counter()
    if len(data) > settings.CURATOR_PREDICT_MAX_BYTES:
        raise PredictError(
            f"The file is {len(data):,} bytes, more than the limit of {settings.CURATOR_PREDICT_MAX_BYTES:,} "
            "(CURATOR_PREDICT_MAX_BYTES).",
            status=413,
            code="too_large",
        )
    try:
        rgb, info = decode(data, max_pixels=settings.CURATOR_PREDICT_MAX_PIXELS)
    except ImageRejected as exc:
        message = str(exc)
        status = 413 if "pixels, more than the limit" in message else 415
        raise PredictError(f"Not a usable image: {message}.", status=status, code="bad_image") from exc
    timings["decode"] = (time.perf_counter() - started) * 1000

    model = loaded_model(model_version)
    timings["load"] = (time.perf_counter() - started) * 1000 - timings["decode"]

    mark = time.perf_counter()
    # The dataset's own face path, exactly as its imports run it: a tight face crop is searched
    # again padded, and where the dataset keeps undetected crops whole, so does a prediction.
    aligned = detect_and_align(rgb, AlignOptions.from_dataset(model_version.dataset))
    timings["detect_align"] = (time.perf_counter() - mark) * 1000

    mark = time.perf_counter()
    faces: list[FacePrediction] = []
    if aligned:
        probabilities = _classify(model, rgb, aligned)
        classes = list(model.classes)
        for i, (face, probs) in enumerate(zip(aligned, probabilities, strict=True)):
            best = int(np.argmax(probs))
            faces.append(
                FacePrediction(
                    index=i,
                    box=tuple(int(v) for v in face.box),
                    label=classes[best],
                    confidence=float(probs[best]),
                    probabilities={name: float(p) for name, p in zip(classes, probs, strict=True)},
                    detector_score=face.detector_score,
                    crop=face.crop,
                )
            )
    timings["classify"] = (time.perf_counter() - mark) * 1000
    timings["total"] = (time.perf_counter() - started) * 1000
    return PredictResult(
        model_version=model_version,
        width=info.width,
        height=info.height,
        faces=faces,
        timings=timings,
        info=info,
        aligned=aligned,
    )


def _classify(model: LoadedModel, rgb: np.ndarray, aligned: list, *, warm_up: bool = False) -> np.ndarray:
    """Probabilities of the aligned faces of one photo: crops for the CNNs, features of the photo
    (dlib's own chips through the networks) for the descriptor models, the chips themselves for
    `finetune`; whatever an ensemble's members need, each face cut once."""
    from curator.faces.pipeline import landmark_box
    from embeddings.features import NetworkFiles, face_cuts, features_of_cuts

    height, width = rgb.shape[:2]
    if warm_up:  # one face framed by the whole (dummy) photo: loads and traces everything once
        boxes = [(0, 0, width, height)]
        crops = np.stack([rgb]) if model.needs_crops else None
    else:
        boxes = [landmark_box(width=width, height=height, box=f.box, whole_image=f.whole_image) for f in aligned]
        crops = np.stack([f.crop for f in aligned]) if model.needs_crops else None
    features = chips = None
    if model.needs_features or model.needs_chips:
        cuts = face_cuts(rgb, boxes, descriptor=model.needs_descriptor or model.needs_chips)
        if model.needs_features:

            def features_now() -> list:
                return features_of_cuts(cuts, descriptor=model.needs_descriptor, files=NetworkFiles())

            features = features_now if model.computes_features_alongside else features_now()
        if model.needs_chips:
            chips = np.stack([cut.chip for cut in cuts])
    return np.asarray(model.predict(crops=crops, features=features, chips=chips), dtype=np.float64)


# --- Adding a predicted photo to the dataset ---------------------------------------------------------


def predicted_photo_add(
    *, user: AbstractBaseUser, model_version: ModelVersion, data: bytes, file_name: str
) -> SourceImage:
    """Store the photo in the model's dataset with its faces aligned as in the dataset pipeline;
    each face gets the model's label as `suggested_label` (never as its label) and a Prediction.
    Curators only. A photo already in the dataset is refused (409) rather than duplicated."""
    dataset = model_version.dataset
    if not can_curate(user, dataset):
        raise PermissionDenied("Only curators of this dataset may add photos to it.")
    sha256 = hashlib.sha256(data).hexdigest()
    existing = SourceImage.objects.filter(dataset=dataset, sha256=sha256).first()
    if existing is not None:
        raise PredictError(
            f"This photo is already in “{dataset.name}” (as {existing.original_name}).",
            status=409,
            code="duplicate",
        )
    result = image_predict(data=data, model_version=model_version)
    return _store_predicted_photo(
        user=user, model_version=model_version, data=data, file_name=file_name, sha256=sha256, result=result
    )


def _store_predicted_photo(
    *, user, model_version: ModelVersion, data: bytes, file_name: str, sha256: str, result: PredictResult
) -> SourceImage:
    """The photo and its faces are curator's rows, stored by curator's service (crops named and
    faces filled as alignment does); training adds only its predictions, in the same transaction."""
    by_index = {face.index: face for face in result.faces}

    def predictions_add(image: SourceImage, faces: list[Face]) -> None:
        Prediction.objects.bulk_create(
            [
                Prediction(
                    face=face,
                    model_version=model_version,
                    probabilities=[by_index[face.index].probabilities[c] for c in model_version.classes],
                    predicted_label=by_index[face.index].label,
                    confidence=by_index[face.index].confidence,
                    disagrees=False,  # unlabelled: nothing to disagree with
                )
                for face in faces
                if face.index in by_index
            ]
        )

    return aligned_photo_store(
        dataset=model_version.dataset,
        data=data,
        sha256=sha256,
        info=result.info,
        original_name=f"predicted/{file_name or sha256 + result.info.extension}",
        aligned_faces=result.aligned,
        metadata={"added_from": "predict", "model_version": model_version.pk},
        suggested_labels={index: face.label for index, face in by_index.items()},
        faces_added=predictions_add,
    )
