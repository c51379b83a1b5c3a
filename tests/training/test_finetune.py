"""The `finetune` architecture: dlib's face network fine-tuned for the dataset's classes. Its head
starts from the logistic regression on the frozen descriptors, the top stages train on augmented
chips, test-time augmentation is chosen on the validation split, and the version is saved,
served by onnxruntime (the same probabilities as the Keras model), evaluated, predicted on every
face, answered through the predict path and usable in an ensemble. Cancel keeps the best epoch."""

import threading

import numpy as np
import pytest

from embeddings.descriptors import chips_for_faces
from embeddings.network.tta import MODES, tta_choose, tta_views, view_count
from tests.training.predict_support import photo_640x480
from training import inference, services
from training.config import ConfigError, config_build
from training.models import Architecture, JobStatus, ModelVersion, Prediction, TrainingJob
from training.serving import image_predict

pytestmark = pytest.mark.slow

# Small and short: the fixture set has 41 faces; what is tested is the path, not the accuracy.
QUICK = {"epochs": 2, "batch_size": 8, "unfreeze_stages": 1}


def train(dataset, user, **config):
    job = services.training_job_create(
        dataset=dataset, user=user, architecture=Architecture.FINETUNE, config={**QUICK, **config}, enqueue=False
    )
    return services.training_job_run(job_id=job.pk)


def test_finetune_trains_registers_serves_and_predicts_every_face(dataset, alice, training_faces):
    job = train(dataset, alice)
    assert job.status == JobStatus.SUCCEEDED, job.error + job.log
    version = ModelVersion.objects.get(job=job)
    assert version.architecture == Architecture.FINETUNE
    assert version.artifact.endswith(".keras")
    assert "Head first: logistic regression" in job.log
    assert "Test-time augmentation on the validation split" in job.log
    assert version.config["tta"] in MODES
    assert set(version.config["tta_val_accuracy"]) == set(MODES)
    assert 1 <= len(version.metrics["history"]) <= 2
    assert version.metrics["n_test"] > 0 and 0 <= version.metrics["accuracy"] <= 1
    assert Prediction.objects.filter(model_version=version).count() == len(training_faces)

    # Served by onnxruntime from the artifact: the same probabilities as the Keras model it was read from.
    inference.clear_cache()
    served = inference.load_model_version(version.pk)
    keras_model = inference.load_keras_file(version.artifact)
    faces = training_faces[:6]
    chips = chips_for_faces([f.pk for f in faces])
    batch = np.stack([chips[f.pk] for f in faces])
    views = tta_views(batch, served.tta)
    expected = keras_model.predict(views.reshape(-1, 150, 150, 3).astype(np.float32), verbose=0)
    expected = expected.reshape(len(views), len(faces), -1).mean(axis=0)
    np.testing.assert_allclose(served.predict(chips=batch), expected, atol=1e-4)
    # ...and the stored predictions are those.
    stored = dict(Prediction.objects.filter(model_version=version).values_list("face_id", "probabilities"))
    np.testing.assert_allclose([stored[f.pk] for f in faces], expected, atol=1e-4)

    # The predict path (a photo as the API gets it) answers with it.
    result = image_predict(data=photo_640x480("female"), model_version=version)
    assert len(result.faces) == 1
    assert sum(result.faces[0].probabilities.values()) == pytest.approx(1.0, abs=1e-4)

    # It combines with an embedding version in an ensemble that needs both chips and features.
    other = ModelVersion.objects.get(job=train_embedding_job(dataset, alice))
    ensemble_job = services.training_job_create(
        dataset=dataset,
        user=alice,
        architecture=Architecture.ENSEMBLE,
        config={"members": [version.pk, other.pk], "combine": "average"},
        enqueue=False,
    )
    ensemble_job = services.training_job_run(job_id=ensemble_job.pk)
    assert ensemble_job.status == JobStatus.SUCCEEDED, ensemble_job.error + ensemble_job.log
    ensemble_version = ModelVersion.objects.get(job=ensemble_job)
    ensemble = inference.load_model_version(ensemble_version)
    assert ensemble.needs_chips and ensemble.needs_features
    # The predict path computes the features on a second thread while the fine-tuned network runs:
    # the same probabilities as each member answering alone, averaged.
    assert ensemble.computes_features_alongside
    photo = photo_640x480("male")
    together = image_predict(data=photo, model_version=ensemble_version).faces
    alone = [image_predict(data=photo, model_version=member).faces for member in (version, other)]
    assert len(together) == 1 and all(len(faces) == 1 for faces in alone)
    for name, probability in together[0].probabilities.items():
        assert probability == pytest.approx(np.mean([faces[0].probabilities[name] for faces in alone]), abs=1e-5)


def train_embedding_job(dataset, user):
    job = services.training_job_create(
        dataset=dataset, user=user, architecture=Architecture.EMBEDDING, config={"head": "linear"}, enqueue=False
    )
    return services.training_job_run(job_id=job.pk)


def test_tta_views_are_what_each_mode_says():
    chips = np.random.default_rng(0).integers(0, 255, (3, 150, 150, 3), dtype=np.uint8)
    for mode in MODES:
        views = tta_views(chips, mode)
        assert views.shape == (view_count(mode), 3, 150, 150, 3)
        np.testing.assert_array_equal(views[0], chips)
    np.testing.assert_array_equal(tta_views(chips, "mirror")[1], chips[:, :, ::-1])
    # The jitters are zooms (in, then out) about the centre, mirrored like the chip.
    jittered = tta_views(chips, "mirror+jitter")
    assert not np.array_equal(jittered[1], chips) and not np.array_equal(jittered[1], jittered[2])
    np.testing.assert_array_equal(jittered[4], jittered[1][:, :, ::-1])
    with pytest.raises(ValueError, match="unknown test-time augmentation"):
        tta_views(chips, "sideways")


def test_a_costlier_tta_mode_is_served_only_when_its_gain_beats_the_noise():
    def right(wrong: int, n: int = 400) -> np.ndarray:
        return np.arange(n) >= wrong  # the first `wrong` chips missed

    # One chip more out of 400 (wins 1, losses 0: not above sqrt(1)) is noise: the cheapest mode serves.
    assert tta_choose({"none": right(40), "mirror": right(39), "mirror+jitter": right(39)}) == "none"
    # Twelve more is not: mirror serves; jitter's one more chip than mirror does not pay for four more views.
    assert tta_choose({"none": right(40), "mirror": right(28), "mirror+jitter": right(27)}) == "mirror"
    assert tta_choose({"none": right(40), "mirror": right(40), "mirror+jitter": right(20)}) == "mirror+jitter"
    # Counted per chip, not by the totals: a mode that fixes 10 chips and breaks 10 others gains nothing.
    base = right(40)
    swapped = base.copy()
    swapped[:10], swapped[100:110] = True, False
    assert tta_choose({"none": base, "mirror": swapped}) == "none"


def test_cancel_during_training_keeps_the_best_epoch_when_asked(transactional_db, dataset, alice, training_faces):
    job = services.training_job_create(
        dataset=dataset,
        user=alice,
        architecture=Architecture.FINETUNE,
        config={**QUICK, "epochs": 50, "patience": 50, "tta": "mirror"},
        enqueue=False,
    )
    # Cancel once the second epoch has begun (an event: the job's own epoch counter), keeping the best.
    done = threading.Event()

    def cancel_after_first_epoch():
        from django.db import connections

        try:
            while not done.is_set():
                current = TrainingJob.objects.get(pk=job.pk)
                if current.epoch >= 2:
                    services.training_job_cancel(job=current, keep_best=True)
                    return
                done.wait(0.2)
        finally:
            connections.close_all()

    watcher = threading.Thread(target=cancel_after_first_epoch)
    watcher.start()
    try:
        job = services.training_job_run(job_id=job.pk)
    finally:
        done.set()
        watcher.join()
    assert job.status == JobStatus.CANCELLED, job.error + job.log
    version = ModelVersion.objects.get(job=job)
    assert version.metrics["stopped"] == "cancelled"
    assert version.config["tta"] == "mirror"  # a forced mode is kept (a cancelled job measures none)
    assert version.metrics["best_epoch"] >= 1
    assert len(version.metrics["history"]) < 50


def test_config_ranges_are_checked():
    config = config_build(Architecture.FINETUNE)
    assert config["unfreeze_stages"] == 2 and config["tta"] == "auto"
    with pytest.raises(ConfigError) as exc:
        config_build(Architecture.FINETUNE, {"unfreeze_stages": 9, "tta": "sideways", "members": [1, 2]})
    assert set(exc.value.errors) == {"unfreeze_stages", "tta", "members"}
