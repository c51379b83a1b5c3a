"""The whole face pipeline on one photo, free of the database: detect, find landmarks, align,
measure. Alignment workers call it for every imported photo and the predict API for a new one:

    faces = detect_and_align(load_rgb(path), AlignOptions.from_dataset(dataset))
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from curator.faces import quality
from curator.faces.alignment import LANDMARK_SETS, alignment_matrix, apply_affine, template_points, warp
from curator.faces.detection import (
    CNN,
    HOG,
    PYRAMID_STEP,
    Detection,
    detect_on_copy,
    detect_padded,
    detections_merge,
    downscale,
)
from curator.faces.landmarks import landmarks_68
from curator.faces.photo import Photo

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
# ... and only when a face check passes (measured on the dev set's 4,000 UTKFace crops, of which
# 32 no detector pass finds, and the 300 non-face photos of bench/nonfaces.py):
# 1. a relaxed HOG (adjust_threshold) still sees a face-sized candidate in the padded photo: those
#    32 crops score -1.11..0. A cheap gate only: half the non-faces score as much (upside-down
#    faces, drawn clocks, textures; 19 of them above -0.6, where the check used to stop, and 8 of
#    550 scraped non-face photos became "faces" that way);
# 2. turned by 90° either way, the photo shows no face HOG detects outright (score >= 0): a face
#    on its side passes 1 and 3, and every such UTKFace crop of the set is caught here, none of
#    the 32 crops;
# 3. dlib's MMOD CNN detector finds a face-sized face in the padded photo (at most
#    WHOLE_IMAGE_CNN_SIDE px): all 32 crops (confidence 0.08-1.09), none of the other non-faces.
#    Its 0.3-0.4 s is paid only by crop-shaped photos without a detection.
# The 68-point fit on the whole frame was tried as a test and dropped: the predictor draws a
# face-shaped set of points on anything (residual, symmetry, eye distance overlap entirely).
WHOLE_IMAGE_MIN_SCORE = -1.2
WHOLE_IMAGE_MIN_WIDTH = 0.3  # of the photo's width
WHOLE_IMAGE_CNN_SIDE = 320
# The padded search (and the face check's HOG runs) look for a face filling a crop-shaped photo:
# on a copy of at most this many pixels (the dataset's detection size if smaller). UTKFace and
# LFW photos, padded 300 and 375 px, are searched as they were; a 640-px crop (960 padded,
# upsampled to 1,920 px for HOG before) now costs about a sixth, and still shows any face of
# 9 % of its width or more (37 px upsampled once), far under the 30 % a crop's face fills.
PADDED_SEARCH_SIDE = 400


def padded_search_side(options: AlignOptions) -> int:
    return min(options.detect_max_side or PADDED_SEARCH_SIDE, PADDED_SEARCH_SIDE)


def looks_like_face_crop_size(width: int, height: int) -> bool:
    return max(height, width) <= CROP_MAX_SIDE and max(height, width) / max(1, min(height, width)) <= CROP_MAX_ASPECT


def looks_like_face_crop(rgb: np.ndarray) -> bool:
    height, width = rgb.shape[:2]
    return looks_like_face_crop_size(width, height)


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


# Coarse-to-fine detection (HOG). HOG's window is 80x80 px: without upsampling the smallest box
# it reports is about 73 px (dev LFW faces scaled down: none smaller; every face of 63+ px by
# the full pass's measure found, none under 48). The dataset's detection size and upsampling
# (by default 1024 px, upsampled once: a 2048-px image) say which faces are found: down to
# about 37 px at 1024. Most web photos show a few large faces, which cheaper passes find too:
# first a COARSE_SIDE copy without upsampling (a few per cent of the full pass; faces of at
# least 73 px there, a seventh of the longest side at 512), then the detection size without
# upsampling (faces of 73+ px at 1024), then the dataset's upsampling. Each later pass scans
# only the pyramid levels finer than the previous pass's first (detection.PYRAMID_STEP), so
# the three together cost what the full pass alone did, and their faces are merged with the
# detector's own duplicate test. After a pass that found faces, the next one scans only the
# levels that can hold a face at least 1/COARSE_SETTLES_AT the size of the smallest found, i.e.
# two steps of HOG's image pyramid (6/5 each: boxes come as 73, 88, 105, 126 .. px) below it:
# faces near a pass's limit say there may be others just below it (a group, a crowd; their
# faces are alike in size), but not at any size (so a half-length portrait whose face is near
# the 512-px pass's limit costs the 1024-px pass's coarsest level or two, not all four). When no
# level of the next pass can hold such a face, the photo is settled. A pass that finds nothing
# says nothing: the next pass runs whole, up to the last. Photos no larger than COARSE_SIDE
# take the full pass at once (it costs little there, and their faces are seldom far above the
# limit).
COARSE_SIDE = 512
HOG_SMALLEST_BOX = 73
COARSE_SETTLES_AT = 1.4


def detection_passes(photo_longest: int, options: AlignOptions) -> list[tuple[int, int, int]]:
    """The (longest side, upsample, pyramid levels) of each detection pass for a photo, cheapest
    first; levels 0 scans them all, n only the n finest (those no earlier pass scanned). The
    passes together scan what the full pass of the dataset's options does."""
    full_side = min(options.detect_max_side or photo_longest, photo_longest)
    if options.detector != HOG or photo_longest <= COARSE_SIDE:
        return [(full_side, options.upsample, 0)]
    passes: list[tuple[int, int, int]] = []
    scanned_from = 0  # the size of the finest pyramid level scanned so far
    for side, upsample in ((min(COARSE_SIDE, full_side), 0), (full_side, 0), (full_side, options.upsample)):
        first_level = side * 2**upsample
        if first_level <= scanned_from:
            continue
        levels = 0 if not scanned_from else math.ceil(math.log(first_level / scanned_from) / math.log(PYRAMID_STEP))
        passes.append((side, upsample, levels))
        scanned_from = first_level
    return passes


def pass_part_for_faces(
    photo_longest: int, detection_pass: tuple[int, int, int], smallest: float
) -> tuple[int, int, int] | None:
    """The part of a later (side, upsample, levels) pass whose pyramid levels can hold a face of
    at least smallest / COARSE_SETTLES_AT photo px: the pass on a copy shrunk past the finer
    levels it can skip, or None when it can skip them all."""
    side, upsample, levels = detection_pass
    for finer in range(levels):  # level `finer` (0: the finest) is side * 2**upsample / 1.2**finer px
        level_side = side * 2**upsample / PYRAMID_STEP**finer
        largest_box = HOG_SMALLEST_BOX * PYRAMID_STEP * photo_longest / level_side  # in photo px
        if largest_box > smallest / COARSE_SETTLES_AT:
            return round(side / PYRAMID_STEP**finer), upsample, levels - finer
    return None


def _detect_pass(photo: Photo, options: AlignOptions, side: int, upsample: int, levels: int = 0) -> list[Detection]:
    if options.detector == HOG:
        grey, back = photo.grey(side)
        return detect_on_copy(
            grey, back, width=photo.width, height=photo.height, detector=HOG, upsample=upsample, levels=levels
        )
    k, pixels = photo.pixels(1 if photo.longest <= side else photo.coarsest[0])
    small, back = downscale(pixels, side)
    return detect_on_copy(
        small, back * k, width=photo.width, height=photo.height, detector=options.detector, upsample=upsample
    )


def detect_faces(source: np.ndarray | Photo, options: AlignOptions) -> list[Detection]:
    """The detections every path uses (import, training, predict): coarse-to-fine (above), and a
    photo shaped like a face crop that yields nothing is searched again padded, whatever the
    whole-image fallback says."""
    return _detect(source if isinstance(source, Photo) else Photo.from_array(source), options)[0]


def _detect(photo: Photo, options: AlignOptions) -> tuple[list[Detection], list[Detection] | None]:
    """detect_faces, and the relaxed HOG candidates of the padded search when it ran (the face
    check's evidence: one HOG run gives both, as a detection scoring 0 or more is one whatever
    the threshold; dlib suppresses a box only in favour of a stronger one)."""
    found: list[Detection] = []
    for detection_pass in detection_passes(photo.longest, options):
        if found:  # this pass needs only the levels that can hold faces like those found
            detection_pass = pass_part_for_faces(
                photo.longest, detection_pass, min(min(d.width, d.height) for d in found)
            )
            if detection_pass is None:
                return found, None
        new = _detect_pass(photo, options, *detection_pass)
        found = detections_merge(found, new) if found else new
    if found or not looks_like_face_crop_size(photo.width, photo.height):
        return found, None
    # A tight face crop leaves the detector no margin around the face; try again with some.
    relaxed = options.whole_image_fallback and options.detector == HOG
    padded = _padded_search(photo.full(), options, detector=options.detector, relaxed=relaxed)
    return [d for d in padded if d.score >= 0], padded if relaxed else None


def _padded_search(rgb: np.ndarray, options: AlignOptions, *, detector: str = HOG, relaxed: bool) -> list[Detection]:
    """The padded search of a crop-shaped photo (or of it turned), on a copy of at most
    padded_search_side; relaxed: with the face check's weaker HOG candidates too."""
    return detect_padded(
        rgb,
        detector=detector,
        upsample=options.upsample,
        max_side=padded_search_side(options),
        threshold=WHOLE_IMAGE_MIN_SCORE if relaxed else 0.0,
    )


def whole_image_evidence(rgb: np.ndarray, options: AlignOptions, padded: list[Detection] | None = None) -> float | None:
    """The best relaxed HOG score of a face-sized candidate in the padded photo, or None when
    there is none above WHOLE_IMAGE_MIN_SCORE (the face check's first, cheap gate). `padded`:
    the relaxed candidates if the detection already has them."""
    if padded is None:
        padded = _padded_search(rgb, options, relaxed=True)
    candidates = [d for d in padded if d.width >= WHOLE_IMAGE_MIN_WIDTH * rgb.shape[1]]
    return max((d.score for d in candidates), default=None)


@dataclass(frozen=True)
class FaceCheck:
    """Whether a crop-shaped photo without a detection is a face to keep whole, and why."""

    passed: bool
    hog_score: float | None = None
    cnn_score: float | None = None
    sideways: bool = False

    def describe(self) -> str:
        if self.passed:
            return (
                f"kept whole: face check passed (relaxed HOG score {self.hog_score:.2f}, "
                f"CNN face confidence {self.cnn_score:.2f})"
            )
        if self.sideways:
            return "not kept whole: face check failed (a face on its side: HOG detects it once the photo is turned 90°)"
        if self.hog_score is None:
            return f"not kept whole: face check failed (no face-sized HOG candidate above {WHOLE_IMAGE_MIN_SCORE})"
        return f"not kept whole: face check failed (relaxed HOG score {self.hog_score:.2f}, but the CNN found no face)"


def whole_image_face_check(rgb: np.ndarray, options: AlignOptions, padded: list[Detection] | None = None) -> FaceCheck:
    """The face check of a photo to be kept whole (see WHOLE_IMAGE_MIN_SCORE)."""
    hog_score = whole_image_evidence(rgb, options, padded)
    if hog_score is None:
        return FaceCheck(False)
    for turns in (1, 3):
        # A face on its side scores as high as a tilted upright one, and the CNN finds it too; turned
        # upright, HOG detects it outright (score >= 0), which no upright face crop does.
        turned = np.ascontiguousarray(np.rot90(rgb, turns))
        upright = _padded_search(turned, options, relaxed=False)
        if any(d.width >= WHOLE_IMAGE_MIN_WIDTH * turned.shape[1] for d in upright):
            return FaceCheck(False, hog_score, sideways=True)
    found = detect_padded(rgb, detector=CNN, upsample=0, max_side=WHOLE_IMAGE_CNN_SIDE)
    cnn_score = max((d.score for d in found if d.width >= WHOLE_IMAGE_MIN_WIDTH * rgb.shape[1]), default=None)
    return FaceCheck(cnn_score is not None, hog_score, cnn_score)


def align_face_in(photo: Photo, box: tuple[int, int, int, int], options: AlignOptions, *, score=None) -> AlignedFace:
    """align_face on the coarsest pixels of the photo that hold the face well enough (see
    curator.faces.photo), with box, landmarks and matrix given in the original's pixels."""
    k, pixels = photo.pixels(photo.scale_for(box, options.crop_size))
    if k == 1:
        return align_face(pixels, box, options, score=score)
    face = align_face(pixels, tuple(round(v / k) for v in box), options, score=score)
    # Pixel centres: x_small = (x + 0.5) / k - 0.5.
    to_small = np.array([[1 / k, 0, 0.5 / k - 0.5], [0, 1 / k, 0.5 / k - 0.5]])
    face.matrix = np.hstack(
        [face.matrix[:, :2] @ to_small[:, :2], (face.matrix[:, :2] @ to_small[:, 2:]) + face.matrix[:, 2:]]
    )
    face.landmarks = (face.landmarks + 0.5) * k - 0.5
    left, top, right, bottom = box
    face.box = (int(left), int(top), int(right), int(bottom))
    face.size_px = round(((right - left) + (bottom - top)) / 2)
    return face


@dataclass
class PhotoAlignment:
    """The faces of a photo and, when none was detected, what became of it (the whole-photo
    fallback's decision), for the image's outcome."""

    faces: list[AlignedFace]
    note: str = ""


def align_photo(source: np.ndarray | Photo, options: AlignOptions) -> PhotoAlignment:
    """Every face in an 8-bit RGB photo (H x W x 3, or a Photo decoded lazily from its file),
    largest first: index 0 is the largest. No faces means no face. A photo shaped like a face
    crop is padded and searched again; failing that, with whole_image_fallback, it becomes one
    face framed by the whole photo when the face check passes (its relaxed HOG score is the
    face's detector_score)."""
    if isinstance(source, Photo):
        photo = source
    else:
        if source.ndim != 3 or source.shape[2] != 3 or source.dtype != np.uint8:
            raise ValueError("detect_and_align needs an 8-bit RGB array of shape (height, width, 3)")
        photo = Photo.from_array(source)
    found, padded = _detect(photo, options)
    detections = sorted(found, key=lambda d: (-d.area, d.left, d.top))
    faces = [align_face_in(photo, d.box, options, score=d.score) for d in detections]
    note = ""
    if not faces and options.whole_image_fallback:
        if looks_like_face_crop_size(photo.width, photo.height):
            rgb = photo.full()
            check = whole_image_face_check(rgb, options, padded)
            note = check.describe()
            if check.passed:
                faces = [_whole_image_face(rgb, options)]
                faces[0].detector_score = check.hog_score
        else:
            note = "not kept whole: not shaped like a face crop"
    for index, face in enumerate(faces):
        face.index = index
        face.is_largest = index == 0
    return PhotoAlignment(faces, note)


def detect_and_align(source: np.ndarray | Photo, options: AlignOptions) -> list[AlignedFace]:
    """align_photo's faces: [] means no face."""
    return align_photo(source, options).faces


def load_photo(source: str | Path | bytes | BinaryIO, options: AlignOptions, *, max_pixels: int | None = None) -> Photo:
    """A photo file ready for detect_and_align, decoded only as finely as the dataset's detection
    size needs (a JPEG at 1/2, 1/4 or 1/8 when that still holds it; finer pixels are decoded
    later only for faces too small at that scale). Raises ImageRejected as load_rgb does."""
    if isinstance(source, bytes):
        data = source
    elif isinstance(source, str | Path):
        data = Path(source).read_bytes()
    else:
        data = source.read()
    return Photo.from_bytes(data, working_side=options.detect_max_side, max_pixels=max_pixels)


def encode_jpeg(crop: np.ndarray, quality: int = 92) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover (only for arrays cv2 cannot encode at all)
        raise ValueError("could not encode the aligned crop as JPEG")
    return data.tobytes()
