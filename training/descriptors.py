"""dlib's 128-D face descriptor (the ResNet shipped with face-recognition-models) of aligned crops,
computed once per face and cached in FaceDescriptor.

An aligned crop is already a face, so instead of detecting again we run the 5-point landmark
predictor on the whole crop rectangle and let dlib cut its own 150 px chip from those points."""

import threading
from collections.abc import Callable, Iterable

import numpy as np

from curator.faces.model_files import FACE_DESCRIPTOR_RESNET, SHAPE_PREDICTOR_5, model_path

_local = threading.local()


def _dlib_models():
    # One predictor and network per thread: dlib objects are not documented as thread-safe.
    models = getattr(_local, "models", None)
    if models is None:
        import dlib

        models = (
            dlib,
            dlib.shape_predictor(model_path(SHAPE_PREDICTOR_5)),
            dlib.face_recognition_model_v1(model_path(FACE_DESCRIPTOR_RESNET)),
        )
        _local.models = models
    return models


def descriptor_of_crop(crop: np.ndarray) -> np.ndarray:
    """128 float32 values for one RGB uint8 crop."""
    dlib, predictor, network = _dlib_models()
    crop = np.ascontiguousarray(crop, dtype=np.uint8)
    height, width = crop.shape[:2]
    shape = predictor(crop, dlib.rectangle(0, 0, width - 1, height - 1))
    return np.asarray(network.compute_face_descriptor(crop, shape), dtype=np.float32)


def descriptors_of_crops(crops: Iterable[np.ndarray], batch: int = 32) -> np.ndarray:
    """[N, 128] float32. dlib's batch call is about a quarter faster than one call per crop and
    gives identical values."""
    dlib, predictor, network = _dlib_models()
    crops = [np.ascontiguousarray(c, dtype=np.uint8) for c in crops]
    rows: list[np.ndarray] = []
    for start in range(0, len(crops), batch):
        part = crops[start : start + batch]
        shapes = [
            dlib.full_object_detections([predictor(c, dlib.rectangle(0, 0, c.shape[1] - 1, c.shape[0] - 1))])
            for c in part
        ]
        for result in network.compute_face_descriptor(part, shapes):
            rows.append(np.asarray(result[0], dtype=np.float32))
    return np.stack(rows) if rows else np.zeros((0, 128), dtype=np.float32)


def decode_crop(data: bytes) -> np.ndarray:
    """RGB uint8 array of an image file's bytes (PIL, the same decoder the predict side uses)."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def descriptors_for_faces(
    faces: list[tuple[int, str]],
    *,
    progress: Callable[[int, int], None] | None = None,
    chunk: int = 64,
) -> dict[int, np.ndarray]:
    """Descriptors of (face_id, crop path) pairs, from the FaceDescriptor cache where it is
    current (same crop path), computed and cached otherwise."""
    from training.data import read_crop_bytes
    from training.models import FaceDescriptor

    result: dict[int, np.ndarray] = {}
    wanted = dict(faces)
    for row in FaceDescriptor.objects.filter(face_id__in=list(wanted)).only("face_id", "vector", "crop"):
        if row.crop == wanted[row.face_id]:
            result[row.face_id] = np.frombuffer(bytes(row.vector), dtype=np.float32).copy()
    todo = [(fid, path) for fid, path in faces if fid not in result]
    done = len(result)
    if progress:
        progress(done, len(faces))
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        blobs = read_crop_bytes([path for _, path in part])
        vectors = descriptors_of_crops(decode_crop(b) for b in blobs)
        for (fid, path), vector in zip(part, vectors, strict=True):
            result[fid] = vector
            FaceDescriptor.objects.update_or_create(
                face_id=fid, defaults={"vector": vector.astype(np.float32).tobytes(), "crop": path}
            )
        done += len(part)
        if progress:
            progress(done, len(faces))
    return result
