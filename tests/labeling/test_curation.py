"""Exclusion rules, the minimum per class, seeded splits, near-duplicate groups and export."""

import csv
import io
import zipfile

import pytest
from django.core.files.storage import default_storage

from curator.models import Face
from labeling import services
from labeling.models import BulkAction
from tests.embeddings.factories import descriptors_store, far_apart_vectors, near
from tests.labeling.factories import make_faces


def test_threshold_rule_excludes_failing_faces_and_is_reversible(alice, dataset):
    faces = make_faces(dataset, 20, labels=["female", "male"])
    expected = {f.pk for f in faces if f.size_px < 100 or abs(f.yaw) > 20}
    action = services.exclusion_rule_apply(
        user=alice,
        dataset=dataset,
        thresholds={"min_size_px": "100", "max_abs_yaw": 20, "min_sharpness": ""},
        confirmed_large=True,
    )
    assert action.kind == BulkAction.Kind.RULE and action.face_count == len(expected) > 0
    assert set(Face.objects.filter(is_excluded=True).values_list("id", flat=True)) == expected
    assert Face.objects.filter(is_excluded=True).first().exclusion_reason.startswith("rule: size below 100")
    # Running it again changes nothing new; reverting restores every face.
    assert services.exclusion_rule_apply(user=alice, dataset=dataset, thresholds={"min_size_px": 100}).face_count == 0
    services.bulk_action_revert(user=alice, action=action)
    assert not Face.objects.filter(is_excluded=True).exists()


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [({}, "at least one threshold"), ({"min_size_px": "big"}, "must be a number"), ({"max_age": 3}, "Unknown rule")],
)
def test_bad_rules_change_nothing(alice, dataset, thresholds, message):
    make_faces(dataset, 3, labels=["female"])
    with pytest.raises(services.InvalidChange, match=message):
        services.exclusion_rule_apply(user=alice, dataset=dataset, thresholds=thresholds)
    assert not BulkAction.objects.exists()


def test_min_per_class_excludes_small_classes(alice, dataset):
    dataset.classes = ["female", "male", "other"]
    dataset.save()
    make_faces(dataset, 12, labels=["female", "male", "male", "other"])  # 3 female, 6 male, 3 other
    action = services.min_per_class_rule_apply(user=alice, dataset=dataset, minimum=4, confirmed_large=True)
    assert action.params["classes"] == ["female", "other"] and action.face_count == 6
    assert set(Face.objects.filter(is_excluded=False).values_list("label", flat=True)) == {"male"}
    with pytest.raises(services.InvalidChange):
        services.min_per_class_rule_apply(user=alice, dataset=dataset, minimum=0)


def split_of(dataset) -> dict[int, str]:
    return dict(Face.objects.filter(dataset=dataset).values_list("id", "split"))


def test_splits_are_stratified_seeded_and_repeatable(alice, dataset):
    faces = make_faces(dataset, 100, labels=["female", "male", "male", "male"])
    services.splits_assign(user=alice, dataset=dataset, seed=7)
    first = split_of(dataset)
    for label, n in (("female", 25), ("male", 75)):
        counts = {s: sum(1 for f in faces if f.label == label and first[f.pk] == s) for s in ("train", "val", "test")}
        assert sum(counts.values()) == n
        assert abs(counts["train"] - 0.7 * n) <= 1 and abs(counts["val"] - 0.15 * n) <= 1
    again = services.splits_assign(user=alice, dataset=dataset, seed=7)
    assert split_of(dataset) == first and again.face_count == 0
    services.splits_assign(user=alice, dataset=dataset, seed=8)
    assert split_of(dataset) != first


def test_splits_keep_duplicates_identities_and_manual_choices(alice, bob, dataset):
    n = 40
    hashes = [0x00FF00FF00FF00FF ^ (i * 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFF) for i in range(n)]
    hashes[1] = hashes[0] ^ 0b101  # face 1 is a near-duplicate of face 0 (2 bits)
    metadata = [{"identity": f"p{i}"} for i in range(n)]
    metadata[3]["identity"] = metadata[2]["identity"] = "same-person"
    faces = make_faces(dataset, n, labels=["female", "male"], metadata=metadata)
    vectors = far_apart_vectors(n)
    vectors[1] = near(vectors[0], 0.4)  # and the descriptors agree: one person (a hash alone flags nothing)
    descriptors_store(faces, vectors=vectors, phashes=hashes)  # region hashes of the original photos (embeddings)
    services.faces_update(user=bob, dataset=dataset, faces=[faces[5].pk], changes={"split": "test"})
    services.faces_update(user=bob, dataset=dataset, faces=[faces[7].pk], changes={"is_excluded": True})
    for seed in range(5):
        services.splits_assign(user=alice, dataset=dataset, seed=seed)
        s = split_of(dataset)
        assert s[faces[0].pk] == s[faces[1].pk] != ""
        assert s[faces[2].pk] == s[faces[3].pk] != ""
        assert s[faces[5].pk] == "test"
        assert s[faces[7].pk] == ""  # excluded faces get no automatic split


def test_bad_split_parameters(alice, dataset):
    make_faces(dataset, 4, labels=["female"])
    with pytest.raises(services.InvalidChange, match="three"):
        services.splits_assign(user=alice, dataset=dataset, ratios=(1, 2))
    with pytest.raises(services.InvalidChange, match="three"):
        services.splits_assign(user=alice, dataset=dataset, ratios=("a", 1, 1))
    with pytest.raises(services.InvalidChange, match="seed"):
        services.splits_assign(user=alice, dataset=dataset, seed="x")
    assert not BulkAction.objects.exists()


def test_export_has_folder_per_class_per_split_and_a_manifest(alice, dataset):
    faces = make_faces(dataset, 10, labels=["female", "male", ""])
    services.splits_assign(user=alice, dataset=dataset, seed=1)
    services.faces_update(user=alice, dataset=dataset, faces=[faces[0].pk], changes={"is_excluded": True})
    path = services.export_create(user=alice, dataset=dataset)
    assert path.startswith(f"datasets/{dataset.pk}/exports/") and path.endswith(".zip")
    with default_storage.open(path, "rb") as fh, zipfile.ZipFile(io.BytesIO(fh.read())) as zf:
        names = set(zf.namelist())
        rows = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode())))
        first = zf.read(rows[0]["file"])
    included = [f for f in Face.objects.filter(dataset=dataset, is_excluded=False).exclude(label="")]
    assert len(rows) == len(included) == 6
    assert names == {"manifest.csv"} | {f"{f.split}/{f.label}/{f.pk}.jpg" for f in included}
    assert first[:2] == b"\xff\xd8"  # a real JPEG crop
    assert {"label", "split", "size_px", "sharpness", "meta_age", "meta_race", "source_image"} <= set(rows[0])
    assert all(r["split"] in {"train", "val", "test"} for r in rows)
    assert str(faces[0].pk) not in {r["face_id"] for r in rows}


def test_export_of_nothing_is_refused(alice, dataset):
    make_faces(dataset, 2)
    with pytest.raises(services.NoFaces, match="no included, labelled faces"):
        services.export_create(user=alice, dataset=dataset)
