"""The 68 dlib landmarks of a face, computed on the original pixels inside a detection box.
The predictor is loaded once per process."""

from __future__ import annotations

import threading
from functools import cache

import dlib
import numpy as np

from curator.faces.model_files import SHAPE_PREDICTOR_68, model_path

_lock = threading.Lock()


@cache
def shape_predictor() -> dlib.shape_predictor:
    return dlib.shape_predictor(model_path(SHAPE_PREDICTOR_68))


def landmarks_68(rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """68 (x, y) points in the photo's pixels, float64, for a box (left, top, right, bottom)."""
    left, top, right, bottom = box
    height, width = rgb.shape[:2]
    # Work on a region around the box rather than the whole photo: a 10000x10000 photo would
    # otherwise be copied for every face. The predictor only reads pixels near the box, so a
    # margin of half the box on each side gives the same points.
    margin_x, margin_y = (right - left) // 2 + 2, (bottom - top) // 2 + 2
    x0, y0 = max(0, left - margin_x), max(0, top - margin_y)
    x1, y1 = min(width, right + margin_x), min(height, bottom + margin_y)
    region = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    rect = dlib.rectangle(int(left - x0), int(top - y0), int(right - x0 - 1), int(bottom - y0 - 1))
    with _lock:
        shape = shape_predictor()(region, rect)
    points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
    points += (x0, y0)
    return points
