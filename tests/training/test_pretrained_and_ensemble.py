"""The shipped pretrained gender network as a version that needs no training, and ensembles of
versions (averaged or stacked on the validation split): evaluated, served and refused like any
version, with a clear error when the network file or a member is missing."""

import numpy as np
import pytest

from embeddings import pretrained
from tests.training.predict_support import FIXTURES, lfw_photo
from training import inference, services
from training.data import TrainingDataError
from training.models import Architecture, JobStatus, ModelVersion, Prediction
from training.serving import PredictError, image_predict

pytestmark = pytest.mark.slow


def run(dataset, user, architecture, **config):
    job = services.training_job_create(
        dataset=dataset, user=user, architecture=architecture, config=config, enqueue=False
    )
    return services.training_job_run(job_id=job.pk)


@pytest.fixture
def pretrained_version(dataset, alice, training_faces) -> ModelVersion:
    job = run(dataset, alice, Architecture.PRETRAINED)
    assert job.status == JobStatus.SUCCEEDED, job.error + job.log
    return ModelVersion.objects.get(job=job)


def test_the_pretrained_network_is_a_version_without_training(pretrained_version, training_faces):
    version = pretrained_version
    assert version.artifact == "" and version.classes == ["female", "male"]
    assert version.metrics["n_test"] > 0 and version.metrics["accuracy"] > 0.6
    assert Prediction.objects.filter(model_version=version).count() == len(training_faces)
    # Its chip and arithmetic, on every LFW fixture photo (the label is the centre person's).
    right = total = 0
    for gender in ("female", "male"):
        for path in sorted((FIXTURES / "lfw" / gender).glob("*.jpg")):
            result = image_predict(data=path.read_bytes(), model_version=version)
            centre = min(result.faces, key=lambda f: abs(f.box[0] + f.box[2] - 250) + abs(f.box[1] + f.box[3] - 250))
            right += centre.label == gender
            total += 1
    assert right >= 0.8 * total


def test_the_pretrained_network_refuses_other_classes(dataset, alice, training_faces):
    dataset.classes = ["female", "male", "child"]
    dataset.save(update_fields=["classes"])
    for face in training_faces[:12]:
        face.label = "child"
        face.save(update_fields=["label"])
    with pytest.raises(TrainingDataError, match="female/male only"):
        run(dataset, alice, Architecture.PRETRAINED)


def test_a_missing_or_corrupt_network_file_is_a_clear_error_and_nothing_else_breaks(
    dataset, alice, training_faces, settings, tmp_path, client
):
    pretrained._session.cache_clear()
    settings.CURATOR_PRETRAINED_GENDER_MODEL = str(tmp_path / "nowhere.onnx")
    with pytest.raises(TrainingDataError, match="is missing"):
        run(dataset, alice, Architecture.PRETRAINED)
    corrupt = tmp_path / "gender.onnx"
    corrupt.write_bytes(b"not a network")
    settings.CURATOR_PRETRAINED_GENDER_MODEL = str(corrupt)
    pretrained._session.cache_clear()
    with pytest.raises(TrainingDataError, match="checksum differs"):
        run(dataset, alice, Architecture.PRETRAINED)
    # The embedding model still trains, on the descriptor alone.
    job = run(dataset, alice, Architecture.EMBEDDING, head="linear")
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert ModelVersion.objects.get(job=job).config["features"] == "descriptor"
    pretrained._session.cache_clear()


def test_an_ensemble_averages_or_stacks_its_members_and_is_served(dataset, alice, training_faces, pretrained_version):
    job = run(dataset, alice, Architecture.EMBEDDING, head="linear", pretrained_feature="no")
    embedding = ModelVersion.objects.get(job=job)
    members = [embedding.pk, pretrained_version.pk]

    averaged = ModelVersion.objects.get(
        job=run(dataset, alice, Architecture.ENSEMBLE, members=members, combine="average")
    )
    a = dict(Prediction.objects.filter(model_version=embedding).values_list("face_id", "probabilities"))
    b = dict(Prediction.objects.filter(model_version=pretrained_version).values_list("face_id", "probabilities"))
    for face_id, probabilities in Prediction.objects.filter(model_version=averaged).values_list(
        "face_id", "probabilities"
    ):
        np.testing.assert_allclose(probabilities, (np.array(a[face_id]) + np.array(b[face_id])) / 2, atol=1e-5)
    assert averaged.metrics["n_test"] == embedding.metrics["n_test"]

    stacked_job = run(dataset, alice, Architecture.ENSEMBLE, members=members, combine="stacked")
    assert stacked_job.status == JobStatus.SUCCEEDED, stacked_job.error
    stacked = ModelVersion.objects.get(job=stacked_job)
    assert stacked.config["stacker"]["coef"] and stacked.artifact == ""
    result = image_predict(data=lfw_photo("male").read_bytes(), model_version=stacked)
    assert len(result.faces) == 1
    assert sum(result.faces[0].probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_bad_ensembles_are_refused_with_the_reason(dataset, alice, training_faces, pretrained_version):
    with pytest.raises(TrainingDataError, match="at least two"):
        services.architecture_check(
            architecture=Architecture.ENSEMBLE,
            config={"members": [pretrained_version.pk]},
            dataset=dataset,
            classes=["female", "male"],
        )
    with pytest.raises(TrainingDataError, match="not versions of"):
        services.architecture_check(
            architecture=Architecture.ENSEMBLE,
            config={"members": [pretrained_version.pk, 999999]},
            dataset=dataset,
            classes=["female", "male"],
        )


def test_an_ensemble_whose_member_was_deleted_is_refused_not_broken(
    dataset, alice, alice_client, training_faces, pretrained_version
):
    job = run(dataset, alice, Architecture.EMBEDDING, head="linear")
    embedding = ModelVersion.objects.get(job=job)
    ensemble = ModelVersion.objects.get(
        job=run(dataset, alice, Architecture.ENSEMBLE, members=[embedding.pk, pretrained_version.pk])
    )
    deleted_id = embedding.pk
    embedding.delete()
    inference.clear_cache()
    with pytest.raises(services.ActivationRefused, match="deleted"):
        services.model_version_activate(model_version=ensemble)
    with pytest.raises(PredictError) as error:
        image_predict(data=lfw_photo("female").read_bytes(), model_version=ensemble)
    assert error.value.status == 503 and "were deleted" in str(error.value)
    # Its page still opens, naming the member that is gone and linking the one that is not.
    page = alice_client.get(f"/training/versions/{ensemble.pk}/").content.decode()
    assert f"version {deleted_id} (deleted)" in page
    assert f"/training/versions/{pretrained_version.pk}/" in page


def test_a_version_of_classes_the_dataset_no_longer_has_is_refused(
    dataset, alice, alice_client, training_faces, pretrained_version
):
    from training.serving import model_version_for

    services.model_version_activate(model_version=pretrained_version)
    dataset.classes = ["woman", "man"]
    dataset.save(update_fields=["classes"])
    pretrained_version.refresh_from_db()
    with pytest.raises(PredictError) as error:
        model_version_for(user=alice, model_version_id=pretrained_version.pk)
    assert error.value.status == 409 and "no longer has" in str(error.value)
    with pytest.raises(services.ActivationRefused, match="no longer has"):
        services.model_version_activate(model_version=pretrained_version)


def test_pre_labels_need_no_descriptor_and_a_later_embedding_job_completes_the_cache(
    dataset, alice, training_faces, pretrained_version
):
    from embeddings.models import FaceDescriptor

    rows = FaceDescriptor.objects.filter(face__dataset=dataset)
    assert rows.count() == len(training_faces)
    assert all(bytes(r.vector) == b"" and r.pretrained is not None for r in rows)  # dlib's ResNet never ran
    job = run(dataset, alice, Architecture.EMBEDDING, head="linear")
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert all(len(bytes(r.vector)) == 128 * 4 for r in FaceDescriptor.objects.filter(face__dataset=dataset))
