"""Face detection with dlib. The HOG detector (and, when a dataset asks for it, the MMOD CNN
detector) is loaded once per process and kept: loading costs far more than detecting one photo.

Detection runs on a copy of the photo scaled down to a longest side of `max_side` pixels, so a
3000x2000 photo costs about what a 1024-px one does; the boxes are mapped back to the original
pixels, where landmarks and the warp are computed."""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import dlib
import numpy as np

from curator.faces.model_files import MMOD_DETECTOR, model_path

HOG = "hog"
CNN = "cnn"

# dlib objects are not documented as thread-safe; a worker process runs one image at a time,
# but a threaded web server may call the predict pipeline concurrently.
_lock = threading.Lock()


@cache
def hog_detector() -> dlib.fhog_object_detector:
    return dlib.get_frontal_face_detector()


@cache
def cnn_detector() -> dlib.cnn_face_detection_model_v1:
    return dlib.cnn_face_detection_model_v1(model_path(MMOD_DETECTOR))


# dlib's HOG detector scans an image pyramid whose levels shrink by 5/6 (pyramid_down<6>), from
# the image it is given down to 64 px. Coarse-to-fine detection (pipeline.detect_faces) runs
# passes on copies of growing size; a later pass need scan only its levels finer than the
# previous pass's first (the rest that pass has scanned, at nearly the same scales), so no
# level is paid for twice. dlib's Python API cannot limit the levels, but the detector's
# serialized form holds the limit (scan_fhog_pyramid's max_pyramid_levels): HogLayout finds
# it, checking every field before it, and hog_detector_levels loads a copy with another limit.
PYRAMID_STEP = 6 / 5


def _dlib_int(raw: bytes, pos: int) -> tuple[int, int]:
    """One integer in dlib's serialization (a control byte: byte count, sign) and the position after it."""
    control = raw[pos]
    size = control & 0x0F
    value = int.from_bytes(raw[pos + 1 : pos + 1 + size], "little")
    return (-value if control & 0x80 else value), pos + 1 + size


def _dlib_float(raw: bytes, pos: int) -> tuple[float, int]:
    mantissa, pos = _dlib_int(raw, pos)
    exponent, pos = _dlib_int(raw, pos)
    return mantissa * 2.0**exponent, pos


@dataclass(frozen=True)
class HogLayout:
    """Where the frontal detector's serialized form keeps its pyramid limit, and its own
    duplicate test (dlib's test_box_overlap: the thresholds the detector was trained with)."""

    raw: bytes
    levels_at: int
    levels_end: int
    match_thresh: float
    overlap_thresh: float

    # object_detector version, scan_fhog_pyramid version, feature extractor, feature array size,
    # cell size, padding, window width and height: what the frontal detector has before the limit.
    EXPECTED_HEAD = (2, 1, 0, 0, 8, 0, 80, 80)

    @classmethod
    def read(cls, raw: bytes) -> HogLayout:
        pos, head = 0, []
        for _ in cls.EXPECTED_HEAD:
            value, pos = _dlib_int(raw, pos)
            head.append(value)
        if tuple(head) != cls.EXPECTED_HEAD:
            raise RuntimeError(f"unexpected layout of dlib's frontal face detector: {head}")
        levels_at = pos
        _levels, pos = _dlib_int(raw, pos)
        levels_end = pos
        for _ in range(2):  # smallest pyramid layer, width and height
            _side, pos = _dlib_int(raw, pos)
        _nuclear_norm, pos = _dlib_float(raw, pos)
        _dimensions, pos = _dlib_int(raw, pos)
        match_thresh, pos = _dlib_float(raw, pos)
        overlap_thresh, pos = _dlib_float(raw, pos)
        return cls(raw, levels_at, levels_end, match_thresh, overlap_thresh)

    def with_levels(self, levels: int) -> bytes:
        if not 0 < levels < 16:
            raise ValueError("levels must be between 1 and 15")
        return self.raw[: self.levels_at] + bytes([1, levels]) + self.raw[self.levels_end :]


@cache
def hog_layout() -> HogLayout:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "frontal.svm"
        hog_detector().save(str(path))
        return HogLayout.read(path.read_bytes())


@cache
def hog_detector_levels(levels: int) -> dlib.fhog_object_detector:
    """The frontal HOG detector scanning only the `levels` finest levels of its pyramid."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"frontal-{levels}.svm"
        path.write_bytes(hog_layout().with_levels(levels))
        return dlib.fhog_object_detector(str(path))


def hog_boxes_overlap(a: Detection, b: Detection) -> bool:
    """dlib's test_box_overlap with the frontal detector's thresholds: the test its own
    non-maximum suppression applies between pyramid levels, applied here between passes."""
    inner = max(0, min(a.right, b.right) - max(a.left, b.left)) * max(0, min(a.bottom, b.bottom) - max(a.top, b.top))
    if not inner:
        return False
    hull = (max(a.right, b.right) - min(a.left, b.left)) * (max(a.bottom, b.bottom) - min(a.top, b.top))
    layout = hog_layout()
    return (
        inner / hull > layout.match_thresh
        or inner / max(a.area, 1) > layout.overlap_thresh
        or inner / max(b.area, 1) > layout.overlap_thresh
    )


def detections_merge(*groups: list[Detection]) -> list[Detection]:
    """The detections of several passes as one: strongest first, each face once."""
    kept: list[Detection] = []
    for detection in sorted((d for group in groups for d in group), key=lambda d: -d.score):
        if not any(hog_boxes_overlap(detection, other) for other in kept):
            kept.append(detection)
    return kept


@dataclass(frozen=True)
class Detection:
    """A face box in original pixel coordinates (right/bottom exclusive) and the detector's score."""

    left: int
    top: int
    right: int
    bottom: int
    score: float

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def area(self) -> int:
        return max(self.width, 0) * max(self.height, 0)

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.left, self.top, self.right, self.bottom)


def downscale(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """A copy whose longest side is at most max_side, and the factor from it back to the original."""
    height, width = rgb.shape[:2]
    longest = max(height, width)
    if not max_side or longest <= max_side:
        return rgb, 1.0
    factor = max_side / longest
    small = cv2.resize(
        rgb, (max(1, round(width * factor)), max(1, round(height * factor))), interpolation=cv2.INTER_AREA
    )
    return small, longest / max_side


def _raw_detect(
    image: np.ndarray, detector: str, upsample: int, threshold: float = 0.0, levels: int = 0
) -> list[tuple[dlib.rectangle, float]]:
    with _lock:
        if detector == CNN:
            found = [(d.rect, float(d.confidence)) for d in cnn_detector()(image, upsample)]
            return [(rect, score) for rect, score in found if score >= threshold]
        hog = hog_detector_levels(levels) if levels else hog_detector()
        rects, scores, _ = hog.run(image, upsample, threshold)
        return list(zip(rects, (float(s) for s in scores), strict=True))


def box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes."""
    left, top = max(a[0], b[0]), max(a[1], b[1])
    right, bottom = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, right - left) * max(0, bottom - top)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def boxes_in_original(
    found: list[tuple[dlib.rectangle, float]], back: float, width: int, height: int
) -> list[Detection]:
    """dlib's boxes on a copy scaled by 1/back, in the original's pixels, clipped to it."""
    boxes = []
    for rect, score in found:
        # dlib rectangles are inclusive; ours are exclusive on the right and bottom.
        left = max(0, round(rect.left() * back))
        top = max(0, round(rect.top() * back))
        right = min(width, round((rect.right() + 1) * back))
        bottom = min(height, round((rect.bottom() + 1) * back))
        if right - left >= 2 and bottom - top >= 2:
            boxes.append(Detection(left, top, right, bottom, score))
    return boxes


def detect_on_copy(
    small: np.ndarray,
    back: float,
    *,
    width: int,
    height: int,
    detector: str = HOG,
    upsample: int = 1,
    threshold: float = 0.0,
    levels: int = 0,
) -> list[Detection]:
    """Faces on a scaled copy (grey for HOG, RGB for the CNN) of a width x height photo; with
    `levels`, HOG scans only that many of the finest pyramid levels (see PYRAMID_STEP)."""
    found = _raw_detect(np.ascontiguousarray(small), detector, upsample, threshold, levels)
    return boxes_in_original(found, back, width, height)


def detect(
    rgb: np.ndarray, *, detector: str = HOG, upsample: int = 1, max_side: int = 1024, threshold: float = 0.0
) -> list[Detection]:
    """All faces in an RGB photo, boxes in original pixels, clipped to the photo. A negative
    `threshold` also returns weaker candidates (HOG's adjust_threshold; CNN confidences)."""
    height, width = rgb.shape[:2]
    source = rgb
    if detector == HOG and rgb.ndim == 3:
        # HOG on grey pixels: about twice as fast as on RGB (where dlib takes gradients of every
        # channel) and it finds the same faces on the dev set; a grey copy is also a third as
        # much to scale down.
        source = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    small, back = downscale(source, max_side)
    return detect_on_copy(
        small, back, width=width, height=height, detector=detector, upsample=upsample, threshold=threshold
    )


def detect_padded(
    rgb: np.ndarray, *, detector: str = HOG, upsample: int = 1, max_side: int = 1024, threshold: float = 0.0
) -> list[Detection]:
    """Detection on a photo that is already a tight face crop: the HOG window needs some margin
    around a face, so the photo is padded by a quarter of its size on each side (edge pixels
    repeated) and the boxes are shifted back and clipped."""
    height, width = rgb.shape[:2]
    pad_y, pad_x = max(1, height // 4), max(1, width // 4)
    padded = cv2.copyMakeBorder(rgb, pad_y, pad_y, pad_x, pad_x, cv2.BORDER_REPLICATE)
    found = []
    for d in detect(padded, detector=detector, upsample=upsample, max_side=max_side, threshold=threshold):
        left, top = max(0, d.left - pad_x), max(0, d.top - pad_y)
        right, bottom = min(width, d.right - pad_x), min(height, d.bottom - pad_y)
        # Keep only boxes mostly inside the photo itself.
        if (right - left) * (bottom - top) >= 0.5 * d.area:
            found.append(Detection(left, top, right, bottom, d.score))
    return found
