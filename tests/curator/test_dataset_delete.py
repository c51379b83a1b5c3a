"""Deleting a dataset deletes its rows table by table in SQL (curator.services.datasets): every
row of every app that belonged to it goes, nothing of another dataset does, and no face or photo
is read into Python on the way (Django's own cascade did that: 40 s for 100,000 faces, many
minutes at a million, longer than the web request may take). The delete page and the admin leave
the files to a worker (a million crops are minutes of deletes); without a broker, to the sweep."""

import pytest
from django.apps import apps
from django.contrib.messages import get_messages
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db.models.signals import pre_init

from curator import tasks
from curator.models import Dataset, Face, Membership, SourceImage
from curator.services.datasets import dataset_create, dataset_delete, dataset_files_delete
from curator.services.storage_cleanup import orphan_crops_delete
from labeling import services as labeling_services
from tests.celery_worker import wait_until
from tests.conftest import logged_in_client
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


def dataset_files(dataset, media_root) -> list[str]:
    """An original and a crop of the dataset (their storage names), and an empty folder of it."""
    names = [
        default_storage.save(f"datasets/{dataset.pk}/originals/ab/abc.jpg", ContentFile(b"x")),
        default_storage.save(f"datasets/{dataset.pk}/faces/002/1.png", ContentFile(b"x")),
    ]
    (media_root / f"datasets/{dataset.pk}/faces/001").mkdir(parents=True)  # emptied by an earlier clean-up
    return names


def test_the_delete_page_deletes_the_rows_and_a_worker_the_files(start_worker, alice, bob, media_root):
    worker = start_worker(queues="align", concurrency=1)
    doomed = dataset_create(user=alice, name="doomed")
    kept = dataset_create(user=alice, name="kept")
    names = dataset_files(doomed, media_root)
    kept_file = default_storage.save(f"datasets/{kept.pk}/originals/cd/cde.jpg", ContentFile(b"y"))

    response = logged_in_client(alice).post(f"/datasets/{doomed.pk}/delete/", {"confirm_name": "doomed"})
    assert response.status_code == 302
    assert "a worker is deleting its files" in [str(m) for m in get_messages(response.wsgi_request)][0]
    assert not Dataset.objects.filter(pk=doomed.pk).exists()
    wait_until(lambda: not (media_root / f"datasets/{doomed.pk}").exists(), what="the files deleted", worker=worker)
    assert not any(default_storage.exists(name) for name in names)
    assert default_storage.exists(kept_file)


@pytest.mark.django_db
def test_the_files_task_deletes_nothing_of_a_dataset_that_exists(dataset, media_root):
    names = dataset_files(dataset, media_root)
    assert dataset_files_delete(dataset_id=dataset.pk) == 0
    assert all(default_storage.exists(name) for name in names)


@pytest.mark.django_db
def test_without_a_broker_the_rows_go_and_the_sweep_deletes_the_files(alice, dataset, media_root, monkeypatch):
    def broker_down(*args, **kwargs):
        raise ConnectionRefusedError("Error 111 connecting to 127.0.0.1:6379")

    monkeypatch.setattr(tasks.dataset_files_delete, "delay", broker_down)
    names = dataset_files(dataset, media_root)
    response = logged_in_client(alice).post(f"/datasets/{dataset.pk}/delete/", {"confirm_name": "faces"})
    assert response.status_code == 302
    message = [str(m) for m in get_messages(response.wsgi_request)][0]
    assert "deleted by the next periodic clean-up" in message
    assert not Dataset.objects.filter(pk=dataset.pk).exists()
    assert all(default_storage.exists(name) for name in names)

    assert orphan_crops_delete(grace_seconds=0).gone_dataset_files == len(names)
    assert not any(default_storage.exists(name) for name in names)


@pytest.mark.django_db
def test_the_admin_deletes_through_the_service_and_lists_counts_not_rows(admin_user, alice, bob):
    dataset = dataset_create(user=alice, name="in-admin")
    make_faces(dataset, 5, labels=["female", "male"])
    client = logged_in_client(admin_user)
    page = client.get(f"/admin/curator/dataset/{dataset.pk}/delete/").content.decode()
    assert "5 faces" in page
    response = client.post(f"/admin/curator/dataset/{dataset.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Dataset.objects.filter(pk=dataset.pk).exists()
    assert not Face.objects.filter(dataset_id=dataset.pk).exists()
