"""faces_update, undo and revert: events, versions, conflicts, predictions kept in step, and
bad input that changes nothing."""

import pytest

from curator.models import Dataset, Face
from labeling import services
from labeling.models import BulkAction, LabelEvent
from tests.labeling.factories import make_faces
from training.models import ModelVersion, Prediction


@pytest.fixture
def faces(dataset):
    return make_faces(dataset, 12, labels=["female", "male", ""])


def state(face_id: int) -> dict:
    return Face.objects.filter(pk=face_id).values("label", "is_unsure", "is_excluded", "split", "version").get()


def test_relabel_writes_one_event_per_changed_field_and_bumps_version(bob, dataset, faces):
    face = faces[0]  # female, version 1
    action = services.faces_update(user=bob, dataset=dataset, faces=[face.pk], changes={"label": "male"})
    assert action.kind == BulkAction.Kind.LABEL and action.face_count == 1 and action.user == bob
    assert state(face.pk) == {"label": "male", "is_unsure": False, "is_excluded": False, "split": "", "version": 2}
    event = LabelEvent.objects.get(action=action)
    assert (event.face_id, event.field, event.old_value, event.new_value, event.user) == (
        face.pk,
        "label",
        "female",
        "male",
        bob,
    )
    face.refresh_from_db()
    assert face.label_origin == Face.LabelOrigin.HUMAN


def test_bulk_change_skips_faces_already_in_that_state(alice, dataset, faces):
    ids = [f.pk for f in faces]
    action = services.faces_update(user=alice, dataset=dataset, faces=ids, changes={"label": "female"})
    assert action.face_count == 8  # 4 of the 12 were female already
    assert LabelEvent.objects.filter(action=action).count() == 8
    assert set(Face.objects.filter(pk__in=ids).values_list("label", flat=True)) == {"female"}
    assert Face.objects.get(pk=faces[0].pk).version == 1  # unchanged face keeps its version


def test_unsure_exclude_and_split_are_recorded(bob, dataset, faces):
    f = faces[1]
    services.faces_update(user=bob, dataset=dataset, faces=[f.pk], changes={"is_unsure": True})
    services.faces_update(user=bob, dataset=dataset, faces=[f.pk], changes={"is_excluded": True})
    a = services.faces_update(user=bob, dataset=dataset, faces=[f.pk], changes={"split": "val"})
    f.refresh_from_db()
    assert (f.is_unsure, f.is_excluded, f.split, f.split_manual, f.version) == (True, True, "val", True, 4)
    assert f.exclusion_reason == "Exclude"
    assert a.kind == BulkAction.Kind.SPLIT
    fields = list(LabelEvent.objects.filter(face=f).order_by("id").values_list("field", "old_value", "new_value"))
    assert fields == [("is_unsure", "false", "true"), ("is_excluded", "false", "true"), ("split", "", "val")]


def test_queryset_selection_is_limited_to_the_dataset(alice, dataset, faces):
    other = Dataset.objects.create(name="other")
    foreign = make_faces(other, 2, labels=["female"], start=50)
    action = services.faces_update(user=alice, dataset=dataset, faces=Face.objects.all(), changes={"is_unsure": True})
    assert action.face_count == 12
    assert not Face.objects.filter(pk__in=[f.pk for f in foreign], is_unsure=True).exists()


def test_stale_version_is_refused_with_the_current_value(alice, bob, dataset, faces):
    face = faces[0]
    services.faces_update(user=alice, dataset=dataset, faces=[face.pk], changes={"label": "male"})
    with pytest.raises(services.StaleFace) as exc:
        services.faces_update(
            user=bob, dataset=dataset, faces=[face.pk], changes={"label": "female"}, expected_versions={face.pk: 1}
        )
    assert exc.value.current == [
        {
            "id": face.pk,
            "version": 2,
            "label": "male",
            "is_unsure": False,
            "is_excluded": False,
            "split": "",
            "expected_version": 1,
        }
    ]
    assert "someone changed this face" in exc.value.message and "now male" in exc.value.message
    assert state(face.pk)["label"] == "male"
    assert BulkAction.objects.filter(user=bob).count() == 0


def test_one_stale_face_refuses_the_whole_bulk_change(alice, bob, dataset, faces):
    ids = [f.pk for f in faces[:5]]
    services.faces_update(user=alice, dataset=dataset, faces=[ids[2]], changes={"is_unsure": True})
    with pytest.raises(services.StaleFace):
        services.faces_update(
            user=bob, dataset=dataset, faces=ids, changes={"label": "male"}, expected_versions=dict.fromkeys(ids, 1)
        )
    assert Face.objects.filter(pk__in=ids, label="male").count() == 2  # only the ones that were male before


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"label": "cat"}, "Unknown label “cat”"),
        ({"split": "holdout"}, "Unknown split “holdout”"),
        ({"is_unsure": "maybe"}, "not a valid value for is_unsure"),
        ({"colour": "red"}, "Unknown field “colour”"),
        ({}, "Nothing to change"),
    ],
)
def test_bad_changes_are_refused_and_change_nothing(bob, dataset, faces, changes, message):
    with pytest.raises(services.InvalidChange, match=message):
        services.faces_update(user=bob, dataset=dataset, faces=[faces[0].pk], changes=changes)
    assert not LabelEvent.objects.exists() and not BulkAction.objects.exists()


def test_zero_faces_and_foreign_ids_are_refused(bob, dataset, faces):
    other = Dataset.objects.create(name="other")
    foreign = make_faces(other, 1, start=70)
    with pytest.raises(services.NoFaces, match="No faces selected"):
        services.faces_update(user=bob, dataset=dataset, faces=[], changes={"label": "male"})
    with pytest.raises(services.NoFaces):
        services.faces_update(user=bob, dataset=dataset, faces=Face.objects.none(), changes={"label": "male"})
    with pytest.raises(services.InvalidChange, match="not faces of this dataset"):
        services.faces_update(user=bob, dataset=dataset, faces=[faces[0].pk, foreign[0].pk], changes={"label": "male"})
    assert state(faces[0].pk)["label"] == "female" and not BulkAction.objects.exists()


def test_undo_reverts_the_last_own_action_and_goes_further_back(alice, bob, dataset, faces):
    f0, f1 = faces[0], faces[1]
    services.faces_update(user=bob, dataset=dataset, faces=[f0.pk], changes={"label": "male"})
    services.faces_update(user=bob, dataset=dataset, faces=[f1.pk], changes={"label": "female"})
    services.faces_update(user=alice, dataset=dataset, faces=[f0.pk], changes={"split": "train"})
    result = services.bulk_action_undo_last(user=bob, dataset=dataset)
    assert result.reverted == 1 and result.action.kind == BulkAction.Kind.UNDO
    assert state(f1.pk)["label"] == "male"
    services.bulk_action_undo_last(user=bob, dataset=dataset)
    assert state(f0.pk)["label"] == "female" and state(f0.pk)["split"] == "train"  # alice's change stays
    with pytest.raises(services.NoFaces, match="Nothing to undo"):
        services.bulk_action_undo_last(user=bob, dataset=dataset)


def test_revert_keeps_later_changes_and_reports_them_as_conflicts(alice, bob, dataset, faces):
    ids = [f.pk for f in faces[:6]]
    bulk = services.faces_update(user=alice, dataset=dataset, faces=ids, changes={"label": "male"})
    services.faces_update(user=bob, dataset=dataset, faces=[ids[0]], changes={"label": "female"})
    conflicts, restorable = services.bulk_action_conflicts(action=bulk)
    assert [(c["face_id"], c["set_to"], c["now"]) for c in conflicts] == [(ids[0], "male", "female")]
    result = services.bulk_action_revert(user=alice, action=bulk)
    assert result.reverted == restorable == bulk.face_count - 1
    assert state(ids[0])["label"] == "female"  # bob's later change survives
    labels = dict(Face.objects.filter(pk__in=ids).values_list("id", "label"))
    assert labels == {ids[0]: "female", ids[1]: "male", ids[2]: "", ids[3]: "female", ids[4]: "male", ids[5]: ""}
    assert result.action.params["conflict_count"] == 1 and result.action.reverts == bulk
    with pytest.raises(services.InvalidChange, match="already reverted"):
        services.bulk_action_revert(user=alice, action=bulk)


def test_reverting_a_revert_redoes(alice, dataset, faces):
    ids = [f.pk for f in faces[:3]]
    bulk = services.faces_update(user=alice, dataset=dataset, faces=ids, changes={"is_excluded": True})
    rev = services.bulk_action_revert(user=alice, action=bulk).action
    assert not Face.objects.filter(pk__in=ids, is_excluded=True).exists()
    services.bulk_action_revert(user=alice, action=rev)
    assert Face.objects.filter(pk__in=ids, is_excluded=True).count() == 3


def test_prediction_disagreement_follows_the_label(alice, dataset, faces):
    mv = ModelVersion.objects.create(dataset=dataset, number=1, architecture="cnn", classes=["female", "male"])
    f = faces[0]  # female
    pred = Prediction.objects.create(
        face=f, model_version=mv, probabilities=[0.1, 0.9], predicted_label="male", confidence=0.9, disagrees=True
    )
    services.faces_update(user=alice, dataset=dataset, faces=[f.pk], changes={"label": "male"})
    pred.refresh_from_db()
    assert pred.disagrees is False
    services.faces_update(user=alice, dataset=dataset, faces=[f.pk], changes={"label": "female"})
    pred.refresh_from_db()
    assert pred.disagrees is True
    services.faces_update(user=alice, dataset=dataset, faces=[f.pk], changes={"label": ""})
    pred.refresh_from_db()
    assert pred.disagrees is False
    services.bulk_action_undo_last(user=alice, dataset=dataset)
    pred.refresh_from_db()
    assert pred.disagrees is True
