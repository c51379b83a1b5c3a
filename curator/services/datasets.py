"""Create and delete datasets."""

import contextlib

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.storage import default_storage
from django.db import transaction

from curator.models import Dataset, Membership, default_classes
from curator.storage import storage_walk


@transaction.atomic
def dataset_create(*, user: AbstractBaseUser | None, name: str, classes: list[str] | None = None, **options) -> Dataset:
    """Create a dataset (classes and alignment settings default to CURATOR_DEFAULT_CLASSES and
    CURATOR_ALIGN_*/CURATOR_DETECT_*); its creator becomes its curator."""
    options.setdefault("crop_size", settings.CURATOR_ALIGN_CROP_SIZE)
    options.setdefault("detect_max_side", settings.CURATOR_DETECT_MAX_SIDE)
    options.setdefault("upsample", settings.CURATOR_DETECT_UPSAMPLE)
    dataset = Dataset.objects.create(name=name, classes=classes or default_classes(), created_by=user, **options)
    if user is not None:
        Membership.objects.create(dataset=dataset, user=user, role=Membership.Role.CURATOR)
    return dataset


def dataset_delete(*, dataset: Dataset) -> None:
    """Delete the dataset's rows, then its files (originals, crops, models, exports)."""
    prefix = f"datasets/{dataset.pk}"
    with transaction.atomic():
        # Lock the row first: a job storing a model version holds this lock while it writes its
        # files and rows (training.services.model_version_register), so the deletion below sees
        # that version and the walk after it finds its files; a job that asks after this commit
        # finds the dataset gone and stores nothing. Files that still arrive (a worker that never
        # checks) are removed by the periodic sweep (curator.services.storage_cleanup).
        Dataset.objects.select_for_update().filter(pk=dataset.pk).first()
        dataset.delete()
    _delete_storage_tree(prefix)


def _delete_storage_tree(prefix: str) -> None:
    for name in storage_walk(prefix, with_folders=True):
        if not name.endswith("/"):
            default_storage.delete(name)
            continue
        # A folder comes after everything in it, so a file system storage removes it, emptied by
        # now (an object store has no folders and ignores it).
        with contextlib.suppress(OSError):
            default_storage.delete(name)
