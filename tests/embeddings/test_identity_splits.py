"""Identity clusters keep a person on one side of the split, known names win over descriptors,
and the leakage a model version's evaluation reports."""

import numpy as np

from curator.models import Face, SourceImage
from embeddings import identities, selectors
from embeddings.models import FaceIdentity
from embeddings.services import identity_clusters_update
from labeling import services
from tests.embeddings.factories import descriptors_store, far_apart_vectors, near
from tests.labeling.factories import make_faces


def split_of(dataset) -> dict[int, str]:
    return dict(Face.objects.filter(dataset=dataset).values_list("id", "split"))


def person_vectors(n_people: int, per_person: int, *, seed: int = 0) -> np.ndarray:
    """per_person faces of each of n_people, 0.2-0.3 apart within a person (other photos of
    them, not copies) and ~1.4 between people."""
    rng = np.random.default_rng(seed)
    centres = far_apart_vectors(n_people, seed=seed)
    out = []
    for c in centres:
        for _ in range(per_person):
            noise = rng.normal(size=128).astype(np.float32)
            out.append(c + 0.25 * noise / np.linalg.norm(noise))
    return np.stack(out)


def test_known_identity_from_metadata_or_lfw_names():
    assert identities.known_identity({"identity": "p1"}, "x.jpg") == "p1"
    assert identities.known_identity({"person": "Ann"}, "") == "Ann"
    assert identities.known_identity({}, "lfw_wild/Adam_Rich_0001.jpg") == "Adam_Rich"
    assert identities.known_identity({}, "photos/0001-15_1_1_20170109212440397.jpg.chip.jpg") == ""
    assert identities.known_identity(None, "IMG_0001.jpg") == ""


def test_clusters_follow_the_descriptors():
    labels = identities.cluster_labels(person_vectors(5, 4))
    assert len(set(labels.tolist())) == 5
    assert all(len(set(labels[i * 4 : i * 4 + 4].tolist())) == 1 for i in range(5))


def test_splits_keep_each_identity_cluster_on_one_side(alice, dataset):
    n_people, per = 12, 5
    # No metadata identity: the clusters come from the descriptors alone.
    faces = make_faces(dataset, n_people * per, labels=["female"] * per + ["male"] * per, metadata=[{}] * 60)
    descriptors_store(faces, vectors=person_vectors(n_people, per))
    assert identity_clusters_update(dataset_id=dataset.pk) == n_people
    assert identity_clusters_update(dataset_id=dataset.pk) == 0  # nothing changed: not recomputed
    for seed in range(3):
        services.splits_assign(user=alice, dataset=dataset, seed=seed)
        s = split_of(dataset)
        for p in range(n_people):
            assert len({s[f.pk] for f in faces[p * per : (p + 1) * per]}) == 1
        assert {"train", "test"} <= set(s.values())


def test_known_names_override_descriptor_clusters(dataset):
    faces = make_faces(dataset, 4, metadata=[{"identity": "a"}, {"identity": "a"}, {}, {}])
    v = far_apart_vectors(4)
    v[3] = near(v[2], 0.1)  # the two unnamed faces look alike
    v[1] = near(v[3], 0.01, axis=1)  # a named face that looks like them stays with its name
    descriptors_store(faces, vectors=v)
    identity_clusters_update(dataset_id=dataset.pk)
    cluster = dict(FaceIdentity.objects.values_list("face_id", "cluster"))
    known = dict(FaceIdentity.objects.values_list("face_id", "known"))
    assert cluster[faces[0].pk] == cluster[faces[1].pk] != cluster[faces[2].pk] == cluster[faces[3].pk]
    assert known[faces[0].pk] and not known[faces[2].pk]
    SourceImage.objects.filter(pk=faces[2].image_id).update(original_name="lfw_wild/Ann_Lee_0001.jpg")
    identity_clusters_update(dataset_id=dataset.pk, force=True)
    assert FaceIdentity.objects.get(face=faces[2]).known


def test_leakage_counts_test_faces_sharing_a_cluster_with_training_faces(dataset):
    faces = make_faces(dataset, 6, metadata=[{}] * 6)
    descriptors_store(faces, vectors=person_vectors(3, 2))  # people: (0,1) (2,3) (4,5)
    identity_clusters_update(dataset_id=dataset.pk)
    train = [faces[0].pk, faces[2].pk]
    test = [faces[1].pk, faces[4].pk, faces[5].pk]
    assert selectors.identity_leakage(train_ids=train, test_ids=test) == {"test": 3, "leaked": 1, "clustered": 3}


def test_a_versions_evaluation_stores_the_leakage(dataset):
    """training.services.model_version_evaluate adds it to the metrics (computing the clusters
    first when the descriptors changed); the version page shows it."""
    from training.data import Example, TrainingData
    from training.models import ModelVersion
    from training.services import identity_leakage_measure

    faces = make_faces(dataset, 4, metadata=[{}] * 4)
    descriptors_store(faces, vectors=person_vectors(2, 2))  # people: (0,1) (2,3)
    examples = [
        Example(f.pk, f.crop, "female", split, False)
        for f, split in zip(faces, ["train", "test", "test", "val"], strict=True)
    ]
    data = TrainingData(classes=["female", "male"], examples=examples)
    version = ModelVersion(dataset=dataset, number=1, architecture="embedding")
    leak = identity_leakage_measure(model_version=version, data=data, test=data.of_split("test"))
    assert leak == {"test": 2, "leaked": 1, "clustered": 2}
