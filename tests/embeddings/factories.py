"""Descriptor rows for faces made by tests/labeling/factories.make_faces, without running dlib:
current rows (today's method, the face's photo and box) with the vectors and region hashes a
test chooses."""

from __future__ import annotations

import numpy as np

from curator.faces.chips import DESCRIPTOR_METHOD
from curator.faces.pipeline import landmark_box
from embeddings.descriptors import descriptor_stamp_bump
from embeddings.models import FaceDescriptor
from embeddings.selectors import source_of


def far_apart_vectors(n: int, *, seed: int = 0) -> np.ndarray:
    """n vectors about 1.4 apart (random directions of norm 1): no two are the same person."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, 128)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def descriptors_store(faces, *, vectors=None, phashes=None, seed: int = 0) -> None:
    """A current FaceDescriptor for each face: `vectors` (default far apart) as both the chip's
    and the mirror's descriptor, `phashes` (default none: no region hash test) as region hash."""
    vectors = far_apart_vectors(len(faces), seed=seed) if vectors is None else np.asarray(vectors, dtype=np.float32)
    rows = []
    for i, face in enumerate(faces):
        image = face.image
        box = landmark_box(width=image.width, height=image.height, box=face.box, whole_image=face.whole_image)
        h = None if phashes is None else phashes[i]
        rows.append(
            FaceDescriptor(
                face=face,
                vector=vectors[i].tobytes(),
                vector_flipped=vectors[i].tobytes(),
                pretrained=None,
                method=DESCRIPTOR_METHOD,
                source=source_of(image.file, box),
                region_phash=h,
                region_phash_mirrored=h,
            )
        )
    FaceDescriptor.objects.bulk_create(rows)
    descriptor_stamp_bump(dataset_ids={f.dataset_id for f in faces})


def near(vector: np.ndarray, distance: float, *, axis: int = 0) -> np.ndarray:
    """`vector` moved by exactly `distance` along one axis."""
    out = np.array(vector, dtype=np.float32)
    out[axis] += distance
    return out


def duplicates_compute_now(dataset) -> None:
    """The near-duplicate groups of the dataset's descriptors stored as the embed worker stores
    them (its task's work, run here): for tests of what the duplicates page shows."""
    from embeddings import duplicate_jobs

    row = duplicate_jobs.duplicates_request(dataset_id=dataset.pk, again=True)
    duplicate_jobs.duplicates_compute(job_id=row.pk)
