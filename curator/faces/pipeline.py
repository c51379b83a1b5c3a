"""The whole face pipeline on one photo, free of the database: detect, find landmarks, align,
measure. Alignment workers call it for every imported photo and the predict API for a new one:

    faces = detect_and_align(load_rgb(path), AlignOptions.from_dataset(dataset))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from curator.faces import quality
from curator.faces.alignment import LANDMARK_SETS, alignment_matrix, apply_affine, template_points, warp
from curator.faces.detection import CNN, HOG, Detection, detect, detect_padded
from curator.faces.landmarks import landmarks_68

# Where the face sits in a photo that already is a face crop (UTKFace-style chips), as a
# fraction of its sides: the median HOG box over UTKFace crops of the dev set is about this.
WHOLE_IMAGE_FACE_INSET = 0.11
# Above this mean landmark distance (as a fraction of the crop) such a crop's landmarks are not
# trusted for the warp; typical detected faces fit within 0.03-0.06.
WHOLE_IMAGE_MAX_FIT = 0.1
# Only photos shaped like a face crop (small and about square) may become whole-image faces; a
# holiday photo without a face stays "no face" even in a dataset that keeps undetected crops.
CROP_MAX_SIDE = 640
CROP_MAX_ASPECT = 1.35
# ... and only when a relaxed detector still sees a face-sized candidate: on the dev set the HOG
# scores of the padded UTKFace crops kept whole reach -1.1..0 (30 of 33 above this), those of
# noise, plain backgrounds and background corners of LFW photos at most -0.65.
WHOLE_IMAGE_MIN_SCORE = -0.6
WHOLE_IMAGE_MIN_WIDTH = 0.3  # of the photo's width


def looks_like_face_crop(rgb: np.ndarray) -> bool:
    height, width = rgb.shape[:2]
    return max(height, width) <= CROP_MAX_SIDE and max(height, width) / max(1, min(height, width)) <= CROP_MAX_ASPECT


@dataclass(frozen=True)
class AlignOptions:
    crop_size: int = 160
    crop_margin: float = 0.0
    landmark_set: str = "inner_eyes_and_bottom_lip"
    detector: str = HOG
    upsample: int = 1
    detect_max_side: int = 1024
    # A face-crop-shaped photo with no detection, even padded, becomes one face framed by the
    # whole photo (for datasets made of face crops, e.g. UTKFace). The dataset decides, for its
    # imports and for photos sent to its models alike.
    whole_image_fallback: bool = False

    def __post_init__(self) -> None:
        if self.landmark_set not in LANDMARK_SETS:
            raise ValueError(f"unknown landmark set {self.landmark_set!r}")
        if self.detector not in (HOG, CNN):
            raise ValueError(f"unknown detector {self.detector!r}")
        if not 16 <= self.crop_size <= 2048:
            raise ValueError("crop size must be between 16 and 2048 pixels")
        if not 0.0 <= self.crop_margin <= 2.0:
            raise ValueError("crop margin must be between 0 and 2")
        if not 0 <= self.upsample <= 4:
            raise ValueError("upsample must be between 0 and 4")
        if self.detect_max_side and self.detect_max_side < 64:
            raise ValueError("detect_max_side must be at least 64 pixels (or 0 for no downscaling)")

    @classmethod
    def from_dataset(cls, dataset, **overrides) -> AlignOptions:
        values = {
            "crop_size": dataset.crop_size,
            "crop_margin": dataset.crop_margin,
            "landmark_set": dataset.landmark_set,
            "detector": dataset.detector,
            "upsample": dataset.upsample,
            "detect_max_side": dataset.detect_max_side,
            "whole_image_fallback": dataset.keep_undetected_crops,
        }
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_dict(cls, values: dict) -> AlignOptions:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class AlignedFace:
    box: tuple[int, int, int, int]  # left, top, right, bottom in original pixels (exclusive)
    landmarks: np.ndarray  # 68 x 2, original pixels
    crop: np.ndarray  # crop_size x crop_size x 3, uint8 RGB
    detector_score: float | None
    size_px: int  # side of the box (the mean of width and height)
    sharpness: float
    yaw: float
    roll: float
    landmark_fit: float
    phash: int
    whole_image: bool = False
    index: int = 0
    is_largest: bool = False
    matrix: np.ndarray = field(default_factory=lambda: np.eye(2, 3))  # photo -> crop pixels

    def landmarks_list(self) -> list[list[float]]:
        return [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks]


def align_face(
    rgb: np.ndarray, box: tuple[int, int, int, int], options: AlignOptions, *, score: float | None = None
) -> AlignedFace:
    """Landmarks, aligned crop and quality of the face in one box of the photo."""
    points = landmarks_68(rgb, box)
    matrix = alignment_matrix(
        points, crop_size=options.crop_size, margin=options.crop_margin, landmark_set=options.landmark_set
    )
    crop = warp(rgb, matrix, options.crop_size)
    aligned_points = apply_affine(matrix, points)
    left, top, right, bottom = box
    return AlignedFace(
        box=(int(left), int(top), int(right), int(bottom)),
        landmarks=points,
        crop=crop,
        detector_score=score,
        size_px=round(((right - left) + (bottom - top)) / 2),
        sharpness=quality.sharpness(crop),
        yaw=quality.yaw_degrees(points),
        roll=quality.roll_degrees(points),
        landmark_fit=quality.landmark_fit(aligned_points, template_points(options.crop_size, options.crop_margin)),
        phash=quality.phash(crop),
        matrix=matrix,
    )


def whole_image_face_box(width: int, height: int) -> tuple[int, int, int, int]:
    """Where a whole-image face's landmarks are searched: the box such a crop has its face in."""
    inset_x, inset_y = round(width * WHOLE_IMAGE_FACE_INSET), round(height * WHOLE_IMAGE_FACE_INSET)
    return (inset_x, inset_y, width - inset_x, height - inset_y)


def landmark_box(
    *, width: int, height: int, box: tuple[int, int, int, int], whole_image: bool
) -> tuple[int, int, int, int]:
    """The box a face's landmarks were found in (a whole-image face's box is the whole photo)."""
    return whole_image_face_box(width, height) if whole_image else tuple(int(v) for v in box)


def _whole_image_face(rgb: np.ndarray, options: AlignOptions) -> AlignedFace:
    """The photo is taken to be a face crop. Landmarks are fitted in the box where such a crop
    has its face; when they fit the template well the face is aligned with them like any other,
    otherwise (a face the detector could not find is often one the predictor gets wrong too) the
    photo's centre square is simply resized. Either way it is flagged as whole-image."""
    height, width = rgb.shape[:2]
    face = align_face(rgb, whole_image_face_box(width, height), options)
    if face.landmark_fit > WHOLE_IMAGE_MAX_FIT * options.crop_size:
        side = min(width, height)
        x0, y0 = (width - side) // 2, (height - side) // 2
        scale = options.crop_size / side
        matrix = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], dtype=np.float64)
        crop = warp(rgb, matrix, options.crop_size)
        template = template_points(options.crop_size, options.crop_margin)
        face.crop, face.matrix = crop, matrix
        face.sharpness = quality.sharpness(crop)
        face.phash = quality.phash(crop)
        face.landmark_fit = quality.landmark_fit(apply_affine(matrix, face.landmarks), template)
    face.box = (0, 0, width, height)
    face.size_px = round((width + height) / 2)
    face.whole_image = True
    return face


def detect_faces(rgb: np.ndarray, options: AlignOptions) -> list[Detection]:
    """The detections every path uses (import, training, predict): a photo shaped like a face crop
    that yields nothing is searched again padded, whatever the whole-image fallback says."""
    found = detect(rgb, detector=options.detector, upsample=options.upsample, max_side=options.detect_max_side)
    if not found and looks_like_face_crop(rgb):
        # A tight face crop leaves the detector no margin around the face; try again with some.
        found = detect_padded(
            rgb, detector=options.detector, upsample=options.upsample, max_side=options.detect_max_side
        )
    return found


def whole_image_evidence(rgb: np.ndarray, options: AlignOptions) -> float | None:
    """The best relaxed detection score of a face-sized candidate in the padded photo, or None
    when there is none above WHOLE_IMAGE_MIN_SCORE: a blank or non-face photo stays faceless."""
    candidates = [
        d
        for d in detect_padded(
            rgb,
            detector=HOG,
            upsample=options.upsample,
            max_side=options.detect_max_side,
            threshold=WHOLE_IMAGE_MIN_SCORE,
        )
        if d.width >= WHOLE_IMAGE_MIN_WIDTH * rgb.shape[1]
    ]
    return max((d.score for d in candidates), default=None)


def detect_and_align(rgb: np.ndarray, options: AlignOptions) -> list[AlignedFace]:
    """Every face in an 8-bit RGB photo (H x W x 3), largest first: index 0 is the largest.
    An empty list means no face. A photo shaped like a face crop is padded and searched again;
    failing that, with whole_image_fallback, it becomes one face framed by the whole photo when a
    relaxed detector still sees a face in it (its score is the face's detector_score)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError("detect_and_align needs an 8-bit RGB array of shape (height, width, 3)")
    rgb = np.ascontiguousarray(rgb)
    detections = sorted(detect_faces(rgb, options), key=lambda d: (-d.area, d.left, d.top))
    faces = [align_face(rgb, d.box, options, score=d.score) for d in detections]
    if not faces and options.whole_image_fallback and looks_like_face_crop(rgb):
        evidence = whole_image_evidence(rgb, options)
        if evidence is not None:
            faces = [_whole_image_face(rgb, options)]
            faces[0].detector_score = evidence
    for index, face in enumerate(faces):
        face.index = index
        face.is_largest = index == 0
    return faces


def encode_jpeg(crop: np.ndarray, quality: int = 92) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover (only for arrays cv2 cannot encode at all)
        raise ValueError("could not encode the aligned crop as JPEG")
    return data.tobytes()
