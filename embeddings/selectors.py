"""Reads over the face descriptors: a dataset's vectors, nearest neighbours, progress.

The vector of a face used for similarity is dlib's descriptor of its chip averaged with the
descriptor of the mirrored chip (a mirrored copy of a photo then lands on nearly the same point),
and distances are Euclidean as dlib uses them: below 0.6 two faces are probably one person.

Nearest neighbours: brute force over a float32 matrix kept per dataset in this process, keyed by
the dataset's descriptor stamp (see README, "Face embeddings": ~5 ms for 100,000 x 128); from
embeddings.ann.ANN_MIN_FACES faces on, an approximate (faiss IVF-Flat) index kept in storage and updated
incrementally (embeddings.ann), brute force answering while it is not there yet.

    ids, vectors = dataset_vectors(dataset=dataset)
    faces_nearest(dataset=dataset, vector=vectors[0], k=20)   # [(face id, distance), ...]
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import numpy as np
from django.db.models import F, Q

from curator.faces.chips import DESCRIPTOR_METHOD
from curator.faces.pipeline import landmark_box
from curator.models import Dataset, Face
from embeddings.models import DescriptorSet, FaceDescriptor, FaceIdentity

DIMENSIONS = 128
# dlib's own threshold: two descriptors closer than this are probably the same person.
SAME_PERSON_DISTANCE = 0.6


def source_of(path: str, box: tuple[int, int, int, int]) -> str:
    """The cache key of a face's descriptor: its photo and the box its landmarks were found in."""
    return f"{path}#{','.join(str(v) for v in box)}"


def _similarity_vector(vector: bytes, flipped: bytes) -> np.ndarray:
    a = np.frombuffer(bytes(vector), dtype=np.float32)
    b = np.frombuffer(bytes(flipped), dtype=np.float32)
    return (a + b) / 2 if len(b) == len(a) else a.copy()


def _current_vectors(dataset_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of the dataset's faces whose stored descriptor is current: today's method,
    computed from the face's present photo and box, with the 128-D vector (not only the
    pretrained network's probabilities)."""
    rows = (
        FaceDescriptor.objects.filter(face__dataset_id=dataset_id, method=DESCRIPTOR_METHOD)
        .exclude(vector=b"")
        .values_list(
            "face_id",
            "source",
            "vector",
            "vector_flipped",
            "face__image__file",
            "face__image__width",
            "face__image__height",
            "face__box_left",
            "face__box_top",
            "face__box_right",
            "face__box_bottom",
            "face__whole_image",
        )
        .order_by("face_id")
        .iterator(chunk_size=5000)
    )
    ids, vectors = [], []
    for face_id, source, vector, flipped, path, width, height, left, top, right, bottom, whole in rows:
        box = landmark_box(width=width, height=height, box=(left, top, right, bottom), whole_image=whole)
        if source != source_of(path, box) or len(vector) != DIMENSIONS * 4:
            continue
        ids.append(face_id)
        vectors.append(_similarity_vector(vector, flipped))
    if not ids:
        return np.zeros(0, dtype=np.int64), np.zeros((0, DIMENSIONS), dtype=np.float32)
    return np.asarray(ids, dtype=np.int64), np.stack(vectors).astype(np.float32)


class VectorIndex:
    """Exact nearest neighbours by brute force: one matrix-vector product and a partial sort.
    Squared norms are kept so a query is |x|^2 - 2 x.v + |v|^2."""

    def __init__(self, ids: np.ndarray, vectors: np.ndarray, stamp: tuple = ()):
        self.ids = ids
        self.stamp = stamp
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.norms = np.einsum("ij,ij->i", self.vectors, self.vectors)
        self.position = {int(face_id): i for i, face_id in enumerate(ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def squared(self, vector: np.ndarray) -> np.ndarray:
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        return self.norms - 2 * (self.vectors @ v) + float(v @ v)

    def distances(self, vector: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(self.squared(vector), 0))

    def query(self, vector: np.ndarray, *, k: int, exclude_ids=()) -> list[tuple[int, float]]:
        if len(self) == 0 or k <= 0:
            return []
        # Squared distances are ranked; only the k kept get a square root.
        squared = self.squared(vector)
        excluded = [self.position[i] for i in map(int, exclude_ids) if i in self.position]
        if excluded:
            squared[excluded] = np.inf
        wanted = min(k, len(self) - len(excluded))
        if wanted <= 0:
            return []
        nearest = np.argpartition(squared, wanted - 1)[:wanted] if wanted < len(self) else np.arange(len(self))
        nearest = nearest[np.argsort(squared[nearest], kind="stable")]
        distances = np.sqrt(np.maximum(squared[nearest], 0))
        return [(int(self.ids[i]), float(d)) for i, d in zip(nearest, distances, strict=True) if np.isfinite(d)]


# A few datasets' matrices per process (100,000 faces is 51 MB), least recently used dropped.
_CACHE_SIZE = 4
_cache: OrderedDict[int, tuple[tuple, VectorIndex]] = OrderedDict()
_cache_lock = threading.Lock()


# Within one GET request the stamp is read once per dataset (embeddings.middleware): a "more like
# this" page asks for it several times and should see one snapshot of the descriptors.
_stamps_of_this_request: ContextVar[dict[int, tuple] | None] = ContextVar("descriptor_stamps", default=None)


@contextmanager
def descriptor_stamps_read_once():
    """Inside it, descriptor_stamp reads each dataset's stamp once and answers the same after."""
    token = _stamps_of_this_request.set({})
    try:
        yield
    finally:
        _stamps_of_this_request.reset(token)


def descriptor_stamp(dataset_id: int) -> tuple:
    """Changes whenever the dataset's faces or current descriptors may have: DescriptorSet.stamp,
    bumped when a descriptor batch is stored and when faces are aligned, re-aligned or removed
    (embeddings.apps). One indexed row read: it used to add a count of the dataset's faces, which
    took ~180 ms of every "more like this" at a million faces."""
    memo = _stamps_of_this_request.get()
    if memo is not None and dataset_id in memo:
        return memo[dataset_id]
    stamp = DescriptorSet.objects.filter(dataset_id=dataset_id).values_list("stamp", flat=True).first() or 0
    result = (stamp,)
    if memo is not None:
        memo[dataset_id] = result
    return result


def dataset_index(dataset_id: int) -> VectorIndex:
    key = descriptor_stamp(dataset_id)
    with _cache_lock:
        hit = _cache.get(dataset_id)
        if hit and hit[0] == key:
            _cache.move_to_end(dataset_id)
            return hit[1]
    index = VectorIndex(*_current_vectors(dataset_id), stamp=key)
    with _cache_lock:
        _cache[dataset_id] = (key, index)
        _cache.move_to_end(dataset_id)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return index


def dataset_vectors(*, dataset: Dataset, face_ids=None, include_excluded: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(face ids int64 [n], vectors float32 [n, 128]) of the dataset's faces that have a current
    descriptor, in face id order; `face_ids` narrows them, `include_excluded=False` leaves out
    excluded faces."""
    index = dataset_index(dataset.pk)
    keep = np.ones(len(index), dtype=bool)
    if face_ids is not None:
        keep &= np.isin(index.ids, np.fromiter((int(i) for i in face_ids), dtype=np.int64))
    if not include_excluded:
        excluded = np.fromiter(
            Face.objects.filter(dataset=dataset, is_excluded=True).values_list("pk", flat=True), dtype=np.int64
        )
        keep &= ~np.isin(index.ids, excluded)
    return index.ids[keep].copy(), index.vectors[keep].copy()


def _nearest(dataset_id: int, vector: np.ndarray, *, k: int, exclude_ids=()) -> list[tuple[int, float]]:
    """The approximate index where the dataset has one (embeddings.ann), brute force otherwise."""
    from embeddings.ann import dataset_ann

    index = dataset_index(dataset_id)
    ann = dataset_ann(dataset_id, index.ids, index.vectors, index.stamp)
    return (ann or index).query(vector, k=k, exclude_ids=exclude_ids)


def faces_nearest(*, dataset: Dataset, vector: np.ndarray, k: int = 20, exclude_ids=()) -> list[tuple[int, float]]:
    """The k faces of the dataset nearest to `vector` (a 128-D descriptor, e.g. of an uploaded
    photo), as (face id, distance), nearest first."""
    return _nearest(dataset.pk, vector, k=k, exclude_ids=exclude_ids)


def face_vector(face: Face) -> np.ndarray | None:
    """The face's similarity vector, None while its descriptor is missing or stale."""
    index = dataset_index(face.dataset_id)
    position = index.position.get(face.pk)
    return None if position is None else index.vectors[position]


def face_neighbours(*, face: Face, k: int = 20) -> list[tuple[int, float]]:
    """The k faces nearest to `face` (itself left out), nearest first; [] while it has no
    current descriptor."""
    vector = face_vector(face)
    if vector is None:
        return []
    return _nearest(face.dataset_id, vector, k=k, exclude_ids=(face.pk,))


# Per dataset: its descriptor stamp -> its aligned faces, as counted at that stamp.
_faces_counted: dict[int, tuple[tuple, int]] = {}


def _aligned_faces(dataset_id: int) -> int:
    """The dataset's aligned faces, counted again only when the descriptor stamp moved (faces
    added, removed or re-aligned bump it: embeddings.apps). A "more like this" grid asks on every
    click, and counting a million faces takes ~150 ms."""
    key = descriptor_stamp(dataset_id)
    hit = _faces_counted.get(dataset_id)
    if hit is not None and hit[0] == key:
        return hit[1]
    faces = Face.objects.filter(dataset_id=dataset_id).exclude(crop="").count()
    with _cache_lock:
        _faces_counted[dataset_id] = (key, faces)
    return faces


def descriptor_progress(*, dataset: Dataset) -> dict:
    """{"faces": aligned faces, "done": faces with a current descriptor, "running": descriptor
    batches queued or computing} for the dataset page."""
    faces = _aligned_faces(dataset.pk)
    done = len(dataset_index(dataset.pk))
    pending = DescriptorSet.objects.filter(dataset=dataset).values_list("batches_pending", flat=True).first() or 0
    return {"faces": faces, "done": min(done, faces), "running": pending > 0 and done < faces}


# --- Near-duplicates and identities ---------------------------------------------------------------


def duplicate_records(*, dataset: Dataset, face_ids=None) -> list:
    """embeddings.duplicates.FaceRecord of the dataset's faces (or of `face_ids`): the sha256 of
    every face's photo, the descriptor and region hashes where current."""
    from embeddings.duplicates import FaceRecord

    index = dataset_index(dataset.pk)
    faces = Face.objects.filter(dataset=dataset)
    if face_ids is not None:
        faces = faces.filter(pk__in=list(face_ids))
    # In face id order, as dataset_index's vectors: the duplicates then reuse the identity
    # clusters' neighbour graph (embeddings.graph.nearest_graph) instead of computing it again.
    rows = faces.values_list("pk", "image_id", "image__sha256").order_by("pk")
    hashes = dict(
        (f, (h, m))
        for f, h, m in FaceDescriptor.objects.filter(face__in=faces, region_phash__isnull=False).values_list(
            "face_id", "region_phash", "region_phash_mirrored"
        )
    )
    out = []
    for face_id, image_id, sha256 in rows:
        position = index.position.get(face_id)
        # Hashes only alongside a current descriptor: both come from the same computation.
        h, m = hashes.get(face_id, (None, None)) if position is not None else (None, None)
        vector = None if position is None else index.vectors[position]
        out.append(FaceRecord(face_id, image_id, sha256, vector, h, m))
    return out


def dataset_duplicates(*, dataset: Dataset) -> tuple[list[list[int]], dict]:
    """(groups, pairs) of the dataset's near-duplicates (embeddings.duplicates), cached in this
    process per descriptor stamp."""
    from embeddings.duplicates import complete_linkage_groups, pair_evidence

    key = ("dupes", dataset.pk, descriptor_stamp(dataset.pk))
    with _cache_lock:
        hit = _duplicates_cache.get(dataset.pk)
    if hit and hit[0] == key:
        return hit[1]
    pairs = pair_evidence(duplicate_records(dataset=dataset))
    value = (complete_linkage_groups(pairs), pairs)
    with _cache_lock:
        _duplicates_cache[dataset.pk] = (key, value)
        while len(_duplicates_cache) > _CACHE_SIZE:
            _duplicates_cache.pop(next(iter(_duplicates_cache)))
    return value


_duplicates_cache: dict[int, tuple[tuple, tuple]] = {}


def face_identities(*, face_ids) -> dict[int, int]:
    """{face id: identity cluster} of the faces that have one."""
    return dict(FaceIdentity.objects.filter(face_id__in=list(face_ids)).values_list("face_id", "cluster"))


# A computed identity cluster (descriptors only) larger than this share of the faces at hand, and
# than PERSON_CLUSTER_FLOOR faces, is not taken for one person (splits, leakage counts). Chinese
# whispers chains faces that dlib's network places close together without being one person: on the
# dev set's UTKFace crops (almost every face a different person) it made seven clusters of 125-353
# faces (one of 320 children, median age 4); dealt whole, three of them made 836 of the 1,031 test
# faces, and test accuracy fell to 0.80-0.84 while validation said 0.97. One group of 1 % moves a
# 15 % test split by about 7 %.
PERSON_CLUSTER_SHARE = 0.01
PERSON_CLUSTER_FLOOR = 20


@dataclass
class People:
    clusters: dict[int, int]  # {face id: cluster} of the faces whose cluster is taken for one person
    not_kept: list[int] = field(default_factory=list)  # sizes of the clusters not taken for one, largest first


def face_people(*, face_ids) -> People:
    """The identity clusters of these faces that can be taken for one person each: every cluster
    that the photos name or the curators corrected, and the clusters computed from the descriptors
    alone up to PERSON_CLUSTER_SHARE of the faces (or PERSON_CLUSTER_FLOOR)."""
    face_ids = list(face_ids)
    clusters = face_identities(face_ids=face_ids)
    sizes = Counter(clusters.values())
    cap = max(PERSON_CLUSTER_FLOOR, PERSON_CLUSTER_SHARE * len(face_ids))
    too_large = {c for c, n in sizes.items() if n > cap}
    if too_large:
        # Named (known) or moved by a curator's decision (cluster differs from the computed one).
        vouched = FaceIdentity.objects.filter(face_id__in=[f for f, c in clusters.items() if c in too_large]).filter(
            Q(known=True) | ~Q(cluster=F("computed_cluster"))
        )
        too_large -= set(vouched.values_list("cluster", flat=True))
    return People(
        clusters={f: c for f, c in clusters.items() if c not in too_large},
        not_kept=sorted((sizes[c] for c in too_large), reverse=True),
    )


def identity_leakage(*, train_ids, test_ids) -> dict:
    """How many test faces share an identity cluster with a training face: {"test": n, "leaked":
    m, "clustered": test faces that have a cluster at all}."""
    train_ids, test_ids = list(train_ids), list(test_ids)
    # The clusters a split keeps whole (face_people): a chained cluster of hundreds is not one person.
    clusters = face_people(face_ids=train_ids + test_ids).clusters
    trained = {clusters[f] for f in train_ids if f in clusters}
    clustered = [f for f in test_ids if f in clusters]
    leaked = sum(1 for f in clustered if clusters[f] in trained)
    return {"test": len(test_ids), "leaked": leaked, "clustered": len(clustered)}
