"""Deleting a dataset deletes its rows table by table in SQL (curator.services.datasets): every
row of every app that belonged to it goes, nothing of another dataset does, and no face or photo
is read into Python on the way (Django's own cascade did that: 40 s for 100,000 faces, many
minutes at a million, longer than the web request may take)."""

import pytest
from django.apps import apps
from django.db.models.signals import pre_init

from curator.models import Dataset, Face, Membership, SourceImage
from curator.services.datasets import dataset_delete
from labeling import services as labeling_services
from tests.embeddings.factories import descriptors_store
from tests.labeling.factories import make_faces, version_with_predictions

APPS = ("curator", "labeling", "training", "embeddings", "review")


def fill(dataset, user) -> None:
    """Photos, faces, an import batch, a relabel and its revert (actions and events), a model
    version with predictions, descriptors."""
    faces = make_faces(dataset, 12, labels=["female", "male"])
    action = labeling_services.faces_update(
        user=user, dataset=dataset, faces=[f.pk for f in faces[:6]], changes={"label": "female"}
    )
    labeling_services.bulk_action_revert(user=user, action=action)
    version_with_predictions(dataset, faces)
    descriptors_store(faces)


def row_counts() -> dict[str, int]:
    return {
        model._meta.label: model._base_manager.count()
        for name in APPS
        for model in apps.get_app_config(name).get_models()
    }


@pytest.mark.django_db
def test_deleting_a_dataset_deletes_its_rows_only_and_loads_none_of_them(alice, bob):
    other = Dataset.objects.create(name="other", created_by=bob)
    Membership.objects.create(dataset=other, user=bob, role=Membership.Role.CURATOR)
    fill(other, bob)
    before = row_counts()
    dataset = Dataset.objects.create(name="faces", created_by=alice)
    Membership.objects.create(dataset=dataset, user=alice, role=Membership.Role.CURATOR)
    Membership.objects.create(dataset=dataset, user=bob, role=Membership.Role.ANNOTATOR)
    fill(dataset, alice)
    assert row_counts() != before

    loaded = []

    def count(sender, **kwargs):
        loaded.append(sender.__name__)

    for model in (Face, SourceImage):
        pre_init.connect(count, sender=model, weak=False)
    try:
        dataset_delete(dataset=dataset)
    finally:
        for model in (Face, SourceImage):
            pre_init.disconnect(count, sender=model)

    assert loaded == []
    after = row_counts()
    assert {k: (before[k], after[k]) for k in before if before[k] != after[k]} == {}
    assert not Dataset.objects.filter(pk=dataset.pk).exists()
    assert Face.objects.filter(dataset=other).count() == 12
    alice.refresh_from_db()  # users are only referred to (SET_NULL), never deleted
