"""What the descriptor-based models see of a face, computed from the original photo (free of the
database, so worker pools and the predict path share it):

- dlib's 128-D descriptor of its own 150-px chip (padding 0.25), averaged with the descriptor of
  the mirrored chip (horizontal-flip test-time augmentation: +0.5 points on the dev set);
- the pretrained gender network's [female, male] probabilities on its 32-px chip, averaged over
  the chip and its mirror (None when that network cannot be loaded).

    features = photo_features(rgb, [landmark_box, ...])
    inputs = model_inputs(features, use_pretrained=True)   # [N, 129] for the embedding model
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curator.faces import chips
from embeddings import pretrained


@dataclass
class FaceFeatures:
    descriptor: np.ndarray | None  # float32 [128], of the chip (None: not computed, see photo_features)
    descriptor_flipped: np.ndarray | None  # float32 [128], of the mirrored chip
    pretrained: np.ndarray | None  # float32 [2], female/male, mean over chip and mirror
    # pHash of the face's region of the original photo and of its mirror (near-duplicates).
    region_phash: int | None = None
    region_phash_mirrored: int | None = None

    @property
    def descriptor_tta(self) -> np.ndarray:
        return (self.descriptor + self.descriptor_flipped) / 2


def photo_features(
    rgb: np.ndarray,
    boxes: list[tuple[int, int, int, int]],
    *,
    pretrained_model: str | None = None,
    descriptor: bool = True,
) -> list[FaceFeatures]:
    """Features of each face box of one RGB photo (boxes as the landmarks were found in them).
    `pretrained_model` is the ONNX file's path for processes without Django settings ("" when
    the network is not installed; None: find it through the settings). `descriptor=False` skips
    dlib's ResNet (~150 ms a face here) for a model that only reads the pretrained network."""
    if not boxes:
        return []
    shapes = [chips.five_point_shape(rgb, box) for box in boxes]
    vectors = None
    if descriptor:
        big = [chips.chip(s, chips.DESCRIPTOR_CHIP_SIZE, chips.DESCRIPTOR_CHIP_PADDING) for s in shapes]
        vectors = chips.descriptors([c for chip in big for c in (chip, chips.flipped(chip))])
    gender = _pretrained_probabilities(shapes, pretrained_model)
    hashes = [region_phashes(rgb, box) for box in boxes]
    return [
        FaceFeatures(
            descriptor=None if vectors is None else vectors[2 * i],
            descriptor_flipped=None if vectors is None else vectors[2 * i + 1],
            pretrained=None if gender is None else gender[i],
            region_phash=hashes[i][0],
            region_phash_mirrored=hashes[i][1],
        )
        for i in range(len(boxes))
    ]


# The region hashed for near-duplicates: the face box grown to this many box sides, square,
# around its centre. Hair, clothes and background make two different people's regions differ
# (the aligned crop, where every face is brought to the same place, makes them look alike), and
# the margin is small enough that a copy cropped by 5-10 % still contains the whole region.
REGION_SCALE = 1.6


def region_phashes(rgb: np.ndarray, box: tuple[int, int, int, int]) -> tuple[int, int]:
    """64-bit pHash of the face's region of the original photo, and of its mirror image (a
    mirrored copy of the photo has the first equal to the original's second)."""
    from curator.faces.quality import phash

    left, top, right, bottom = (int(v) for v in box)
    height, width = rgb.shape[:2]
    side = max(right - left, bottom - top) * REGION_SCALE
    cx, cy = (left + right) / 2, (top + bottom) / 2
    x0, y0 = max(0, int(round(cx - side / 2))), max(0, int(round(cy - side / 2)))
    x1, y1 = min(width, int(round(cx + side / 2))), min(height, int(round(cy + side / 2)))
    region = np.ascontiguousarray(rgb[y0:y1, x0:x1]) if x1 - x0 >= 8 and y1 - y0 >= 8 else rgb
    return phash(region), phash(chips.flipped(region))


def _pretrained_probabilities(shapes: list[chips.FaceShape], model: str | None) -> np.ndarray | None:
    if model == "":
        return None
    small = [chips.chip(s, pretrained.CHIP_SIZE, pretrained.CHIP_PADDING) for s in shapes]
    batch = np.stack([c for chip in small for c in (chip, chips.flipped(chip))])
    try:
        probabilities = pretrained.gender_probabilities(batch, path=model or None)
    except pretrained.PretrainedModelError:
        return None
    return probabilities.reshape(len(shapes), 2, 2).mean(axis=1)


def pretrained_logit(features: list[FaceFeatures]) -> np.ndarray:
    """log(p_male / p_female) of the pretrained network, [N, 1]; clipped so certainty stays finite."""
    p = np.clip(np.stack([f.pretrained for f in features]).astype(np.float64), 1e-6, 1.0)
    return np.log(p[:, 1:2] / p[:, 0:1]).astype(np.float32)


def model_inputs(features: list[FaceFeatures], *, use_pretrained: bool) -> np.ndarray:
    """The embedding model's input rows: the flip-averaged descriptor, and the pretrained
    network's logit as one more column when the model was trained with it."""
    if not features:
        return np.zeros((0, 129 if use_pretrained else 128), dtype=np.float32)
    descriptor = np.stack([f.descriptor_tta for f in features]).astype(np.float32)
    if not use_pretrained:
        return descriptor
    if any(f.pretrained is None for f in features):
        raise pretrained.PretrainedModelError(
            "This model uses the pretrained gender network as a feature, and that network is not available."
        )
    return np.hstack([descriptor, pretrained_logit(features)])


def compute_photos(
    photos: list[tuple[bytes | None, list[tuple[int, tuple[int, int, int, int]]]]],
    *,
    max_pixels: int,
    pretrained_model: str,
    descriptor: bool = True,
) -> dict[int, FaceFeatures]:
    """Features of the faces of each photo's bytes (None: the file is gone). Runs in the pool
    processes of embeddings.descriptors, so it touches no database and no Django settings. A
    photo that is gone or no longer decodes is skipped."""
    from curator.images import ImageRejected, decode

    result: dict[int, FaceFeatures] = {}
    for blob, faces in photos:
        if blob is None:
            continue
        try:
            rgb, _ = decode(blob, max_pixels=max_pixels)
        except ImageRejected:
            continue
        features = photo_features(
            rgb, [box for _, box in faces], pretrained_model=pretrained_model, descriptor=descriptor
        )
        result.update({face_id: f for (face_id, _), f in zip(faces, features, strict=True)})
    return result


def decode_crop(data: bytes) -> np.ndarray:
    """RGB uint8 array of an aligned crop file's bytes (PIL, the decoder the predict side uses)."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))
