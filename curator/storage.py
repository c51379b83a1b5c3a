"""Helpers over the storage API that hold for every backend (a file system, or an object store
through django-storages' S3 backend).

STORAGE_ERRORS is what the storage backend raises when it fails. A file system raises OSError; an
object store (through boto3) raises botocore's own errors, which are not OSError: code that must
survive a storage outage (report the file, retry the task) catches these."""

from __future__ import annotations

from collections.abc import Iterator

from django.core.files.storage import default_storage

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # no S3 support installed: only file system storages
    STORAGE_ERRORS: tuple[type[Exception], ...] = (OSError,)
else:
    STORAGE_ERRORS = (OSError, BotoCoreError, ClientError)


def storage_listdir(prefix: str) -> tuple[list[str], list[str]]:
    """The folders and the files directly under `prefix` (storage.listdir); a missing prefix has
    none (a file system storage raises for it, an object store lists nothing)."""
    try:
        return default_storage.listdir(prefix)
    except (FileNotFoundError, NotADirectoryError):
        return [], []


def storage_walk(prefix: str, *, with_folders: bool = False) -> Iterator[str]:
    """Every file under `prefix`, at any depth, as storage names: a folder's files (sorted), then
    each of its sub-folders in turn (sorted), depth first. A missing prefix yields nothing.

    with_folders=True also yields each folder, `prefix` included, with a trailing "/" and after
    everything under it: a caller that deletes what it is given has emptied a folder by the time it
    gets it, so a file system storage can remove it (an object store has no folders)."""
    folders, files = storage_listdir(prefix)
    for name in sorted(files):
        yield f"{prefix}/{name}"
    for folder in sorted(folders):
        yield from storage_walk(f"{prefix}/{folder}", with_folders=with_folders)
    if with_folders:
        yield f"{prefix}/"
