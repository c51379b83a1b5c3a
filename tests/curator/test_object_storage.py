"""Object storage as a first-class backend: with a bucket configured, originals, crops, models
and exports live in a real S3-compatible server (moto, started by the s3_storage fixture); the
browser gets them only through the authenticated media view; deleting a dataset removes its
objects; nothing is written to MEDIA_ROOT."""

from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from storages.backends.s3 import S3Storage

from curator.models import Face, SourceImage
from curator.services.alignment import alignment_chunk_process, alignment_job_start
from curator.services.datasets import dataset_delete
from curator.services.imports import import_server_folder
from labeling.services import export_create
from tests.curator.test_align_tasks import import_fixture_faces

LFW_FEMALE = sorted(
    p.name for p in (Path(__file__).resolve().parent.parent / "fixtures" / "faces" / "lfw" / "female").glob("*.jpg")
)


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_the_pipeline_reads_and_writes_only_the_bucket(s3_storage, dataset, alice, alice_client, media_root):
    images = import_fixture_faces(dataset, limit=4)
    job = alignment_job_start(dataset=dataset, images=SourceImage.objects.filter(dataset=dataset))
    alignment_chunk_process(job_id=job.pk, image_ids=[image.pk for image in images])
    faces = list(Face.objects.filter(dataset=dataset))
    assert faces and all(image.file for image in images)

    keys = set(s3_storage.server.keys(s3_storage.bucket, f"datasets/{dataset.pk}/"))
    assert {image.file for image in SourceImage.objects.filter(dataset=dataset)} <= keys
    assert {face.crop for face in faces} <= keys
    assert files_under(media_root) == []  # the local disk holds nothing

    response = alice_client.get(f"/media/{faces[0].crop}")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert b"".join(response.streaming_content)[:2] == b"\xff\xd8"

    export = export_create(user=alice, dataset=dataset)
    assert export in set(s3_storage.server.keys(s3_storage.bucket))


def test_the_bucket_is_private_and_files_reach_only_members(s3_storage, dataset, charlie_client, client):
    import urllib.error
    import urllib.request

    path = default_storage.save(f"datasets/{dataset.pk}/faces/x.jpg", ContentFile(b"\xff\xd8\xff\xe0 jpeg"))
    unsigned = f"{s3_storage.server.endpoint}/{s3_storage.bucket}/{path}"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(unsigned, timeout=5)
    assert refused.value.code == 403  # no public reads: objects need a signature
    assert charlie_client.get(f"/media/{path}").status_code == 404
    assert client.get(f"/media/{path}").status_code == 302  # to the login page


def test_deleting_a_dataset_deletes_its_objects(s3_storage, dataset):
    import_fixture_faces(dataset, limit=2)
    assert s3_storage.server.keys(s3_storage.bucket, f"datasets/{dataset.pk}/")
    dataset_delete(dataset=dataset)
    assert s3_storage.server.keys(s3_storage.bucket, f"datasets/{dataset.pk}/") == []


def test_settings_build_the_s3_backend_from_the_environment(monkeypatch, s3_server):
    """What an operator sets (README, several machines) is what Django uses."""
    import importlib

    import curator.settings as project_settings

    for name, value in s3_server.env("from-env").items():
        monkeypatch.setenv(name, value)
    try:
        reloaded = importlib.reload(project_settings)
        default = reloaded.STORAGES["default"]
        assert default["BACKEND"] == "storages.backends.s3.S3Storage"
        storage = S3Storage(**default["OPTIONS"])
        assert storage.bucket_name == "from-env"
        assert storage.endpoint_url == s3_server.endpoint
        assert storage.querystring_auth and storage.default_acl is None
    finally:
        monkeypatch.undo()
        importlib.reload(project_settings)


def test_a_missing_object_behind_a_face_is_an_error_and_realignment_repairs_it(s3_storage, dataset, alice_client):
    images = import_fixture_faces(dataset, limit=1)
    job = alignment_job_start(dataset=dataset, images=SourceImage.objects.filter(dataset=dataset))
    alignment_chunk_process(job_id=job.pk, image_ids=[images[0].pk])
    face = Face.objects.get(dataset=dataset)
    Face.objects.filter(pk=face.pk).update(label="female")
    default_storage.delete(face.crop)  # lost from the bucket (a bad lifecycle rule, a manual delete)

    assert alice_client.get(f"/media/{face.crop}").status_code == 404
    again = alignment_job_start(dataset=dataset, images=SourceImage.objects.filter(dataset=dataset))
    alignment_chunk_process(job_id=again.pk, image_ids=[images[0].pk])
    repaired = Face.objects.get(dataset=dataset)
    assert repaired.label == "female"  # the person's label survives the realignment
    assert default_storage.exists(repaired.crop)
    assert alice_client.get(f"/media/{repaired.crop}").status_code == 200


def test_a_missing_original_makes_realignment_an_error_with_the_reason(s3_storage, dataset):
    images = import_fixture_faces(dataset, limit=1)
    default_storage.delete(images[0].file)
    job = alignment_job_start(dataset=dataset, images=SourceImage.objects.filter(dataset=dataset))
    alignment_chunk_process(job_id=job.pk, image_ids=[images[0].pk])
    image = SourceImage.objects.get(pk=images[0].pk)
    assert image.status == SourceImage.Status.ERROR
    assert image.status_reason == "the original file is missing from storage"


def test_a_storage_outage_during_an_import_is_reported_per_file_and_a_retry_imports_them(
    s3_storage, settings, dataset, alice, copy_fixture_tree, tmp_path
):
    from tests.s3server import S3Server

    folder = copy_fixture_tree({f"female/{i}.jpg": f"lfw/female/{name}" for i, name in enumerate(LFW_FEMALE[:3])})
    with S3Server(tmp_path / "outage.log") as down:  # a store that answers, then goes away
        bucket = down.create_bucket("outage")
        settings.STORAGES = down.storages_setting(bucket, settings.STORAGES)
    batch = import_server_folder(dataset=dataset, path=str(folder), user=alice, check_roots=False)
    issues = list(batch.issues.values_list("file_name", "reason"))
    assert len(issues) == 3 and SourceImage.objects.filter(dataset=dataset).count() == 0
    assert all("could not be stored" in reason and "import it again" in reason for _, reason in issues)

    settings.STORAGES = s3_storage.server.storages_setting(s3_storage.bucket, settings.STORAGES)  # back
    retry = import_server_folder(dataset=dataset, path=str(folder), user=alice, check_roots=False)
    assert retry.issues.count() == 0
    assert SourceImage.objects.filter(dataset=dataset).count() == 3


def test_an_unreachable_store_answers_503_not_a_server_error(s3_storage, settings, dataset, alice_client, tmp_path):
    from tests.s3server import S3Server

    with S3Server(tmp_path / "gone.log") as gone:
        settings.STORAGES = gone.storages_setting(gone.create_bucket("gone"), settings.STORAGES)
    response = alice_client.get(f"/media/datasets/{dataset.pk}/faces/1/x.jpg")
    assert response.status_code == 503
    assert b"storage is unavailable" in response.content
