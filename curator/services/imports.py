"""Import photos (uploads, zips, server folders) with labels; filled in next."""

from pathlib import Path

from django.conf import settings


class ImportRefused(Exception):
    """The whole import cannot start (e.g. a folder outside CURATOR_IMPORT_ROOTS)."""


def import_roots() -> list[Path]:
    return list(settings.CURATOR_IMPORT_ROOTS)


def import_uploads(*, dataset, files, user):
    raise NotImplementedError


def import_server_folder(*, dataset, path, user):
    raise NotImplementedError
