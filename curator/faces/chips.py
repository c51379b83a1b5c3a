"""dlib's own face chips, cut from the original photo: the 5-point landmarks of a face box and the
chips dlib's networks were trained on (150 px with padding 0.25 for the 128-D descriptor ResNet,
which embeddings.network runs; 32 px with padding 0.2 for the pretrained gender network). Import
and predict both come here, so a face gets the same chip whichever path it takes.

The OpenFace crop (curator.faces.alignment) is tighter and framed differently; dlib's ResNet
computed on it lost 3-5 accuracy points on the dev set against its own chip."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache

import dlib
import numpy as np

from curator.faces.model_files import SHAPE_PREDICTOR_5, model_path

DESCRIPTOR_CHIP_SIZE = 150
DESCRIPTOR_CHIP_PADDING = 0.25
# Tells cached descriptors computed another way (e.g. from the aligned crop) from these.
DESCRIPTOR_METHOD = "dlib-chip150-pad0.25-flip"

_lock = threading.Lock()


@cache
def five_point_predictor() -> dlib.shape_predictor:
    return dlib.shape_predictor(model_path(SHAPE_PREDICTOR_5))


@dataclass
class FaceShape:
    """A face's 5-point landmarks in a region of the photo around its box (a large photo is not
    copied whole for every face: dlib converts the array it is given)."""

    region: np.ndarray
    shape: dlib.full_object_detection


def five_point_shape(rgb: np.ndarray, box: tuple[int, int, int, int]) -> FaceShape:
    left, top, right, bottom = (int(v) for v in box)
    height, width = rgb.shape[:2]
    # The chips reach about 1.5 box sides around the face centre; a margin of one box side keeps
    # every chip pixel a real pixel of the photo, so region and whole photo give the same chip.
    margin_x, margin_y = (right - left) + 2, (bottom - top) + 2
    x0, y0 = max(0, left - margin_x), max(0, top - margin_y)
    x1, y1 = min(width, right + margin_x), min(height, bottom + margin_y)
    region = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    rect = dlib.rectangle(left - x0, top - y0, right - x0 - 1, bottom - y0 - 1)
    with _lock:
        shape = five_point_predictor()(region, rect)
    return FaceShape(region=region, shape=shape)


def chip(face: FaceShape, size: int, padding: float) -> np.ndarray:
    """dlib's aligned chip of the face, uint8 RGB [size, size, 3]."""
    with _lock:
        return np.asarray(dlib.get_face_chip(face.region, face.shape, size=size, padding=padding))


def flipped(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[:, ::-1])
