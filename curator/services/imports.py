"""Import photos into a dataset from uploaded files, zip archives (streamed member by member,
never unpacked to disk) or a server folder under CURATOR_IMPORT_ROOTS.

Browser uploads are only stored (under a staging prefix, through the storage API) by the
request, which returns at once; a task on the `import` queue imports them, as it does server
folders. Each file is read, hashed, fully decoded (so truncated or fake images are caught now,
not during alignment), stored unchanged once per dataset by sha256, and given a label from
labels.csv, its UTKFace name or its folder. A bad file becomes a line in the batch report and
the rest of the batch imports; rows are committed a small group at a time (importing again
picks up any file an interrupted import had stored but not recorded).
Stored photos are handed to an alignment job in chunks while the import goes on
(curator.services.alignment.ImportAlignmentFeed), so the align workers start at once."""

import hashlib
import json
import logging
import os
import shutil
import stat
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path, PurePosixPath
from tempfile import SpooledTemporaryFile
from typing import BinaryIO

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from curator.images import ImageInfo, ImageRejected, decode
from curator.labels import CSV_NAMES, CsvLabels, LabelFinder, LabelGuess
from curator.models import Dataset, ImportBatch, ImportIssue, SourceImage
from curator.storage import STORAGE_ERRORS
from curator.uploads import UPLOAD_MEMORY_BUDGET

logger = logging.getLogger(__name__)

# A member this much larger than its compressed size is treated as a zip bomb.
MAX_COMPRESSION_RATIO = 200


# Longest side of the copy an import decodes to check a photo (its full size is still recorded).
IMPORT_CHECK_SIDE = 64

# Checked files are stored and their rows written a group at a time: one duplicate query, one
# multi-row INSERT and one counter UPDATE per group instead of four statements per photo (the
# import shares the cores with the alignment it feeds, and those statements were most of its
# CPU). A group closes at this many files or after this many seconds, so the feed still streams.
IMPORT_GROUP_FILES = 32
IMPORT_GROUP_SECONDS = 0.25


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


ZIP_MAGIC = b"PK\x03\x04"


def staged_candidates(batch: ImportBatch, stack: ExitStack) -> list[Candidate]:
    """The files of a browser upload, read back from storage (see import_upload_stage): members
    of each request's bundle, and uploaded zips listed member by member (`stack` keeps what is
    opened open while the candidates are read)."""
    entries = staged_entries(batch)
    many = len(entries) > 1
    bundles: dict[str, zipfile.ZipFile] = {}
    out: list[Candidate] = []
    for entry in entries:
        name, path, size = entry["name"], entry.get("path", ""), entry["size"]
        try:
            if entry.get("problem"):
                out.append(Candidate(name, lambda: b"", size, entry["problem"]))
            elif entry.get("member"):
                if path not in bundles:
                    bundles[path] = zipfile.ZipFile(stack.enter_context(default_storage.open(path, "rb")))
                out.append(Candidate(name, lambda z=bundles[path], m=entry["member"]: z.read(m), size))
            else:  # an uploaded zip, stored as it came
                handle = stack.enter_context(default_storage.open(path, "rb"))
                out += zip_candidates(handle, prefix=f"{name}/" if many else "")
        except (OSError, zipfile.BadZipFile) as exc:  # the staged copy is gone or storage failed
            out.append(Candidate(name, lambda: b"", 0, f"could not be read back from storage ({exc})"))
    return out


_NOT_REGULAR = [
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
]


def _not_regular_reason(mode: int) -> str:
    """Why a folder entry is not imported when it is not a plain file ("" when it is one). Reading
    a FIFO blocks until something writes to it, and a device may never end: either hung the import
    worker, so only regular files are ever opened."""
    if stat.S_ISREG(mode):
        return ""
    if stat.S_ISLNK(mode):
        return "symbolic link; not followed"
    kind = next((name for test, name in _NOT_REGULAR if test(mode)), "not a regular file")
    return f"{kind}, not a regular file; skipped"


def _regular_file_read(path: Path) -> bytes:
    """The file's bytes, refusing anything that became a link or a non-regular file since it was
    listed (opened without following links and without blocking, then checked on the open file)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        reason = _not_regular_reason(os.fstat(fd).st_mode)
        if reason:
            raise OSError(reason)
        return handle.read()


def folder_candidates(root: Path) -> Iterator[Candidate]:
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs.sort()
        for filename in sorted(names):
            path = Path(folder) / filename
            relative = path.relative_to(root).as_posix()
            try:
                info = path.lstat()
            except OSError as exc:  # gone since it was listed
                yield Candidate(relative, lambda: b"", 0, f"could not be read ({exc.strerror})")
                continue
            reason = _not_regular_reason(info.st_mode)
            if reason:
                yield Candidate(relative, lambda: b"", 0, reason)
                continue
            size = info.st_size
            problem = (
                "a zip inside the folder is not unpacked; import it as an upload" if _is_zip_name(filename) else ""
            )
            if size > settings.CURATOR_MAX_UPLOAD_BYTES:
                problem = f"{size:,} bytes, more than CURATOR_MAX_UPLOAD_BYTES"
            yield Candidate(relative, lambda path=path: _regular_file_read(path), size, problem)


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


# --- Browser uploads: storage first, then a task -----------------------------------------------


def _manifest_name(batch: ImportBatch, part: int) -> str:
    return f"{batch.staging_prefix}manifest-{part:04d}.json"


def staged_entries(batch: ImportBatch) -> list[dict]:
    """Every file of an upload, in the order sent: {"name", "size"} and where it is staged:
    "path" (an uploaded zip) or "path" + "member" (inside its request's bundle), or "problem"
    (refused, not stored)."""
    entries: list[dict] = []
    for part in range(batch.staged_parts):
        with default_storage.open(_manifest_name(batch, part), "rb") as handle:
            entries += json.loads(handle.read().decode("utf-8"))
    return entries


def _is_zip_upload(upload) -> bool:
    if _is_zip_name(upload.name or ""):
        return True
    if upload.size < 4:
        return False
    upload.seek(0)
    head = upload.read(4)
    upload.seek(0)
    return head == ZIP_MAGIC


def _stage_part(batch: ImportBatch, part: int, files: list) -> list[dict]:
    """Store one request's files: uploaded zips as they are, every other file as a member of
    ONE uncompressed zip per request (its "bundle"): one storage write instead of thousands,
    which is what lets an upload of 5,000 photos return in a second or two."""
    entries: list[dict] = []
    bundle_name = f"{batch.staging_prefix}bundle-{part:04d}.zip"
    limit = settings.CURATOR_MAX_UPLOAD_BYTES
    with SpooledTemporaryFile(max_size=UPLOAD_MEMORY_BUDGET) as spool:
        with zipfile.ZipFile(spool, "w", zipfile.ZIP_STORED, allowZip64=True) as bundle:
            for index, upload in enumerate(files):
                name = upload.name or "upload"
                if upload.size > limit:
                    problem = f"{upload.size:,} bytes, more than CURATOR_MAX_UPLOAD_BYTES"
                    entries.append({"name": name, "size": upload.size, "problem": problem})
                elif _is_zip_upload(upload):
                    saved = default_storage.save(f"{batch.staging_prefix}{part:04d}-{index:05d}.zip", upload)
                    entries.append({"name": name, "size": upload.size, "path": saved})
                else:
                    member = f"{index:05d}"
                    upload.seek(0)
                    with bundle.open(zipfile.ZipInfo(member), "w", force_zip64=upload.size > 2**31) as target:
                        shutil.copyfileobj(upload, target, 1024 * 1024)
                    entries.append({"name": name, "size": upload.size, "path": bundle_name, "member": member})
        if any("member" in e for e in entries):
            spool.seek(0)
            saved = default_storage.save(bundle_name, File(spool, name=bundle_name))
            for entry in entries:
                if "member" in entry:
                    entry["path"] = saved
    default_storage.save(_manifest_name(batch, part), ContentFile(json.dumps(entries).encode("utf-8")))
    return entries


def import_upload_stage(
    *,
    dataset: Dataset,
    files: list,
    user: AbstractBaseUser | None,
    batch: ImportBatch | None = None,
    more: bool = False,
) -> ImportBatch:
    """Store one request's uploaded files under the batch's staging prefix (nothing is decoded
    here, so the request returns at once) and, with the last part (`more` false), queue the
    import task. The browser sends a large selection in several parts: the first creates the
    batch, later ones name it. Once stored, a closed browser loses nothing: the task imports
    from storage, and an upload whose parts stop arriving is imported as far as it got (the
    stale sweep, import_batches_sweep_stale)."""
    from curator import import_tasks

    all_zips = all(_is_zip_name(f.name or "") for f in files)
    with transaction.atomic():
        if batch is None:
            batch = ImportBatch.objects.create(
                dataset=dataset,
                created_by=user if user is not None and user.is_authenticated else None,
                source=ImportBatch.Source.ZIP if all_zips else ImportBatch.Source.UPLOAD,
                status=ImportBatch.Status.UPLOADING,
            )
            batch.staging_prefix = f"uploads/{dataset.pk}/{batch.pk}/"
        else:
            batch = ImportBatch.objects.select_for_update().get(pk=batch.pk)
            if batch.status != ImportBatch.Status.UPLOADING:
                raise ImportRefused("This upload was complete already; start a new import for more files.")
            if not all_zips:
                batch.source = ImportBatch.Source.UPLOAD
        part = batch.staged_parts
        entries = _stage_part(batch, part, files)
        batch.staged_parts = part + 1
        batch.staged_count += len(entries)
        batch.staged_bytes += sum(e["size"] for e in entries)
        batch.source_name = entries[0]["name"] if batch.staged_count == 1 else f"{batch.staged_count} files"
        batch.heartbeat_at = timezone.now()
        if not more:
            batch.status = ImportBatch.Status.RECEIVING  # queued: the task sets started_at
            batch_id = batch.pk
            transaction.on_commit(lambda: import_tasks.import_upload.delay(batch_id))
        batch.save()
    return batch


def import_batch_run_upload(*, batch_id: int) -> int:
    """The background half of an upload: import the staged files; returns the photos imported.
    The staged copies are deleted once the import is done (kept if it failed, to look into)."""
    batch = _claim(batch_id)
    if batch is None:
        return 0
    with ExitStack() as stack:
        try:
            candidates = staged_candidates(batch, stack)
        except Exception as exc:
            _fail(batch, exc)
            raise
        _run_import(batch, candidates)
    _staging_delete(batch)
    return batch.imported_count


def _staging_delete(batch: ImportBatch) -> None:
    try:
        paths = sorted({e["path"] for e in staged_entries(batch) if e.get("path")})
        paths += [_manifest_name(batch, part) for part in range(batch.staged_parts)]
    except OSError:
        logger.warning("could not list the staged files of batch %s", batch.pk, exc_info=True)
        return
    for path in paths:
        try:
            default_storage.delete(path)
        except OSError:
            logger.warning("could not delete staged file %s", path, exc_info=True)


def import_batches_sweep_stale() -> int:
    """Part of the stale-job sweep. An import whose worker stopped reporting is failed (saying
    so; its alignment job is closed, so what it stored is aligned and the job finishes); an
    upload whose browser stopped sending parts is imported as far as it got. Returns how many
    batches changed."""
    from curator import import_tasks
    from curator.services.alignment import alignment_job_close_import, lost_import_fail

    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.CURATOR_JOB_STALE_SECONDS)
    changed = 0
    lost = ImportBatch.objects.filter(
        status=ImportBatch.Status.RECEIVING, started_at__isnull=False, heartbeat_at__lt=stale_before
    )
    for batch in lost:
        if lost_import_fail(batch_id=batch.pk, now=now):
            changed += 1
            logger.warning("import batch %s failed: its worker stopped reporting", batch.pk)
            for job_id in batch.alignment_jobs.filter(import_open=True).values_list("pk", flat=True):
                alignment_job_close_import(job_id=job_id, batch_id=batch.pk)
    abandoned = ImportBatch.objects.filter(status=ImportBatch.Status.UPLOADING, heartbeat_at__lt=stale_before)
    for batch_id, count in abandoned.values_list("pk", "staged_count"):
        note = (
            f"The upload stopped after {count} files (the browser was closed or lost its connection); "
            "the files received were imported. Upload the rest again: files already in are reported as duplicates."
        )
        if ImportBatch.objects.filter(pk=batch_id, status=ImportBatch.Status.UPLOADING).update(
            status=ImportBatch.Status.RECEIVING, error=note, heartbeat_at=now
        ):
            changed += 1
            transaction.on_commit(lambda batch_id=batch_id: import_tasks.import_upload.delay(batch_id))
    return changed


# --- The import itself ----------------------------------------------------------------------------


def import_zip_file(*, dataset: Dataset, path: Path, user: AbstractBaseUser | None) -> ImportBatch:
    """A zip on this machine (the import_images command, run by an operator), imported here."""
    batch = ImportBatch.objects.create(
        dataset=dataset, created_by=user, source=ImportBatch.Source.ZIP, source_name=path.name
    )
    with path.open("rb") as handle:
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
    background (queue `import`), and return the batch whose page shows it filling up."""
    from curator import import_tasks

    folder = resolve_import_folder(path)
    batch = ImportBatch.objects.create(
        dataset=dataset, created_by=user, source=ImportBatch.Source.FOLDER, source_name=str(folder)
    )
    transaction.on_commit(lambda: import_tasks.import_folder.delay(batch.pk, str(folder)))
    return batch


def import_batch_run_folder(*, batch_id: int, folder: str) -> int:
    """The background half of import_folder_start; returns the number of photos imported."""
    batch = _claim(batch_id)
    if batch is None:
        return 0
    _run_import(batch, list(folder_candidates(Path(folder))))
    return batch.imported_count


def _claim(batch_id: int) -> ImportBatch | None:
    """Start a queued import once: a second delivery of its task (or a lost import's, which the
    stale sweep has failed) does nothing."""
    now = timezone.now()
    claimed = ImportBatch.objects.filter(
        pk=batch_id, status=ImportBatch.Status.RECEIVING, started_at__isnull=True
    ).update(started_at=now, heartbeat_at=now)
    if not claimed:
        return None
    return ImportBatch.objects.select_related("dataset", "created_by").get(pk=batch_id)


def _fail(batch: ImportBatch, exc: Exception) -> None:
    logger.exception("import batch %s failed", batch.pk)
    ImportBatch.objects.filter(pk=batch.pk).update(
        status=ImportBatch.Status.FAILED, error=f"The import stopped: {exc}", finished_at=timezone.now()
    )
    batch.refresh_from_db()


def _run_import(batch: ImportBatch, candidates: list[Candidate]) -> ImportBatch:
    """Import every candidate, handing the stored photos to an alignment job as it goes."""
    from curator.services.alignment import ImportAlignmentFeed

    now = timezone.now()
    batch.status = ImportBatch.Status.RECEIVING
    batch.started_at = batch.started_at or now
    batch.heartbeat_at = now
    batch.save(update_fields=["status", "started_at", "heartbeat_at"])
    feed = ImportAlignmentFeed(batch=batch)
    try:
        finder, images = _label_finder(batch, candidates)
        batch.file_count = len(images)
        ImportBatch.objects.filter(pk=batch.pk).update(file_count=batch.file_count)
        layouts = _import_candidates(batch, images, finder, feed)
    except Exception as exc:  # a bug or a storage outage: the batch says so, nothing half-hidden
        _fail(batch, exc)
        feed.close()  # what was stored is aligned all the same
        raise
    batch.label_layout = layouts.most_common(1)[0][0] if layouts else ImportBatch.LabelLayout.NONE
    batch.label_sources = dict(layouts)
    batch.status = ImportBatch.Status.DONE
    batch.finished_at = timezone.now()
    batch.save(update_fields=["label_layout", "label_sources", "status", "finished_at"])
    feed.close()
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


def _import_candidates(batch: ImportBatch, candidates: list[Candidate], finder: LabelFinder, feed) -> Counter:
    """Check each file as it is read; store and record the good ones a group at a time."""
    layouts: Counter = Counter()
    seen: dict[str, str] = {}  # sha256 -> name, within this batch
    group: list[_Checked] = []
    group_started = 0.0
    for position, candidate in enumerate(candidates):
        feed.tick()
        checked = _check(batch, candidate, seen)
        if checked is not None:
            checked.guess = finder.find(candidate.name)
            seen[checked.sha] = candidate.name
            if not group:
                group_started = time.monotonic()
            group.append(checked)
        files_left = len(candidates) - position - 1
        if group and (
            not files_left
            or len(group) >= IMPORT_GROUP_FILES
            or time.monotonic() - group_started >= IMPORT_GROUP_SECONDS
        ):
            _import_group(batch, group, feed, layouts, files_left=files_left)
            group = []
    return layouts


@dataclass
class _Checked:
    """A file that passed the per-file checks, waiting in its group to be stored."""

    name: str
    data: bytes
    size: int
    sha: str
    info: ImageInfo
    guess: LabelGuess | None = None


def _check(batch: ImportBatch, candidate: Candidate, seen: dict[str, str]) -> _Checked | None:
    """Read and check one file; a refused one is reported, and None returned."""
    reason = candidate.problem or _ignorable(candidate.name)
    if reason:
        _issue(batch, candidate.name, ImportIssue.Kind.SKIPPED, reason)
        return None
    try:
        data = candidate.read()
    except (OSError, zipfile.BadZipFile, EOFError, RuntimeError) as exc:
        _issue(batch, candidate.name, ImportIssue.Kind.SKIPPED, f"could not be read ({exc})")
        return None
    if len(data) > settings.CURATOR_MAX_UPLOAD_BYTES:
        _issue(batch, candidate.name, ImportIssue.Kind.SKIPPED, "larger than CURATOR_MAX_UPLOAD_BYTES")
        return None
    sha = hashlib.sha256(data).hexdigest()
    if sha in seen:
        _issue(batch, candidate.name, ImportIssue.Kind.DUPLICATE, f"same file as {seen[sha]} in this import")
        return None
    try:
        # Decoding checks the whole file (a truncated or corrupt photo is refused here, not
        # in alignment); a JPEG at a small DCT scale is as strict and several times cheaper,
        # which matters as the import shares the cores with the alignment it feeds.
        _pixels, info = decode(data, min_longest=IMPORT_CHECK_SIDE)
    except ImageRejected as exc:
        _issue(batch, candidate.name, ImportIssue.Kind.SKIPPED, str(exc))
        return None
    return _Checked(candidate.name, data, len(data), sha, info)


def _import_group(batch: ImportBatch, group: list[_Checked], feed, layouts: Counter, *, files_left: int) -> None:
    """Store a group's originals and write their rows: one query for the photos the dataset
    already has, one multi-row INSERT and one counter UPDATE for the whole group."""
    dataset = batch.dataset
    known = dict(
        SourceImage.objects.filter(dataset=dataset, sha256__in=[c.sha for c in group]).values_list(
            "sha256", "original_name"
        )
    )
    stored: list[tuple[_Checked, str]] = []
    for checked in group:
        if checked.sha in known:
            _issue(batch, checked.name, ImportIssue.Kind.DUPLICATE, f"already in the dataset as {known[checked.sha]}")
            continue
        try:
            storage_name, _written = original_store(
                dataset=dataset, sha256=checked.sha, data=checked.data, extension=checked.info.extension
            )
        except STORAGE_ERRORS as exc:  # storage trouble fails this file, reported; importing it again retries
            _issue(
                batch, checked.name, ImportIssue.Kind.SKIPPED, f"could not be stored ({exc}); import it again to retry"
            )
            continue
        checked.data = b""  # stored: the group need not hold the photo's bytes any longer
        stored.append((checked, storage_name))
    ids = _rows_create(batch, stored)
    feed.add_many([image_id for image_id in ids if image_id is not None], files_left=files_left)
    for (checked, _name), image_id in zip(stored, ids, strict=True):
        if image_id is None:
            _issue(batch, checked.name, ImportIssue.Kind.DUPLICATE, "imported at the same moment by another batch")
            continue
        if checked.guess.label:
            layouts[checked.guess.layout] += 1
        if checked.guess.unknown_value:
            _issue(
                batch,
                checked.name,
                ImportIssue.Kind.UNLABELLED,
                f"label “{checked.guess.unknown_value}” is not one of the classes ({', '.join(dataset.classes)})",
            )


def _rows_create(batch: ImportBatch, stored: list[tuple[_Checked, str]]) -> list[int | None]:
    """The rows of stored originals, committed now (so the alignment feed may hand them over):
    in one INSERT, or one by one when another import added one of the photos meanwhile. Their
    ids in order; None for a photo the other import got first."""
    rows = [_image_row(batch, checked, name) for checked, name in stored]
    if not rows:
        return []
    try:
        with transaction.atomic():
            SourceImage.objects.bulk_create(rows)
            _imported_count_add(batch, rows)
        return [row.pk for row in rows]
    except IntegrityError:
        pass
    ids: list[int | None] = []
    for row in rows:
        row.pk = None
        try:
            with transaction.atomic():
                row.save(force_insert=True)
                _imported_count_add(batch, [row])
            ids.append(row.pk)
        except IntegrityError:
            ids.append(None)
    return ids


def _image_row(batch: ImportBatch, checked: _Checked, storage_name: str) -> SourceImage:
    return source_image_row(
        dataset=batch.dataset,
        file=storage_name,
        original_name=checked.name,
        sha256=checked.sha,
        byte_size=checked.size,
        info=checked.info,
        batch=batch,
        label=checked.guess.label,
        metadata=checked.guess.metadata,
    )


def _imported_count_add(batch: ImportBatch, rows: list[SourceImage]) -> None:
    """Count rows just written, in the database (inside their transaction) and on `batch`
    (the in-memory copy is only read after the transaction committed)."""
    labelled = sum(1 for row in rows if row.label)
    ImportBatch.objects.filter(pk=batch.pk).update(
        imported_count=F("imported_count") + len(rows), labelled_count=F("labelled_count") + labelled
    )
    batch.imported_count += len(rows)
    batch.labelled_count += labelled


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


def original_store(*, dataset: Dataset, sha256: str, data: bytes, extension: str) -> tuple[str, bool]:
    """Store an original photo unchanged under its content-addressed name, once per content:
    the name and whether this call wrote the file. Storage errors (STORAGE_ERRORS) propagate."""
    storage_name = original_storage_name(dataset=dataset, sha256=sha256, extension=extension)
    if default_storage.exists(storage_name):
        return storage_name, False
    saved = default_storage.save(storage_name, ContentFile(data))
    if saved != storage_name:  # written concurrently by another import; keep the one copy
        default_storage.delete(saved)
        return storage_name, False
    return storage_name, True


def source_image_row(
    *, dataset: Dataset, file: str, original_name: str, sha256: str, byte_size: int, info: ImageInfo, **fields
) -> SourceImage:
    """The SourceImage (not saved) of an original stored as `file`; `fields` are its other fields
    (batch, label, metadata, status...). The import writes these a group at a time."""
    return SourceImage(
        dataset=dataset,
        file=file,
        original_name=original_name[:1000],
        sha256=sha256,
        byte_size=byte_size,
        width=info.width,
        height=info.height,
        image_format=info.image_format,
        **fields,
    )


def source_image_add(
    *,
    dataset: Dataset,
    data: bytes,
    original_name: str,
    info: ImageInfo | None = None,
    sha256: str | None = None,
    **fields,
) -> tuple[SourceImage, bool]:
    """Add one photo to a dataset: its original stored (original_store) and its SourceImage
    created. Returns the row and whether this call wrote the file. `info` defaults to what the
    import's check-decode reads (ImageRejected for a file that is no image); `sha256` to the
    data's own (a caller adding one photo several times gives each its own); `fields` as
    source_image_row's. If the row cannot be created (another import added the photo meanwhile),
    a file this call wrote is deleted again. Storage errors (STORAGE_ERRORS) propagate."""
    sha256 = sha256 or hashlib.sha256(data).hexdigest()
    if info is None:
        _pixels, info = decode(data, min_longest=IMPORT_CHECK_SIDE)
    name, written = original_store(dataset=dataset, sha256=sha256, data=data, extension=info.extension)
    image = source_image_row(
        dataset=dataset, file=name, original_name=original_name, sha256=sha256, byte_size=len(data), info=info, **fields
    )
    try:
        image.save(force_insert=True)
    except Exception:
        if written:
            try:
                default_storage.delete(name)
            except STORAGE_ERRORS:  # the row's error is the one to raise; a stray original is reused
                logger.warning("could not delete original %s again", name, exc_info=True)
        raise
    return image, written


def _issue(batch: ImportBatch, name: str, kind: str, reason: str) -> None:
    ImportIssue.objects.create(batch=batch, file_name=name[:1000], kind=kind, reason=reason)
    if kind == ImportIssue.Kind.DUPLICATE:
        batch.duplicate_count += 1
        ImportBatch.objects.filter(pk=batch.pk).update(duplicate_count=F("duplicate_count") + 1)
    elif kind == ImportIssue.Kind.SKIPPED:
        batch.skipped_count += 1
        ImportBatch.objects.filter(pk=batch.pk).update(skipped_count=F("skipped_count") + 1)
