"""The default `embedding` model: dlib's descriptor of its own chip cut from the original photo
(with flip averaging), the pretrained network's logit as a feature when validation keeps it, a
linear head (C by cross-validation) or the dense head, chosen on held-out data. One face path:
a face gets the same features from the dataset as from a photo sent to the predict API."""

import numpy as np
import pytest

from curator.faces.chips import DESCRIPTOR_METHOD
from curator.faces.pipeline import AlignOptions, detect_and_align, landmark_box
from curator.images import load_rgb
from embeddings.descriptors import features_for_faces
from embeddings.features import photo_features
from embeddings.models import FaceDescriptor
from tests.training.predict_support import FIXTURES
from training import inference, services
from training.models import JobStatus, ModelVersion, Prediction
from training.serving import image_predict

pytestmark = pytest.mark.slow


def train(dataset, user, **config):
    job = services.training_job_create(
        dataset=dataset, user=user, architecture="embedding", config=config, enqueue=False
    )
    return services.training_job_run(job_id=job.pk)


def test_default_embedding_reads_the_photos_and_records_what_it_chose(dataset, alice, training_faces):
    job = train(dataset, alice, head="linear")
    assert job.status == JobStatus.SUCCEEDED, job.error + job.log
    version = ModelVersion.objects.get(job=job)
    assert version.config["head"] == "linear"
    assert version.config["features"] in ("descriptor", "descriptor+pretrained")
    assert 1e-3 <= version.config["C"] <= 100
    assert "Linear head on the descriptor + pretrained logit" in job.log  # auto tried both feature sets

    rows = FaceDescriptor.objects.filter(face__dataset=dataset)
    assert rows.count() == len(training_faces)
    assert set(rows.values_list("method", flat=True)) == {DESCRIPTOR_METHOD}
    assert all(row.pretrained is not None for row in rows)
    vector = np.frombuffer(bytes(rows[0].vector), dtype=np.float32)
    assert vector.shape == (128,) and 0.5 < np.linalg.norm(vector) < 1.5  # dlib descriptors are about unit length

    # The artifact, loaded afresh from storage, reproduces the stored predictions from the features.
    inference.clear_cache()
    model = inference.load_model_version(version.pk)
    features = features_for_faces([f.pk for f in training_faces])
    probabilities = model.predict(features=[features[f.pk] for f in training_faces])
    stored = dict(Prediction.objects.filter(model_version=version).values_list("face_id", "probabilities"))
    for face, row in zip(training_faces, probabilities, strict=True):
        np.testing.assert_allclose(row, stored[face.pk], atol=2e-5)


def test_feature_set_and_head_can_be_forced(dataset, alice, training_faces):
    job = train(dataset, alice, head="linear", pretrained_feature="no")
    version = ModelVersion.objects.get(job=job)
    assert version.config["features"] == "descriptor"
    assert "pretrained logit" not in job.log

    job = train(dataset, alice, head="dense", epochs=2, pretrained_feature="yes")
    version = ModelVersion.objects.get(job=job)
    assert (version.config["head"], version.config["features"]) == ("dense", "descriptor+pretrained")
    assert len(job.history) == 2


def test_the_pretrained_feature_is_refused_for_classes_it_does_not_know(dataset, alice, training_faces):
    dataset.classes = ["female", "male", "child"]
    dataset.save(update_fields=["classes"])
    for face in training_faces[:12]:
        face.label = "child"
        face.save(update_fields=["label"])
    job = train(dataset, alice, head="linear", pretrained_feature="yes")
    assert job.status == JobStatus.FAILED
    assert "only answers female/male" in job.error
    job = train(dataset, alice, head="linear")  # auto: simply without it
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert ModelVersion.objects.get(job=job).config["features"] == "descriptor"


def test_features_are_cached_and_computed_again_when_the_face_moves(dataset, alice, training_faces):
    first = features_for_faces([f.pk for f in training_faces])
    assert FaceDescriptor.objects.filter(face__dataset=dataset).count() == len(training_faces)
    again = features_for_faces([f.pk for f in training_faces])
    face = training_faces[0]
    np.testing.assert_array_equal(first[face.pk].descriptor, again[face.pk].descriptor)

    # Realignment that moves the box makes the cached row stale: it is computed again.
    face.box_left += 6
    face.save(update_fields=["box_left"])
    moved = features_for_faces([face.pk])
    assert not np.array_equal(moved[face.pk].descriptor, first[face.pk].descriptor)
    assert FaceDescriptor.objects.get(face=face).source.endswith(",".join(str(v) for v in face.box))


def test_a_photo_that_is_gone_is_a_clear_training_error(dataset, alice, training_faces):
    from django.core.files.storage import default_storage

    default_storage.delete(training_faces[3].image.file)
    job = train(dataset, alice, head="linear")
    assert job.status == JobStatus.FAILED
    assert "original photos of 1 labelled faces cannot be read" in job.error


def test_a_face_gets_the_same_features_from_the_dataset_and_from_a_new_photo(dataset, training_faces):
    face = training_faces[0]
    stored = features_for_faces([face.pk])[face.pk]
    path = next(FIXTURES.rglob(face.image.original_name))
    rgb = load_rgb(path)
    aligned = detect_and_align(rgb, AlignOptions.from_dataset(dataset))[0]
    box = landmark_box(width=rgb.shape[1], height=rgb.shape[0], box=aligned.box, whole_image=aligned.whole_image)
    fresh = photo_features(rgb, [box])[0]
    np.testing.assert_allclose(fresh.descriptor_tta, stored.descriptor_tta, atol=1e-6)
    np.testing.assert_allclose(fresh.pretrained, stored.pretrained, atol=1e-6)


def test_a_tight_crop_that_imports_also_predicts(dataset, alice, training_faces):
    """The predict path searches a crop-shaped photo again padded, as imports do (it used not to,
    and lost 6 % of UTKFace crops), even where the dataset keeps no whole-image faces."""
    job = train(dataset, alice, head="linear")
    version = ModelVersion.objects.get(job=job)
    dataset.keep_undetected_crops = False
    dataset.save(update_fields=["keep_undetected_crops"])
    version.refresh_from_db()
    tight = (FIXTURES / "utkface" / "25_1_0_20170112205049764.jpg.chip.jpg").read_bytes()
    imported = detect_and_align(load_rgb(tight), AlignOptions.from_dataset(dataset))
    assert len(imported) == 1 and not imported[0].whole_image
    result = image_predict(data=tight, model_version=version)
    assert len(result.faces) == 1
    assert result.faces[0].box == imported[0].box
