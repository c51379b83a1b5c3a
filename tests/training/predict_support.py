"""Shared by the predict, review and out-of-fold tests: a dataset of the 41 fixture faces and an
`embedding` model trained on it in the test (two epochs: fast, and good enough to disagree)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from curator.models import Dataset
from tests.training.factories import add_faces, fixture_face_rows
from training.models import Architecture, JobStatus, ModelVersion

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "faces"


def labelled_faces(dataset: Dataset):
    dataset.min_faces_per_class = 5
    dataset.save(update_fields=["min_faces_per_class"])
    return add_faces(dataset, fixture_face_rows(FIXTURES))


def train_embedding(
    dataset: Dataset, user, *, epochs: int = 2, activate: bool = True, architecture: str = Architecture.EMBEDDING
) -> ModelVersion:
    """Train and register a model version synchronously (embedding by default), with its predictions."""
    from training.services import model_version_activate, training_job_create, training_job_run

    job = training_job_create(
        dataset=dataset, user=user, architecture=architecture, config={"epochs": epochs}, enqueue=False
    )
    job = training_job_run(job_id=job.pk)
    assert job.status == JobStatus.SUCCEEDED, f"{job.error}\n{job.log}"
    version = ModelVersion.objects.get(job=job)
    if activate:
        version = model_version_activate(model_version=version)
    return version


_trained: dict = {}


def embedding_version(
    dataset: Dataset, user, *, activate: bool = True, predictions: bool = True, fresh: bool = False
) -> ModelVersion:
    """An `embedding` version of the fixture faces: trained in the first test that asks (through
    the training service, as a job would), then registered from the same artifact in later tests
    so each test does not spend 20 s training the same model again."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.db.models import Max

    from training.services import model_version_activate, predictions_compute

    if fresh or not _trained:
        version = train_embedding(dataset, user, activate=activate)
        with default_storage.open(version.artifact, "rb") as handle:
            _trained.update(
                artifact=handle.read(), config=version.config, classes=version.classes, metrics=version.metrics
            )
        return version
    number = (ModelVersion.objects.filter(dataset=dataset).aggregate(n=Max("number"))["n"] or 0) + 1
    path = default_storage.save(
        f"datasets/{dataset.pk}/models/v{number}-embedding-fixture.keras", ContentFile(_trained["artifact"])
    )
    version = ModelVersion.objects.create(
        dataset=dataset,
        number=number,
        architecture=Architecture.EMBEDDING,
        artifact=path,
        classes=_trained["classes"],
        config=_trained["config"],
        metrics=_trained["metrics"],
    )
    if predictions:
        predictions_compute(model_version=version)
    if activate:
        version = model_version_activate(model_version=version)
    return version


def lfw_photo(gender: str = "female", index: int = 0) -> Path:
    return sorted((FIXTURES / "lfw" / gender).glob("*.jpg"))[index]


def photo_640x480(gender: str = "female", index: int = 0) -> bytes:
    """A 640x480 JPEG with one LFW face pasted in the middle on a plain background."""
    with Image.open(lfw_photo(gender, index)) as face:
        canvas = Image.new("RGB", (640, 480), (128, 128, 120))
        canvas.paste(face.convert("RGB"), (195, 115))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def blank_photo(width: int = 320, height: int = 240) -> bytes:
    """A photo without any face: smooth noise."""
    rng = np.random.default_rng(0)
    pixels = (rng.random((height // 8, width // 8, 3)) * 255).astype(np.uint8)
    image = Image.fromarray(pixels).resize((width, height), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
