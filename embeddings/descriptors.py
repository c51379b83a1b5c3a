"""Face features (embeddings.features) for faces of the database, computed once from each face's
original photo and cached in FaceDescriptor.

A row is current when it was computed by today's method from the same photo and landmark box;
anything else is computed again. Decoding photos and cutting dlib's chips hold the GIL, so a
training job computes missing features in a pool of processes (CURATOR_FEATURE_PROCESSES,
spawned: the worker has threads and TensorFlow may be loaded) when there are enough photos to
pay for starting it; each group of photos goes through the networks as one batch.

    features = features_for_faces([face.pk, ...], progress=callback)   # {face_id: FaceFeatures}
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from multiprocessing import get_context

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F

from curator.faces.chips import DESCRIPTOR_METHOD
from curator.faces.pipeline import landmark_box
from curator.models import Dataset, Face
from embeddings import pretrained
from embeddings.features import FaceFeatures, NetworkFiles, compute_photos, cut_chips
from embeddings.models import DescriptorSet, FaceDescriptor

# Below this many photos to compute, starting processes (about 2 s each) costs more than it saves.
POOL_MIN_PHOTOS = 48
PHOTOS_PER_TASK = 16

Box = tuple[int, int, int, int]
# One photo to compute: its storage path and the (face id, landmark box) of each face wanted.
PhotoWork = tuple[str, list[tuple[int, Box]]]


def _source(path: str, box: Box) -> str:
    return f"{path}#{','.join(str(v) for v in box)}"


def _vector(values: bytes | memoryview | None) -> np.ndarray | None:
    return None if values is None else np.frombuffer(bytes(values), dtype=np.float32).copy()


def _work_of(face_ids: list[int]) -> tuple[dict[int, str], list[PhotoWork]]:
    """Each face's cache key, and the faces grouped by photo (a photo is decoded once)."""
    rows = Face.objects.filter(pk__in=face_ids).values_list(
        "pk",
        "image__file",
        "image__width",
        "image__height",
        "box_left",
        "box_top",
        "box_right",
        "box_bottom",
        "whole_image",
    )
    sources: dict[int, str] = {}
    by_photo: dict[str, list[tuple[int, Box]]] = defaultdict(list)
    for pk, path, width, height, left, top, right, bottom, whole in rows:
        box = landmark_box(width=width, height=height, box=(left, top, right, bottom), whole_image=whole)
        sources[pk] = _source(path, box)
        by_photo[path].append((pk, box))
    return sources, list(by_photo.items())


def features_for_faces(
    face_ids: list[int],
    *,
    descriptor: bool = True,
    progress: Callable[[int, int], None] | None = None,
    region_hash: bool = False,
    processes: int | None = None,
) -> dict[int, FaceFeatures]:
    """Features of the faces, from the cache where current, computed (and cached) otherwise.
    `descriptor=False` is enough for the pretrained network alone (seconds instead of minutes for
    a new dataset's pre-labels); a later call that wants the descriptor completes those rows.
    `region_hash=True` also redoes rows stored before the region pHash existed (the embed
    queue's batches; training does not need it). `processes` overrides
    CURATOR_FEATURE_PROCESSES (1 in a Celery prefork child, which may not start processes).
    A face whose photo cannot be read is left out of the result."""
    face_ids = list(dict.fromkeys(face_ids))
    sources, photos = _work_of(face_ids)
    network_ok = pretrained.available()[0]
    result: dict[int, FaceFeatures] = {}
    cached = FaceDescriptor.objects.filter(face_id__in=face_ids, method=DESCRIPTOR_METHOD).values_list(
        "face_id", "source", "vector", "vector_flipped", "pretrained", "region_phash", "region_phash_mirrored"
    )
    for face_id, source, vector, flipped, gender, phash, phash_mirrored in cached:
        has_descriptor = bool(vector) and len(vector) > 0
        # A row computed while the pretrained network was missing is redone once it is back.
        if (
            source == sources.get(face_id)
            and (gender is not None or not network_ok)
            and (has_descriptor or not descriptor)
            and (phash is not None or not region_hash)
        ):
            result[face_id] = FaceFeatures(
                _vector(vector) if has_descriptor else None,
                _vector(flipped) if has_descriptor else None,
                _vector(gender),
                phash,
                phash_mirrored,
            )
    todo = [(path, [(pk, box) for pk, box in faces if pk not in result]) for path, faces in photos]
    todo = [(path, faces) for path, faces in todo if faces]
    total, done = len(sources), len(result)
    if progress:
        progress(done, total)
    for computed in _compute(todo, descriptor=descriptor, processes=processes):
        _store(computed, sources)
        result.update(computed)
        done += len(computed)
        if progress:
            progress(done, total)
    return result


def _store(computed: dict[int, FaceFeatures], sources: dict[int, str]) -> None:
    if not computed:
        return
    _store_rows(computed, sources)
    # The datasets' nearest-neighbour indexes and identity clusters are keyed by this stamp.
    datasets = set(Face.objects.filter(pk__in=list(computed)).values_list("dataset_id", flat=True))
    descriptor_stamp_bump(dataset_ids=datasets)


def descriptor_stamp_bump(*, dataset_ids) -> None:
    for dataset_id in sorted(dataset_ids):
        DescriptorSet.objects.get_or_create(dataset_id=dataset_id)
    DescriptorSet.objects.filter(dataset_id__in=list(dataset_ids)).update(stamp=F("stamp") + 1)


class _StampBumpOnCommit:
    """One pending bump per transaction, however many faces it touches (descriptor_stamp_bump_on_commit)."""

    def __init__(self) -> None:
        self.dataset_ids: set[int] = set()
        self.ran = False

    def __call__(self) -> None:
        self.ran = True
        # The dataset itself may be gone by then (its DescriptorSet with it): nothing to bump.
        alive = set(Dataset.objects.filter(pk__in=self.dataset_ids).values_list("pk", flat=True))
        if alive:
            descriptor_stamp_bump(dataset_ids=alive)


def descriptor_stamp_bump_on_commit(dataset_id: int) -> None:
    """Bump the dataset's descriptor stamp once the current transaction commits: faces were
    aligned, re-aligned or removed, so what is cached per stamp (vector indexes, the face count)
    must not answer from before. A transaction that removes a thousand faces bumps once; one that
    rolls back bumps nothing (Django drops its on-commit callbacks)."""
    connection = transaction.get_connection()
    if connection.in_atomic_block:
        for _savepoints, callback, *_ in connection.run_on_commit:
            # (A test's captureOnCommitCallbacks runs callbacks early and leaves them listed.)
            if isinstance(callback, _StampBumpOnCommit) and not callback.ran:
                callback.dataset_ids.add(dataset_id)
                return
    bump = _StampBumpOnCommit()
    bump.dataset_ids.add(dataset_id)
    transaction.on_commit(bump)


def _store_rows(computed: dict[int, FaceFeatures], sources: dict[int, str]) -> None:
    FaceDescriptor.objects.bulk_create(
        [
            FaceDescriptor(
                face_id=face_id,
                # Empty when only the pretrained network was wanted (see features_for_faces).
                vector=b"" if f.descriptor is None else f.descriptor.astype(np.float32).tobytes(),
                vector_flipped=b""
                if f.descriptor_flipped is None
                else f.descriptor_flipped.astype(np.float32).tobytes(),
                pretrained=None if f.pretrained is None else f.pretrained.astype(np.float32).tobytes(),
                source=sources[face_id],
                method=DESCRIPTOR_METHOD,
                region_phash=f.region_phash,
                region_phash_mirrored=f.region_phash_mirrored,
            )
            for face_id, f in computed.items()
        ],
        update_conflicts=True,
        unique_fields=["face"],
        update_fields=[
            "vector",
            "vector_flipped",
            "pretrained",
            "source",
            "method",
            "region_phash",
            "region_phash_mirrored",
        ],
    )


def _compute(todo: list[PhotoWork], *, descriptor: bool, processes: int | None = None):
    """Yields {face_id: FaceFeatures} per group of photos as they are done."""
    max_pixels = settings.CURATOR_MAX_IMAGE_PIXELS
    # One onnxruntime thread per pool process: the pool already uses a process per core.
    pooled = _pool_size(todo, processes) > 1
    files = network_files(threads=1 if pooled else None)
    yield from _per_group(todo, compute_photos, processes, max_pixels=max_pixels, files=files, descriptor=descriptor)


def chips_for_faces(
    face_ids: list[int], *, processes: int | None = None, progress: Callable[[int, int], None] | None = None
) -> dict[int, np.ndarray]:
    """dlib's 150-px chip (padding 0.25) of each face, cut from its original photo: what the face
    network sees (the `finetune` model trains and predicts on these). Not cached: 67 kB a face.
    A face whose photo cannot be read is left out."""
    _, photos = _work_of(list(dict.fromkeys(face_ids)))
    result: dict[int, np.ndarray] = {}
    for cut in _per_group(photos, cut_chips, processes, max_pixels=settings.CURATOR_MAX_IMAGE_PIXELS):
        result.update(cut)
        if progress:
            progress(len(result), len(face_ids))
    return result


def chip_file_path(*, dataset_id: int, face_id: int, source: str) -> str:
    """Where a face's chip is kept: under its dataset's folder (deleted with it), named by what
    it was cut from (photo, landmark box) and how (DESCRIPTOR_METHOD), so a chip of another photo,
    box or method is never read as this one."""
    key = hashlib.sha256(f"{DESCRIPTOR_METHOD}|{source}".encode()).hexdigest()[:16]
    return f"datasets/{dataset_id}/chips/{face_id}-{key}.png"


def chip_files_for_faces(
    face_ids: list[int],
    *,
    dataset_id: int,
    processes: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[int, str]:
    """The storage path of a lossless PNG of each face's chip (as chips_for_faces cuts it), for the
    faces of one dataset: a training job streams these instead of holding every chip in memory
    (67 kB a face). A chip is cut once, from its photo, and kept until its photo, box or the
    method changes; the photos are cut a group at a time (bounded memory). A face whose photo
    cannot be read is left out."""
    import cv2

    face_ids = list(dict.fromkeys(face_ids))
    sources, photos = _work_of(face_ids)
    paths = {pk: chip_file_path(dataset_id=dataset_id, face_id=pk, source=source) for pk, source in sources.items()}
    with ThreadPoolExecutor(max_workers=8) as threads:
        kept = list(threads.map(default_storage.exists, paths.values()))
    result = {pk: path for (pk, path), ok in zip(paths.items(), kept, strict=True) if ok}
    todo = [(photo, [(pk, box) for pk, box in faces if pk not in result]) for photo, faces in photos]
    todo = [(photo, faces) for photo, faces in todo if faces]
    if progress:
        progress(len(result), len(face_ids))

    def save(item: tuple[int, np.ndarray]) -> tuple[int, str]:
        face_id, chip = item
        ok, png = cv2.imencode(".png", np.ascontiguousarray(chip[:, :, ::-1]))  # OpenCV writes BGR
        if not ok:
            raise ValueError(f"the chip of face {face_id} could not be encoded as PNG")
        return face_id, default_storage.save(paths[face_id], ContentFile(png.tobytes()))

    for cut in _per_group(todo, cut_chips, processes, max_pixels=settings.CURATOR_MAX_IMAGE_PIXELS):
        with ThreadPoolExecutor(max_workers=8) as threads:
            result.update(threads.map(save, cut.items()))
        if progress:
            progress(len(result), len(face_ids))
    return result


def _pool_size(todo: list, processes: int | None) -> int:
    processes = max(1, settings.CURATOR_FEATURE_PROCESSES if processes is None else processes)
    return 1 if len(todo) < POOL_MIN_PHOTOS else min(processes, -(-len(todo) // PHOTOS_PER_TASK))


def _per_group(todo: list[PhotoWork], compute: Callable, processes: int | None, **kwargs):
    """compute(photos' bytes and faces, **kwargs) per group of PHOTOS_PER_TASK photos, in a spawned
    pool when there are enough photos to pay for starting it; yields each group's result."""
    if not todo:
        return
    groups = [todo[i : i + PHOTOS_PER_TASK] for i in range(0, len(todo), PHOTOS_PER_TASK)]
    processes = _pool_size(todo, processes)
    if processes == 1:
        for group in groups:
            yield compute(_read(group), **kwargs)
        return
    with ProcessPoolExecutor(max_workers=processes, mp_context=get_context("spawn")) as pool:
        # Read the next groups while the pool computes (storage may be remote); keep a few in flight.
        pending = set()
        for group in groups:
            pending.add(pool.submit(compute, _read(group), **kwargs))
            if len(pending) >= 2 * processes:
                finished = next(as_completed(pending))
                pending.remove(finished)
                yield finished.result()
        for finished in as_completed(pending):
            yield finished.result()


def network_files(*, threads: int | None) -> NetworkFiles:
    """The networks' files, found through the settings here, for processes that have none. The
    pretrained network's is "" when it is not installed."""
    from embeddings.network.runtime import network_file

    try:
        gender = str(pretrained.model_file())
    except pretrained.PretrainedModelError:
        gender = ""
    return NetworkFiles(face_network=network_file(), pretrained=gender, threads=threads)


def _read(group: list[PhotoWork]) -> list[tuple[bytes | None, list[tuple[int, Box]]]]:
    def read(path: str) -> bytes | None:
        try:
            with default_storage.open(path, "rb") as handle:
                return handle.read()
        except (FileNotFoundError, OSError):
            return None

    with ThreadPoolExecutor(max_workers=8) as threads:
        blobs = list(threads.map(read, [path for path, _ in group]))
    return [(blob, faces) for blob, (_, faces) in zip(blobs, group, strict=True)]
