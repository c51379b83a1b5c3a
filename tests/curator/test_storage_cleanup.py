"""The beat job that deletes crop files no face refers to (left by killed chunks), on real files:
only unreferenced crops older than the grace period go; originals, models and young crops stay."""

import os
import time

from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from curator.models import Face, SourceImage
from curator.services.storage_cleanup import orphan_crops_delete
from curator.tasks import storage_cleanup_orphan_crops

HOUR = 3600


def store(name: str, *, age_s: float, media_root) -> str:
    saved = default_storage.save(name, ContentFile(b"\xff\xd8 not really a jpeg"))
    past = time.time() - age_s
    os.utime(media_root / saved, (past, past))
    return saved


def photo(dataset, n: int) -> SourceImage:
    return SourceImage.objects.create(
        dataset=dataset, file=f"datasets/{dataset.pk}/originals/{n}.jpg", sha256=f"{n:064d}"
    )


def test_only_old_unreferenced_crops_are_deleted(dataset, media_root):
    image = photo(dataset, 1)
    base = f"datasets/{dataset.pk}/faces/{image.pk % 1000:03d}"
    kept = store(f"{base}/{image.pk}-j7-0.jpg", age_s=5 * HOUR, media_root=media_root)
    Face.objects.create(dataset=dataset, image=image, index=0, crop=kept)
    killed_chunk = store(f"{base}/{image.pk}-j6-0.jpg", age_s=2 * HOUR, media_root=media_root)
    older_run = store(f"{base}/{image.pk}-j5-1.jpg", age_s=30 * HOUR, media_root=media_root)
    in_flight = store(f"{base}/{image.pk}-j8-0.jpg", age_s=60, media_root=media_root)
    other_dataset = store("datasets/999999/faces/001/1-j1-0.jpg", age_s=2 * HOUR, media_root=media_root)
    original = store(f"datasets/{dataset.pk}/originals/ab/cd.jpg", age_s=5 * HOUR, media_root=media_root)
    model = store(f"datasets/{dataset.pk}/models/v1.keras", age_s=5 * HOUR, media_root=media_root)

    report = orphan_crops_delete(grace_seconds=HOUR)

    assert report.as_dict() == {
        "scanned": 4,
        "too_new": 1,
        "referenced": 1,
        "deleted": 2,
        "failed": 0,
        "gone_dataset_files": 1,  # datasets/999999 has no dataset
    }
    for name in (killed_chunk, older_run, other_dataset):
        assert not default_storage.exists(name), name
    for name in (kept, in_flight, original, model):
        assert default_storage.exists(name), name
    # Run again: nothing more to do, nothing referenced is touched.
    assert orphan_crops_delete(grace_seconds=HOUR).deleted == 0
    assert default_storage.exists(kept)


def test_dry_run_counts_without_deleting(dataset, media_root):
    orphan = store(f"datasets/{dataset.pk}/faces/001/1-j1-0.jpg", age_s=2 * HOUR, media_root=media_root)
    assert orphan_crops_delete(grace_seconds=HOUR, dry_run=True).deleted == 1
    assert default_storage.exists(orphan)


def test_an_empty_store_is_fine(db, media_root):
    assert not any(orphan_crops_delete().as_dict().values())


def test_the_task_uses_the_configured_grace_and_beat_schedules_it(dataset, media_root, settings):
    settings.CURATOR_ORPHAN_CROP_GRACE_SECONDS = 10 * HOUR
    young = store(f"datasets/{dataset.pk}/faces/002/2-j1-0.jpg", age_s=2 * HOUR, media_root=media_root)
    old = store(f"datasets/{dataset.pk}/faces/002/2-j1-1.jpg", age_s=20 * HOUR, media_root=media_root)
    counts = storage_cleanup_orphan_crops.apply().get()
    assert counts["deleted"] == 1 and counts["too_new"] == 1
    assert default_storage.exists(young) and not default_storage.exists(old)
    schedule = django_settings.CELERY_BEAT_SCHEDULE["storage-cleanup-orphan-crops"]
    assert schedule["task"] == "curator.tasks.storage_cleanup_orphan_crops"


def test_listing_goes_through_the_storage_api_not_the_disk(dataset, media_root, monkeypatch):
    """The store may be S3: the service must find files with storage.listdir only."""
    orphan = store(f"datasets/{dataset.pk}/faces/003/3-j1-0.jpg", age_s=2 * HOUR, media_root=media_root)

    def no_walk(*args, **kwargs):
        raise AssertionError("os.walk / scandir on MEDIA_ROOT: use the storage API")

    monkeypatch.setattr(os, "walk", no_walk)
    assert orphan_crops_delete(grace_seconds=HOUR).deleted == 1
    assert not default_storage.exists(orphan)


def test_the_command_shows_then_deletes(dataset, media_root):
    from io import StringIO

    from django.core.management import call_command

    orphan = store(f"datasets/{dataset.pk}/faces/004/4-j1-0.jpg", age_s=2 * HOUR, media_root=media_root)
    out = StringIO()
    call_command("cleanup_orphan_crops", "--dry-run", "--grace-seconds", str(HOUR), stdout=out)
    assert out.getvalue().strip() == "1 crop files: 0 in use, 0 too new to judge, would delete 1."
    assert default_storage.exists(orphan)
    out = StringIO()
    call_command("cleanup_orphan_crops", "--grace-seconds", str(HOUR), stdout=out)
    assert "deleted 1." in out.getvalue()
    assert not default_storage.exists(orphan)


def test_every_old_file_of_a_deleted_dataset_goes_young_ones_wait(dataset, media_root):
    """What a worker stored after dataset_delete walked the dataset's files (a training job's model
    and snapshot, a chunk's crops): no row can refer to them, so all go once past the grace period."""
    gone = dataset.pk + 1000
    late = [
        store(f"datasets/{gone}/models/v1-embedding-job3.keras", age_s=2 * HOUR, media_root=media_root),
        store(f"datasets/{gone}/models/v1-embedding-job3-snapshot.csv", age_s=2 * HOUR, media_root=media_root),
        store(f"datasets/{gone}/faces/001/1-j1-0.jpg", age_s=2 * HOUR, media_root=media_root),
        store(f"datasets/{gone}/originals/ab/cd.jpg", age_s=2 * HOUR, media_root=media_root),
    ]
    young = store(f"datasets/{gone}/models/v2.keras", age_s=60, media_root=media_root)
    ours = store(f"datasets/{dataset.pk}/models/v1.keras", age_s=5 * HOUR, media_root=media_root)
    not_a_dataset = store("datasets/readme/x.jpg", age_s=5 * HOUR, media_root=media_root)

    assert orphan_crops_delete(grace_seconds=HOUR, dry_run=True).gone_dataset_files == 4
    assert all(default_storage.exists(name) for name in late)
    report = orphan_crops_delete(grace_seconds=HOUR)

    assert report.gone_dataset_files == 4 and report.too_new == 1
    assert not any(default_storage.exists(name) for name in late)
    for name in (young, ours, not_a_dataset):
        assert default_storage.exists(name), name
