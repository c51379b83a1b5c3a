"""Import photos into a dataset from uploaded files, zip archives (streamed member by member,
never unpacked to disk) or a server folder under CURATOR_IMPORT_ROOTS.

Each file is read, hashed, fully decoded (so truncated or fake images are caught now, not
during alignment), stored unchanged once per dataset by sha256, and given a label from
labels.csv, its UTKFace name or its folder. A bad file becomes a line in the batch report and
the rest of the batch imports; each file is committed on its own so nothing is lost midway."""

import hashlib
import logging
import os
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from curator.images import ImageRejected, decode
from curator.labels import CSV_NAMES, CsvLabels, LabelFinder
from curator.models import Dataset, ImportBatch, ImportIssue, SourceImage

logger = logging.getLogger(__name__)

# A member this much larger than its compressed size is treated as a zip bomb.
MAX_COMPRESSION_RATIO = 200


class ImportRefused(Exception):
    """The whole import cannot start (e.g. a folder outside CURATOR_IMPORT_ROOTS)."""


@dataclass
class Candidate:
    """One file offered for import: its name inside the upload/zip/folder and how to read it."""

    name: str
    read: Callable[[], bytes]
    size: int
    problem: str = ""  # set when the file is refused before reading


def import_roots() -> list[Path]:
    return list(settings.CURATOR_IMPORT_ROOTS)


# --- Sources --------------------------------------------------------------------------------------


def _is_zip_name(name: str) -> bool:
    return name.lower().endswith(".zip")


def _zip_member_name(info: zipfile.ZipInfo) -> str:
    """Member names from tools that do not set the UTF-8 flag are cp437 bytes that are often
    really UTF-8 (any script): decode them as UTF-8 when they are valid UTF-8."""
    name = info.filename
    if not info.flag_bits & 0x800:
        try:
            name = name.encode("cp437").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    return name


def _unsafe_member(name: str) -> str:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        return "absolute path inside the zip; refused (nothing is written outside the dataset)"
    if ".." in path.parts:
        return "“..” in its path inside the zip; refused (nothing is written outside the dataset)"
    return ""


def zip_candidates(handle: BinaryIO, *, prefix: str = "") -> Iterator[Candidate]:
    """Members of a zip, read one at a time from the (temporary) file. Nested zips are reported,
    not unpacked."""
    try:
        archive = zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, OSError) as exc:
        yield Candidate(prefix.rstrip("/") or "archive.zip", lambda: b"", 0, f"not a readable zip archive ({exc})")
        return
    # The archive stays open while its candidates are read (they keep a reference to it).
    for info in archive.infolist():
        if info.is_dir():
            continue
        name = _zip_member_name(info)
        shown = f"{prefix}{name}"
        problem = _unsafe_member(name)
        if not problem and info.flag_bits & 0x1:
            problem = "encrypted zip member; refused"
        if not problem and info.file_size > settings.CURATOR_MAX_UPLOAD_BYTES:
            problem = f"{info.file_size:,} bytes, more than CURATOR_MAX_UPLOAD_BYTES"
        if not problem and info.compress_size and info.file_size / info.compress_size > MAX_COMPRESSION_RATIO:
            problem = "compressed more than 200:1; refused as a likely zip bomb"
        if not problem and _is_zip_name(name):
            problem = "a zip inside the zip is not unpacked; upload it on its own"

        def read(info: zipfile.ZipInfo = info) -> bytes:
            with archive.open(info) as member:
                return member.read(settings.CURATOR_MAX_UPLOAD_BYTES + 1)

        yield Candidate(shown, read, info.file_size, problem)


def upload_candidates(files: Iterable) -> Iterator[Candidate]:
    for upload in files:
        name = upload.name or "upload"
        if _is_zip_name(name) or (upload.size >= 4 and _peek(upload) == b"PK\x03\x04"):
            upload.seek(0)
            yield from zip_candidates(upload.file, prefix=f"{name}/" if len(files) > 1 else "")
            continue
        problem = ""
        if upload.size > settings.CURATOR_MAX_UPLOAD_BYTES:
            problem = f"{upload.size:,} bytes, more than CURATOR_MAX_UPLOAD_BYTES"

        def read(upload=upload) -> bytes:
            upload.seek(0)
            return upload.read()

        yield Candidate(name, read, upload.size, problem)


def _peek(upload) -> bytes:
    upload.seek(0)
    head = upload.read(4)
    upload.seek(0)
    return head


def folder_candidates(root: Path) -> Iterator[Candidate]:
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs.sort()
        for filename in sorted(names):
            path = Path(folder) / filename
            relative = path.relative_to(root).as_posix()
            if path.is_symlink():
                yield Candidate(relative, lambda: b"", 0, "symbolic link; not followed")
                continue
            size = path.stat().st_size
            problem = (
                "a zip inside the folder is not unpacked; import it as an upload" if _is_zip_name(filename) else ""
            )
            if size > settings.CURATOR_MAX_UPLOAD_BYTES:
                problem = f"{size:,} bytes, more than CURATOR_MAX_UPLOAD_BYTES"
            yield Candidate(relative, path.read_bytes, size, problem)


def resolve_import_folder(path: str) -> Path:
    """The folder, if it lies under one of CURATOR_IMPORT_ROOTS (after resolving links)."""
    roots = import_roots()
    if not roots:
        raise ImportRefused("Server folder import is disabled: CURATOR_IMPORT_ROOTS is not set.")
    folder = Path(path).expanduser()
    if not folder.is_absolute():
        folder = roots[0] / folder
    folder = folder.resolve()
    if not any(folder == root or root in folder.parents for root in roots):
        raise ImportRefused(f"{path} is not under an allowed import root ({', '.join(map(str, roots))}).")
    if not folder.is_dir():
        raise ImportRefused(f"{folder} is not a folder.")
    return folder


# --- The import itself ----------------------------------------------------------------------------


def import_uploads(*, dataset: Dataset, files: list, user: AbstractBaseUser | None) -> ImportBatch:
    """Import browser uploads (images and/or zips) and queue their alignment."""
    source = ImportBatch.Source.ZIP if all(_is_zip_name(f.name or "") for f in files) else ImportBatch.Source.UPLOAD
    shown = files[0].name if len(files) == 1 else f"{len(files)} files"
    batch = ImportBatch.objects.create(dataset=dataset, created_by=user, source=source, source_name=shown)
    return _run_import(batch, list(upload_candidates(files)))


def import_zip_file(*, dataset: Dataset, path: Path, user: AbstractBaseUser | None) -> ImportBatch:
    batch = ImportBatch.objects.create(
        dataset=dataset, created_by=user, source=ImportBatch.Source.ZIP, source_name=path.name
    )
    with open(path, "rb") as handle:
        return _run_import(batch, list(zip_candidates(handle)))


def import_server_folder(
    *, dataset: Dataset, path: str, user: AbstractBaseUser | None, check_roots: bool = True
) -> ImportBatch:
    """Import a folder on the server (recursively). The web page may only import under
    CURATOR_IMPORT_ROOTS; the management command, run by an operator, may import any folder."""
    folder = resolve_import_folder(path) if check_roots else Path(path).resolve()
    if not folder.is_dir():
        raise ImportRefused(f"{folder} is not a folder.")
    batch = ImportBatch.objects.create(
        dataset=dataset, created_by=user, source=ImportBatch.Source.FOLDER, source_name=str(folder)
    )
    return _run_import(batch, list(folder_candidates(folder)))


def import_folder_start(*, dataset: Dataset, path: str, user: AbstractBaseUser | None) -> ImportBatch:
    """Check the folder now (so a refused path is answered at once), import it in the
    background (queue `align`), and return the batch whose page shows it filling up."""
    from curator import import_tasks

    folder = resolve_import_folder(path)
    batch = ImportBatch.objects.create(
        dataset=dataset, created_by=user, source=ImportBatch.Source.FOLDER, source_name=str(folder)
    )
    transaction.on_commit(lambda: import_tasks.import_folder.delay(batch.pk, str(folder)))
    return batch


def import_batch_run_folder(*, batch_id: int, folder: str) -> int:
    """The background half of import_folder_start; returns the number of photos imported."""
    batch = ImportBatch.objects.select_related("dataset").get(pk=batch_id)
    if batch.status != ImportBatch.Status.RECEIVING:
        return 0  # delivered twice: the first run did it
    _run_import(batch, list(folder_candidates(Path(folder))))
    return batch.imported_count


def _run_import(batch: ImportBatch, candidates: list[Candidate]) -> ImportBatch:
    from curator.services.alignment import alignment_job_start

    try:
        finder, images = _label_finder(batch, candidates)
        layouts = _import_candidates(batch, images, finder)
    except Exception as exc:  # a bug or a storage outage: the batch says so, nothing half-hidden
        logger.exception("import batch %s failed", batch.pk)
        batch.status = ImportBatch.Status.FAILED
        batch.error = f"The import stopped: {exc}"
        batch.finished_at = timezone.now()
        batch.save()
        raise
    batch.label_layout = layouts.most_common(1)[0][0] if layouts else ImportBatch.LabelLayout.NONE
    batch.status = ImportBatch.Status.DONE
    batch.finished_at = timezone.now()
    batch.save()
    new_images = SourceImage.objects.filter(batch=batch, status=SourceImage.Status.PENDING)
    if new_images.exists():
        alignment_job_start(dataset=batch.dataset, images=new_images, batch=batch, user=batch.created_by)
    return batch


def _label_finder(batch: ImportBatch, candidates: list[Candidate]) -> tuple[LabelFinder, list[Candidate]]:
    """Read every labels.csv first (it may come after the images in a zip)."""
    csv_files, images = [], []
    for candidate in candidates:
        if PurePosixPath(candidate.name).name.lower() in CSV_NAMES and not candidate.problem:
            labels = CsvLabels.parse(candidate.name, candidate.read())
            if labels.error:
                _issue(batch, candidate.name, ImportIssue.Kind.SKIPPED, labels.error)
            csv_files.append(labels)
        else:
            images.append(candidate)
    return LabelFinder(batch.dataset.classes, csv_files), images


def _import_candidates(batch: ImportBatch, candidates: list[Candidate], finder: LabelFinder) -> Counter:
    layouts: Counter = Counter()
    seen: dict[str, str] = {}  # sha256 -> name, within this batch
    for candidate in candidates:
        reason = candidate.problem or _ignorable(candidate.name)
        if reason:
            _issue(batch, candidate.name, ImportIssue.Kind.SKIPPED, reason)
            continue
        try:
            data = candidate.read()
        except (OSError, zipfile.BadZipFile, EOFError, RuntimeError) as exc:
            _issue(batch, candidate.name, ImportIssue.Kind.SKIPPED, f"could not be read ({exc})")
            continue
        if len(data) > settings.CURATOR_MAX_UPLOAD_BYTES:
            _issue(batch, candidate.name, ImportIssue.Kind.SKIPPED, "larger than CURATOR_MAX_UPLOAD_BYTES")
            continue
        sha = hashlib.sha256(data).hexdigest()
        if sha in seen:
            _issue(batch, candidate.name, ImportIssue.Kind.DUPLICATE, f"same file as {seen[sha]} in this import")
            continue
        existing = SourceImage.objects.filter(dataset=batch.dataset, sha256=sha).only("original_name").first()
        if existing is not None:
            _issue(
                batch, candidate.name, ImportIssue.Kind.DUPLICATE, f"already in the dataset as {existing.original_name}"
            )
            continue
        try:
            _pixels, info = decode(data)
        except ImageRejected as exc:
            _issue(batch, candidate.name, ImportIssue.Kind.SKIPPED, str(exc))
            continue
        del _pixels
        guess = finder.find(candidate.name)
        if _store(batch, candidate.name, data, sha, info, guess):
            seen[sha] = candidate.name
            if guess.label:
                layouts[guess.layout] += 1
            if guess.unknown_value:
                _issue(
                    batch,
                    candidate.name,
                    ImportIssue.Kind.UNLABELLED,
                    f"label “{guess.unknown_value}” is not one of the classes ({', '.join(batch.dataset.classes)})",
                )
        else:
            _issue(batch, candidate.name, ImportIssue.Kind.DUPLICATE, "imported at the same moment by another batch")
    return layouts


def _ignorable(name: str) -> str:
    path = PurePosixPath(name)
    if "__MACOSX" in path.parts or path.name.startswith("._"):
        return "macOS metadata file, not a photo"
    if path.name.lower() in {".ds_store", "thumbs.db", "desktop.ini"}:
        return "system file, not a photo"
    return ""


def original_storage_name(*, dataset: Dataset, sha256: str, extension: str) -> str:
    """Where a dataset keeps an original photo: content-addressed, so one file per content."""
    return f"datasets/{dataset.pk}/originals/{sha256[:2]}/{sha256}{extension}"


def _store(batch: ImportBatch, name: str, data: bytes, sha: str, info, guess) -> bool:
    """Store the original unchanged (content-addressed) and its row; False if another import
    stored the same file first."""
    dataset = batch.dataset
    storage_name = original_storage_name(dataset=dataset, sha256=sha, extension=info.extension)
    if not default_storage.exists(storage_name):
        saved = default_storage.save(storage_name, ContentFile(data))
        if saved != storage_name:  # written concurrently by another import; keep one copy
            default_storage.delete(saved)
    try:
        with transaction.atomic():
            SourceImage.objects.create(
                dataset=dataset,
                batch=batch,
                file=storage_name,
                original_name=name[:1000],
                sha256=sha,
                byte_size=len(data),
                width=info.width,
                height=info.height,
                image_format=info.image_format,
                label=guess.label,
                metadata=guess.metadata,
            )
            ImportBatch.objects.filter(pk=batch.pk).update(
                imported_count=F("imported_count") + 1,
                labelled_count=F("labelled_count") + (1 if guess.label else 0),
            )
    except IntegrityError:
        return False
    batch.imported_count += 1
    batch.labelled_count += 1 if guess.label else 0
    return True


def _issue(batch: ImportBatch, name: str, kind: str, reason: str) -> None:
    ImportIssue.objects.create(batch=batch, file_name=name[:1000], kind=kind, reason=reason)
    if kind == ImportIssue.Kind.DUPLICATE:
        batch.duplicate_count += 1
        ImportBatch.objects.filter(pk=batch.pk).update(duplicate_count=F("duplicate_count") + 1)
    elif kind == ImportIssue.Kind.SKIPPED:
        batch.skipped_count += 1
        ImportBatch.objects.filter(pk=batch.pk).update(skipped_count=F("skipped_count") + 1)
