"""Create and delete datasets."""

import contextlib
import logging

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.storage import default_storage
from django.db import models, transaction

from curator.models import Dataset, Membership, default_classes
from curator.storage import storage_walk

logger = logging.getLogger(__name__)


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


def dataset_delete(*, dataset: Dataset, files_on_worker: bool = False) -> bool:
    """Delete the dataset's rows, then its files (originals, crops, chips, models, exports).

    With files_on_worker (the web pages), the files are left to a task on the `align` queue once the
    rows are gone: a million faces are a million crops and chips, minutes of deletes on object
    storage, longer than a web request may take. Returns whether the files are gone or queued; False
    when the task could not be queued (the broker is down): the periodic clean-up deletes the files
    of a deleted dataset then (curator.services.storage_cleanup), so nothing is left for good."""
    dataset_id = dataset.pk
    with transaction.atomic():
        # Lock the row first: a job storing a model version holds this lock while it writes its
        # files and rows (training.services.model_version_register), so the deletion below sees
        # that version and the walk after it finds its files; a job that asks after this commit
        # finds the dataset gone and stores nothing. Files that still arrive (a worker that never
        # checks) are removed by the periodic sweep (curator.services.storage_cleanup).
        Dataset.objects.select_for_update().filter(pk=dataset_id).first()
        _dataset_rows_delete(dataset=dataset)
    if not files_on_worker:
        dataset_files_delete(dataset_id=dataset_id)
        return True
    from curator.tasks import dataset_files_delete as task

    try:
        task.delay(dataset_id)
    except Exception:  # the broker: the rows are gone, the files wait for the sweep
        logger.exception("could not queue the deletion of dataset %s's files; the periodic clean-up will", dataset_id)
        return False
    return True


def dataset_files_delete(*, dataset_id: int) -> int:
    """Delete every file under `datasets/<id>/` of a dataset that no longer exists; returns how many.
    Refuses (deletes nothing) while a dataset with that id exists."""
    if Dataset.objects.filter(pk=dataset_id).exists():
        logger.warning("dataset %s exists: its files are not deleted", dataset_id)
        return 0
    return _delete_storage_tree(f"datasets/{dataset_id}")


def _dataset_rows_delete(*, dataset: Dataset) -> None:
    """The dataset's rows, table by table, one DELETE each joined to the dataset in SQL, leaves
    first. Django's own cascade reads every row that points at a deleted one into Python first:
    40 s for 100,000 faces, many minutes at a million, longer than a web request may take (its
    rollback would then keep the dataset for good). The references that on_delete sets NULL are
    cleared after the deletes, so that rows deleted anyway are not updated first (the foreign keys
    are checked at commit); whatever the walk cannot delete this way is left to Django's cascade
    (dataset.delete() below, which otherwise finds nothing left to do)."""
    set_null: list[tuple[type[models.Model], str, str]] = []
    _cascade_raw_delete(Dataset, "pk", dataset.pk, stack=(), set_null=set_null)
    for model, via, field in set_null:
        model._base_manager.filter(**{via: dataset.pk}).update(**{field: None})
    if Dataset.objects.filter(pk=dataset.pk).exists():
        dataset.delete()


def _cascade_raw_delete(model: type[models.Model], path: str, dataset_id: int, *, stack: tuple, set_null: list) -> bool:
    """Delete the rows of `model` whose `path` leads to the dataset, after every row that cascades
    from them (depth first), without loading a row; the references to them that on_delete sets
    NULL go to `set_null`, for the caller to clear. False where it left the rows to Django's
    cascade: a many-to-many, PROTECT or custom on_delete, or a cycle of cascades."""
    if model in stack:
        return False
    for relation in model._meta.related_objects:
        if not (relation.one_to_many or relation.one_to_one):
            return False
        related, via = relation.related_model, f"{relation.field.name}__{path}"
        if relation.on_delete is models.CASCADE:
            if not _cascade_raw_delete(related, via, dataset_id, stack=(*stack, model), set_null=set_null):
                return False
        elif relation.on_delete is models.SET_NULL:
            set_null.append((related, via, relation.field.name))
        elif relation.on_delete is not models.DO_NOTHING:
            return False
    model._base_manager.filter(**{path: dataset_id})._raw_delete(model._base_manager.db)
    return True


def _delete_storage_tree(prefix: str) -> int:
    deleted = 0
    for name in storage_walk(prefix, with_folders=True):
        if not name.endswith("/"):
            default_storage.delete(name)
            deleted += 1
            continue
        # A folder comes after everything in it, so a file system storage removes it, emptied by
        # now (an object store has no folders and ignores it).
        with contextlib.suppress(OSError):
            default_storage.delete(name)
    return deleted
