"""Importing photos: uploads, zips and server folders; labels from folders, UTKFace names and
labels.csv; every kind of bad file reported per file while the rest of the batch imports."""

import gzip
import io
import os
import socket
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from PIL import Image

from curator.models import AlignmentJob, ImportBatch, ImportIssue, SourceImage
from curator.services import imports

FIXTURES = Path(__file__).parents[1] / "fixtures/faces"
LFW_FEMALE = sorted(p.name for p in (Path(__file__).parents[1] / "fixtures/faces/lfw/female").glob("*.jpg"))[0]


def lfw(fixture_faces: Path, gender: str, n: int = 2) -> list[Path]:
    return sorted((fixture_faces / "lfw" / gender).glob("*.jpg"))[:n]


def utk(fixture_faces: Path, n: int = 3) -> list[Path]:
    return sorted((fixture_faces / "utkface").glob("*.jpg"))[:n]


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def make_zip(members: dict[str, bytes], *, utf8_names: bool = True) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def issues_of(batch: ImportBatch) -> dict[str, tuple[str, str]]:
    return {i.file_name: (i.kind, i.reason) for i in batch.issues.all()}


def upload(client, dataset, files: dict[str, bytes]):
    """Upload as the browser does, then run the import the request queued (what the `import`
    worker does; tests with a real worker are in test_streaming_import.py)."""
    payload = [SimpleUploadedFile(name, data) for name, data in files.items()]
    response = client.post(f"/datasets/{dataset.pk}/import/", {"files": payload})
    if response.status_code == 302 and "/imports/" in response.url:
        imports.import_batch_run_upload(batch_id=int(response.url.rstrip("/").rsplit("/", 1)[1]))
    return response


# --- Labels -----------------------------------------------------------------------------------------


def test_folder_per_class_zip_gets_labels_from_folders(alice_client, dataset, fixture_faces):
    members = {f"photos/female/{p.name}": p.read_bytes() for p in lfw(fixture_faces, "female")}
    members |= {f"photos/Male/{p.name}": p.read_bytes() for p in lfw(fixture_faces, "male")}
    response = upload(alice_client, dataset, {"people.zip": make_zip(members)})

    batch = ImportBatch.objects.get()
    assert response.status_code == 302
    assert response.url == f"/datasets/{dataset.pk}/imports/{batch.pk}/"
    assert batch.source == ImportBatch.Source.ZIP
    assert batch.label_layout == ImportBatch.LabelLayout.FOLDERS
    assert (batch.imported_count, batch.labelled_count, batch.skipped_count) == (4, 4, 0)
    labels = dict(SourceImage.objects.values_list("original_name", "label"))
    assert labels[f"photos/Male/{lfw(fixture_faces, 'male')[0].name}"] == "male"
    assert labels[f"photos/female/{lfw(fixture_faces, 'female')[0].name}"] == "female"


def test_utkface_names_give_gender_age_and_race(alice_client, dataset, fixture_faces):
    files = {p.name: p.read_bytes() for p in utk(fixture_faces, 4)}
    upload(alice_client, dataset, files)

    batch = ImportBatch.objects.get()
    assert batch.label_layout == ImportBatch.LabelLayout.UTKFACE
    assert batch.labelled_count == 4
    for image in SourceImage.objects.all():
        age, gender, race = image.original_name.split("_")[:3]
        assert image.label == {"0": "male", "1": "female"}[gender]
        assert image.metadata == {
            "age": int(age),
            "race": ["white", "black", "asian", "indian", "others"][int(race)],
            "source": "UTKFace",
        }


def test_labels_csv_gives_labels_and_keeps_extra_columns(alice_client, dataset, fixture_faces):
    a, b = lfw(fixture_faces, "female", 1) + lfw(fixture_faces, "male", 1)
    csv_text = f"path,label,identity,age\nimg/{a.name},F,{a.stem},31\nimg/{b.name},robot,{b.stem},\n"
    members = {f"img/{a.name}": a.read_bytes(), f"img/{b.name}": b.read_bytes(), "labels.csv": csv_text.encode()}
    upload(alice_client, dataset, {"set.zip": make_zip(members)})

    batch = ImportBatch.objects.get()
    assert batch.label_layout == ImportBatch.LabelLayout.CSV
    female = SourceImage.objects.get(original_name=f"img/{a.name}")
    assert female.label == "female"
    assert female.metadata == {"identity": a.stem, "age": 31}
    unknown = SourceImage.objects.get(original_name=f"img/{b.name}")
    assert unknown.label == ""
    kind, reason = issues_of(batch)[f"img/{b.name}"]
    assert kind == ImportIssue.Kind.UNLABELLED
    assert "robot" in reason and "female, male" in reason


def test_labels_csv_without_a_label_column_is_reported(alice_client, dataset, fixture_faces):
    (a,) = lfw(fixture_faces, "female", 1)
    upload(
        alice_client, dataset, {"set.zip": make_zip({a.name: a.read_bytes(), "labels.csv": b"file,colour\nx,red\n"})}
    )

    batch = ImportBatch.objects.get()
    assert batch.imported_count == 1
    assert "needs a path column" in issues_of(batch)["labels.csv"][1]


# --- Formats ----------------------------------------------------------------------------------------


def test_every_pillow_format_and_mode_imports(alice_client, dataset, fixture_faces):
    face = Image.open(lfw(fixture_faces, "female", 1)[0])
    sixteen_bit = Image.fromarray(np.asarray(face.convert("L")).astype(np.uint16) * 257)
    files = {
        "a.PNG": encode(face, "PNG"),
        "b.Jpeg": encode(face.rotate(90), "JPEG"),
        "c.webp": encode(face.rotate(180), "WEBP"),
        "d.gif": encode(face.convert("P"), "GIF"),
        "e.bmp": encode(face.rotate(270), "BMP"),
        "f.tiff": encode(face.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "TIFF"),
        "cmyk.jpg": encode(face.convert("CMYK").rotate(45), "JPEG"),
        "sixteen-bit.png": encode(sixteen_bit, "PNG"),
        "palette.png": encode(face.convert("P").rotate(10), "PNG"),
        "alpha.png": encode(face.convert("RGBA").rotate(20), "PNG"),
    }
    upload(alice_client, dataset, files)

    batch = ImportBatch.objects.get()
    assert issues_of(batch) == {}
    assert batch.imported_count == len(files)
    formats = dict(SourceImage.objects.values_list("original_name", "image_format"))
    assert formats["a.PNG"] == "PNG" and formats["f.tiff"] == "TIFF" and formats["cmyk.jpg"] == "JPEG"
    # Originals are stored unchanged.
    cmyk = SourceImage.objects.get(original_name="cmyk.jpg")
    with default_storage.open(cmyk.file, "rb") as stored:
        assert stored.read() == files["cmyk.jpg"]


def test_exif_orientation_is_applied_to_the_recorded_size(alice_client, dataset):
    image = Image.new("RGB", (300, 200), "gray")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when shown
    upload(alice_client, dataset, {"rotated.jpg": encode(image, "JPEG", exif=exif)})

    stored = SourceImage.objects.get()
    assert (stored.width, stored.height) == (200, 300)


# --- Bad input ------------------------------------------------------------------------------------


def test_bad_files_are_reported_and_the_rest_imports(alice_client, dataset, fixture_faces, settings):
    settings.CURATOR_MAX_IMAGE_PIXELS = 50_000_000
    good = lfw(fixture_faces, "male", 2)
    jpeg = good[0].read_bytes()
    bomb = encode(Image.new("L", (10000, 10000)), "PNG")  # 100 Mpx, a few hundred KB
    files = {
        "empty.jpg": b"",
        "page.jpg": b"<!doctype html><html><script>alert(1)</script></html>",
        "notes.jpg": b"just some text\n" * 20,
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "packed.jpg": gzip.compress(jpeg),
        "bomb.png": bomb,
        good[0].name: jpeg,
        good[1].name: good[1].read_bytes(),
    }
    upload(alice_client, dataset, files)

    batch = ImportBatch.objects.get()
    reasons = {name: reason for name, (kind, reason) in issues_of(batch).items() if kind == "skipped"}
    assert reasons["empty.jpg"] == "empty file (0 bytes)"
    assert reasons["page.jpg"] == "HTML/XML text, not an image"
    assert reasons["notes.jpg"] == "plain text, not an image"
    assert reasons["truncated.jpg"] == "truncated image data (the file ends early)"
    assert reasons["packed.jpg"] == "gzip-compressed data, not an image"
    assert "more than the limit of 50,000,000" in reasons["bomb.png"]
    assert batch.imported_count == 2 and batch.skipped_count == 6
    assert not default_storage.exists(f"datasets/{dataset.pk}/originals/xx")  # nothing else stored
    assert SourceImage.objects.count() == 2


def test_a_10000_by_10000_photo_imports(alice_client, dataset):
    photo = encode(Image.new("RGB", (10000, 10000), (120, 110, 100)), "JPEG", quality=50)
    upload(alice_client, dataset, {"huge.jpg": photo})

    stored = SourceImage.objects.get()
    assert (stored.width, stored.height) == (10000, 10000)


def test_unsafe_and_nested_zip_members_are_refused(alice_client, dataset, fixture_faces, tmp_path):
    face = lfw(fixture_faces, "female", 1)[0].read_bytes()
    members = {
        "../escape.jpg": face,
        "/etc/absolute.jpg": face,
        "inner.zip": make_zip({"x.jpg": face}),
        "female/ok.jpg": face,
    }
    upload(alice_client, dataset, {"evil.zip": make_zip(members)})

    batch = ImportBatch.objects.get()
    reasons = issues_of(batch)
    assert "“..”" in reasons["../escape.jpg"][1]
    assert "absolute path" in reasons["/etc/absolute.jpg"][1]
    assert "zip inside the zip" in reasons["inner.zip"][1]
    assert batch.imported_count == 1
    assert not (Path(default_storage.location).parent / "escape.jpg").exists()
    assert all(p.is_relative_to(default_storage.location) for p in Path(default_storage.location).rglob("*"))


def test_a_corrupt_zip_is_reported(alice_client, dataset):
    upload(alice_client, dataset, {"broken.zip": b"PK\x03\x04 this is not really a zip"})

    batch = ImportBatch.objects.get()
    assert batch.imported_count == 0
    assert "not a readable zip archive" in next(iter(issues_of(batch).values()))[1]


def test_file_names_in_any_script(alice_client, dataset, fixture_faces):
    female, male = lfw(fixture_faces, "female", 1)[0], lfw(fixture_faces, "male", 1)[0]
    names = {"female/照片.jpg": female.read_bytes(), "male/фото мужчины.jpg": male.read_bytes()}
    upload(alice_client, dataset, {"intl.zip": make_zip(names)})

    assert set(SourceImage.objects.values_list("original_name", "label")) == {
        ("female/照片.jpg", "female"),
        ("male/фото мужчины.jpg", "male"),
    }


def test_duplicates_are_reported_not_stored_twice(alice_client, dataset, fixture_faces):
    (face,) = lfw(fixture_faces, "male", 1)
    upload(alice_client, dataset, {"one.jpg": face.read_bytes(), "copy.jpg": face.read_bytes()})
    upload(alice_client, dataset, {"again.jpg": face.read_bytes()})

    first, second = ImportBatch.objects.order_by("pk")
    assert issues_of(first)["copy.jpg"] == ("duplicate", "same file as one.jpg in this import")
    assert issues_of(second)["again.jpg"] == ("duplicate", "already in the dataset as one.jpg")
    assert SourceImage.objects.count() == 1


def test_a_photo_another_import_adds_meanwhile_is_reported_and_the_group_still_imports(
    alice_client, dataset, fixture_faces, monkeypatch
):
    # Rows are written a group at a time; when another batch commits one of the group's photos
    # between the duplicate query and the INSERT, the group falls back to one row at a time.
    faces = lfw(fixture_faces, "male", 2) + lfw(fixture_faces, "female", 2)
    raced = faces[1].read_bytes()
    store = imports.original_store

    def store_and_race(*, dataset, sha256, data, extension):
        if data == raced:
            other = ImportBatch.objects.create(dataset=dataset, source=ImportBatch.Source.FOLDER)
            SourceImage.objects.create(
                dataset=dataset, batch=other, file="x", original_name="theirs.jpg", sha256=sha256
            )
        return store(dataset=dataset, sha256=sha256, data=data, extension=extension)

    monkeypatch.setattr(imports, "original_store", store_and_race)
    upload(alice_client, dataset, {p.name: p.read_bytes() for p in faces})

    batch = ImportBatch.objects.filter(source=ImportBatch.Source.UPLOAD).get()
    assert issues_of(batch) == {faces[1].name: ("duplicate", "imported at the same moment by another batch")}
    assert (batch.imported_count, batch.labelled_count) == (3, 0)
    assert set(batch.images.values_list("original_name", flat=True)) == {faces[i].name for i in (0, 2, 3)}


def test_a_folder_larger_than_a_group_imports_every_photo_once(dataset, copy_fixture_tree, settings):
    tree = {str(p.relative_to(FIXTURES)): str(p.relative_to(FIXTURES)) for p in sorted(FIXTURES.glob("*/**/*.jpg"))}
    root = copy_fixture_tree(tree)
    settings.CURATOR_IMPORT_ROOTS = [root.parent.resolve()]
    assert len(tree) > imports.IMPORT_GROUP_FILES
    batch = imports.import_folder_start(dataset=dataset, path=str(root), user=None)
    imports.import_batch_run_folder(batch_id=batch.pk, folder=str(root))

    batch.refresh_from_db()
    assert (batch.status, batch.imported_count, batch.labelled_count) == ("done", len(tree), len(tree))
    assert sorted(batch.images.values_list("original_name", flat=True)) == sorted(tree)
    job = AlignmentJob.objects.get(batch=batch)
    assert job.total == len(tree) and not job.import_open


def test_the_report_page_lists_every_problem(alice_client, dataset, fixture_faces):
    (face,) = lfw(fixture_faces, "male", 1)
    upload(alice_client, dataset, {"ok.jpg": face.read_bytes(), "empty.jpg": b""})
    batch = ImportBatch.objects.get()

    body = alice_client.get(f"/datasets/{dataset.pk}/imports/{batch.pk}/").content.decode()
    assert "empty.jpg" in body and "empty file (0 bytes)" in body
    assert 'id="imported">1<' in body


def test_an_import_queues_alignment_of_the_new_photos(alice_client, dataset, fixture_faces):
    upload(alice_client, dataset, {p.name: p.read_bytes() for p in lfw(fixture_faces, "female", 2)})

    job = AlignmentJob.objects.get()
    assert job.batch == ImportBatch.objects.get()
    assert job.total == 2


# --- Server folders -------------------------------------------------------------------------------


def test_server_folder_import_under_an_allowed_root(
    alice_client, dataset, fixture_faces, copy_fixture_tree, settings, django_capture_on_commit_callbacks
):
    (female,) = lfw(fixture_faces, "female", 1)
    root = copy_fixture_tree(
        {"set/female/deep/a.JPG": f"lfw/female/{female.name}", "elsewhere/b.jpg": f"lfw/female/{female.name}"}
    )
    settings.CURATOR_IMPORT_ROOTS = [root.resolve()]
    with django_capture_on_commit_callbacks() as queued:
        response = alice_client.post(f"/datasets/{dataset.pk}/import/", {"path": str(root / "set")})

    batch = ImportBatch.objects.get()
    assert response.status_code == 302
    assert batch.status == ImportBatch.Status.RECEIVING
    assert "Importing" in alice_client.get(response.url).content.decode()
    assert len(queued) == 1  # the background import task
    imports.import_batch_run_folder(batch_id=batch.pk, folder=str((root / "set").resolve()))
    image = SourceImage.objects.get()
    assert (image.original_name, image.label) == ("female/deep/a.JPG", "female")
    assert ImportBatch.objects.get().status == ImportBatch.Status.DONE


def test_server_folder_outside_the_roots_is_refused(alice_client, dataset, tmp_path, settings):
    settings.CURATOR_IMPORT_ROOTS = [tmp_path / "allowed"]
    (tmp_path / "allowed").mkdir()
    response = alice_client.post(f"/datasets/{dataset.pk}/import/", {"path": "/etc"})

    assert response.status_code == 200
    assert "is not under an allowed import root" in response.content.decode()
    assert not ImportBatch.objects.exists()


def test_traversal_out_of_a_root_is_refused(dataset, tmp_path, settings):
    settings.CURATOR_IMPORT_ROOTS = [tmp_path / "allowed"]
    (tmp_path / "allowed").mkdir()
    with pytest.raises(imports.ImportRefused):
        imports.resolve_import_folder(str(tmp_path / "allowed" / ".." / ".."))


@pytest.mark.timeout(60)  # before the fix, reading the FIFO blocked the import for ever
def test_fifos_sockets_and_links_in_a_server_folder_are_skipped_with_a_reason(
    dataset, copy_fixture_tree, settings, monkeypatch
):
    root = copy_fixture_tree({"female/a.jpg": f"lfw/female/{LFW_FEMALE}"})
    os.mkfifo(root / "female" / "pipe.jpg")
    with socket.socket(socket.AF_UNIX) as sock:
        # A socket's path must fit in 108 bytes, which a CI checkout's temporary folder can pass:
        # bind by a relative name from inside the folder.
        monkeypatch.chdir(root / "female")
        sock.bind("sock.jpg")
        (root / "female" / "link.jpg").symlink_to(root / "female" / "a.jpg")
        settings.CURATOR_IMPORT_ROOTS = [root.parent.resolve()]
        batch = imports.import_folder_start(dataset=dataset, path=str(root), user=None)
        imports.import_batch_run_folder(batch_id=batch.pk, folder=str(root))

    batch.refresh_from_db()
    assert (batch.status, batch.imported_count) == ("done", 1)
    issues = issues_of(batch)
    assert issues["female/pipe.jpg"][1] == "a named pipe (FIFO), not a regular file; skipped"
    assert issues["female/sock.jpg"][1] == "a socket, not a regular file; skipped"
    assert issues["female/link.jpg"][1] == "symbolic link; not followed"


@pytest.mark.timeout(30)
def test_a_file_that_became_a_fifo_after_the_listing_is_refused_not_waited_on(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(OSError, match="named pipe"):
        imports._regular_file_read(tmp_path / "pipe.jpg")


def test_import_images_command(dataset, copy_fixture_tree, capsys):
    root = copy_fixture_tree({"male/a.jpg": "lfw/male/Brad_Johnson_0004.jpg", "notes.txt": "SOURCES.csv"})
    call_command("import_images", dataset.name, str(root))

    out = capsys.readouterr().out
    assert "1 imported" in out and "1 skipped" in out
    assert SourceImage.objects.get().label == "male"


# --- Who may import -------------------------------------------------------------------------------


def test_annotators_may_not_import(bob_client, dataset, fixture_faces):
    (face,) = lfw(fixture_faces, "male", 1)
    assert bob_client.get(f"/datasets/{dataset.pk}/import/").status_code == 403
    assert upload(bob_client, dataset, {"a.jpg": face.read_bytes()}).status_code == 403
    assert not SourceImage.objects.exists()


def test_outsiders_do_not_see_the_dataset(charlie_client, dataset, fixture_faces):
    (face,) = lfw(fixture_faces, "male", 1)
    assert charlie_client.get(f"/datasets/{dataset.pk}/import/").status_code == 404
    assert upload(charlie_client, dataset, {"a.jpg": face.read_bytes()}).status_code == 404


def test_upload_without_files_is_an_error(alice_client, dataset):
    response = alice_client.post(f"/datasets/{dataset.pk}/import/", {})
    assert response.status_code == 200
    assert "This field is required" in response.content.decode()


@pytest.mark.worker
def test_a_folder_import_runs_on_a_real_worker_and_aligns(
    alice_client, dataset, copy_fixture_tree, settings, start_worker
):
    root = copy_fixture_tree(
        {"female/a.jpg": "lfw/female/" + LFW_FEMALE, "male/b.jpg": "lfw/male/Brad_Johnson_0004.jpg"}
    )
    settings.CURATOR_IMPORT_ROOTS = [root.resolve()]
    start_worker(queues="align,import", concurrency=2)
    alice_client.post(f"/datasets/{dataset.pk}/import/", {"path": str(root)})

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        job = AlignmentJob.objects.filter(dataset=dataset).first()
        if job and job.is_finished:
            break
        time.sleep(0.5)
    batch = ImportBatch.objects.get()
    assert (batch.status, batch.imported_count) == (ImportBatch.Status.DONE, 2)
    assert job.status == AlignmentJob.Status.DONE
    assert set(SourceImage.objects.values_list("status", flat=True)) == {SourceImage.Status.ALIGNED}
