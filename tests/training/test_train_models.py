"""Each Keras architecture trains for a couple of epochs on the fixture faces and yields a
registered version whose artifact loads and predicts exactly what was stored, with a frozen
snapshot and an evaluation on the test split. (The embedding model's linear head, the pretrained
network and ensembles have test files of their own.)"""

import io

import numpy as np
import pytest
from django.core.files.storage import default_storage
from PIL import Image

from embeddings.descriptors import features_for_faces
from training import inference, services
from training.data import snapshot_read
from training.models import JobStatus, ModelVersion, Prediction

pytestmark = pytest.mark.slow

TINY = {
    "seed-cnn": {"epochs": 2, "batch_size": 16, "input_size": 48},
    "cnn": {"epochs": 2, "batch_size": 16, "input_size": 64},
    "embedding": {"epochs": 2, "head": "dense"},
}


def train(dataset, user, architecture, **config):
    job = services.training_job_create(
        dataset=dataset, user=user, architecture=architecture, config={**TINY[architecture], **config}, enqueue=False
    )
    return services.training_job_run(job_id=job.pk)


def decode(path: str) -> np.ndarray:
    with default_storage.open(path, "rb") as handle, Image.open(io.BytesIO(handle.read())) as image:
        return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize("architecture", ["seed-cnn", "cnn", "embedding"])
def test_each_model_trains_and_its_artifact_predicts_what_was_stored(architecture, dataset, alice, training_faces):
    job = train(dataset, alice, architecture)
    assert job.status == JobStatus.SUCCEEDED, job.error + job.log
    assert len(job.history) == 2
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr"} <= set(job.history[0])
    assert job.timings["train_s"] > 0 and job.timings["total_s"] >= job.timings["train_s"]

    version = ModelVersion.objects.get(job=job)
    assert version.number == 1 and version.architecture == architecture
    assert version.classes == ["female", "male"]
    assert version.tf_version and version.keras_version
    assert version.artifact.startswith(f"datasets/{dataset.pk}/models/") and version.artifact.endswith(".keras")
    assert default_storage.exists(version.artifact)

    # Every face got a prediction; reloading the artifact from storage reproduces them.
    stored = {p.face_id: p for p in Prediction.objects.filter(model_version=version)}
    assert set(stored) == {f.pk for f in training_faces}
    inference.clear_cache()
    model = inference.load_model_version(version.pk)
    assert model.classes == ["female", "male"]
    faces = training_faces[:12]
    if architecture == "embedding":
        features = features_for_faces([f.pk for f in faces])
        probabilities = model.predict(features=[features[f.pk] for f in faces])
    else:
        probabilities = model.predict_crops(np.stack([decode(f.crop) for f in faces]))
    assert probabilities.shape == (12, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    for face, row in zip(faces, probabilities, strict=True):
        np.testing.assert_allclose(row, stored[face.pk].probabilities, atol=2e-5)
        assert stored[face.pk].predicted_label == version.classes[int(np.argmax(row))]
        assert stored[face.pk].disagrees == (face.label != stored[face.pk].predicted_label)

    # The frozen snapshot lists exactly the faces, labels and splits used.
    rows = snapshot_read(version.snapshot)
    assert {r["face_id"] for r in rows} == {f.pk for f in training_faces}
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    assert all(r["label"] == next(f.label for f in training_faces if f.pk == r["face_id"]) for r in rows)

    metrics = version.metrics
    test_count = sum(1 for r in rows if r["split"] == "test")
    assert metrics["n_test"] == test_count
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert sum(map(sum, metrics["confusion_matrix"])) == test_count
    assert [r["class"] for r in metrics["per_class"]] == ["female", "male"]
    assert metrics["slices"]["source"]  # UTKFace / LFW slices of the test faces
    assert len(metrics["history"]) == 2


def test_later_relabels_do_not_change_what_a_version_claims(dataset, alice, training_faces):
    job = train(dataset, alice, "embedding")
    version = ModelVersion.objects.get(job=job)
    before = snapshot_read(version.snapshot)
    face = training_faces[0]
    face.label = "male" if face.label == "female" else "female"
    face.save(update_fields=["label"])
    assert snapshot_read(version.snapshot) == before


def test_manual_splits_are_kept_and_unassigned_faces_get_a_seeded_split(dataset, alice, training_faces):
    for i, face in enumerate(training_faces):
        face.split = ["train", "train", "train", "val", "test"][i % 5]
        face.split_manual = True
        face.save(update_fields=["split", "split_manual"])
    job = train(dataset, alice, "embedding")
    rows = {r["face_id"]: r for r in snapshot_read(ModelVersion.objects.get(job=job).snapshot)}
    assert all(rows[f.pk]["split"] == f.split for f in training_faces)
    assert all(r["split_assigned_by_job"] == "0" for r in rows.values())
    # The job never writes splits (or labels) back to the faces.
    training_faces[0].refresh_from_db()
    assert training_faces[0].split == "train"


def test_predictions_can_be_recomputed_in_batches_without_duplicates(dataset, alice, training_faces):
    job = train(dataset, alice, "cnn")
    version = ModelVersion.objects.get(job=job)
    progress = []
    n = services.predictions_compute(
        model_version=version, batch_size=10, progress=lambda done, total: progress.append((done, total))
    )
    assert n == len(training_faces)
    assert progress[-1] == (len(training_faces), len(training_faces)) and len(progress) == 5
    assert Prediction.objects.filter(model_version=version).count() == len(training_faces)
