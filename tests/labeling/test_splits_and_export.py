"""Splits and export (issue 20): "Assign splits" is previewed and confirmed like every other bulk
change; an export takes either the dataset's own splits or those a model version was trained
with (a training job splits faces for its own use, so after training the dataset's own export
put every face under unassigned/)."""

import csv
import io
import zipfile

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from curator.models import Face
from labeling import services
from tests.labeling.factories import make_faces
from training.models import ModelVersion


def split_of(dataset) -> dict[int, str]:
    return dict(Face.objects.filter(dataset=dataset).values_list("pk", "split"))


def test_the_preview_counts_what_assign_splits_then_changes(alice, dataset):
    make_faces(dataset, 30, labels=["female", "male"])
    before = split_of(dataset)
    preview = services.splits_assign_preview(dataset=dataset, seed=4)
    assert split_of(dataset) == before  # nothing changed
    assert preview.count == 30 and preview.params["moves"] == {
        "none → test": preview.params["moves"]["none → test"],
        "none → train": preview.params["moves"]["none → train"],
        "none → val": preview.params["moves"]["none → val"],
    }
    assert sum(preview.params["moves"].values()) == 30 and preview.needs_confirmation
    action = services.splits_assign(user=alice, dataset=dataset, seed=4)
    assert action.face_count == preview.count
    # The same seed again: nothing to move, and the preview says so.
    assert services.splits_assign_preview(dataset=dataset, seed=4).count == 0


def test_the_page_previews_and_a_large_change_needs_the_second_confirmation(alice_client, dataset):
    make_faces(dataset, 20, labels=["female", "male"])
    body = alice_client.get(f"/labeling/{dataset.pk}/curate/").content.decode()
    assert f'action="/labeling/{dataset.pk}/curate/splits/preview/"' in body
    page = alice_client.get(
        f"/labeling/{dataset.pk}/curate/splits/preview/", {"seed": 1, "train": 70, "val": 15, "test": 15}
    )
    text = page.content.decode()
    assert "This gives <b>20</b> faces a new split" in text and 'id="confirm-large"' in text
    assert not Face.objects.filter(dataset=dataset).exclude(split="").exists()
    # Confirm without the second box: back to the preview, nothing changed.
    response = alice_client.post(
        f"/labeling/{dataset.pk}/curate/splits/", {"seed": 1, "train": 70, "val": 15, "test": 15}
    )
    assert response.status_code == 302 and "/curate/splits/preview/?" in response["Location"]
    assert not Face.objects.filter(dataset=dataset).exclude(split="").exists()
    response = alice_client.post(
        f"/labeling/{dataset.pk}/curate/splits/",
        {"seed": 1, "train": 70, "val": 15, "test": 15, "confirm_large": "1"},
        follow=True,
    )
    assert "Splits assigned with seed 1: 20 face(s) moved." in response.content.decode()
    assert not Face.objects.filter(dataset=dataset, split="").exists()


def _version_with_snapshot(dataset, splits: dict[int, str]) -> ModelVersion:
    """A version whose snapshot records the split the job gave each face (as training writes it)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["face_id", "crop", "label", "split", "split_assigned_by_job", "slices"])
    for face_id, split in splits.items():
        writer.writerow([face_id, "", "female", split, 1, ""])
    path = default_storage.save(
        f"datasets/{dataset.pk}/models/v1-snapshot.csv", ContentFile(buffer.getvalue().encode())
    )
    return ModelVersion.objects.create(
        dataset=dataset, number=1, architecture="embedding", artifact="", snapshot=path, classes=["female", "male"]
    )


def _zip_names(path: str) -> list[str]:
    with default_storage.open(path, "rb") as handle, zipfile.ZipFile(io.BytesIO(handle.read())) as archive:
        return archive.namelist()


def test_export_the_splits_a_version_was_trained_with(alice, alice_client, dataset):
    faces = make_faces(dataset, 6, labels=["female", "male"])
    version_splits = {f.pk: ("train", "train", "val", "test")[i % 4] for i, f in enumerate(faces[:4])}
    version = _version_with_snapshot(dataset, version_splits)

    own = services.export_create(user=alice, dataset=dataset)
    assert {n.split("/")[0] for n in _zip_names(own) if n != "manifest.csv"} == {"unassigned"}

    path = services.export_create(
        user=alice, dataset=dataset, splits=f"version:{version.pk}", name_suffix=f"v{version.number}-splits"
    )
    names = _zip_names(path)
    assert path.endswith("-v1-splits.zip")
    assert f"train/{faces[0].label}/{faces[0].pk}.jpg" in names and f"test/{faces[3].label}/{faces[3].pk}.jpg" in names
    assert f"unassigned/{faces[5].label}/{faces[5].pk}.jpg" in names  # not in the version's data
    with default_storage.open(path, "rb") as handle, zipfile.ZipFile(io.BytesIO(handle.read())) as archive:
        manifest = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    assert {r["split"] for r in manifest} == {"train", "val", "test", ""} and {
        r["dataset_split"] for r in manifest
    } == {""}

    # From the dataset page's panel (an htmx fragment of labeling), the version's splits are the default.
    panel = alice_client.get(
        f"/labeling/{dataset.pk}/exports/panel/", {"back": f"/datasets/{dataset.pk}/"}
    ).content.decode()
    assert f'<option value="version:{version.pk}" selected>the splits of version 1</option>' in panel
    assert 'id="export-panel"' in alice_client.get(f"/datasets/{dataset.pk}/").content.decode()
    response = alice_client.post(
        f"/labeling/{dataset.pk}/curate/exports/",
        {"splits": f"version:{version.pk}", "back": f"/datasets/{dataset.pk}/"},
    )
    assert response.status_code == 302 and response["Location"] == f"/datasets/{dataset.pk}/"
    # Another dataset's version is refused with a message.
    response = alice_client.post(f"/labeling/{dataset.pk}/curate/exports/", {"splits": "version:999999"}, follow=True)
    assert "no record of its splits" in response.content.decode()
