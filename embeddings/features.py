"""What the descriptor-based models see of a face, computed from the original photo (free of the
database, so worker pools and the predict path share it):

- the face network's 128-D descriptor (dlib's ResNet, run by embeddings.network) of dlib's own
  150-px chip (padding 0.25) and of the mirrored chip, both in one batch (their mean is the
  horizontal-flip test-time augmentation: +0.5 points on the dev set);
- the pretrained gender network's [female, male] probabilities on its 32-px chip, averaged over
  the chip and its mirror (None when that network cannot be loaded).

Faces are cut per photo and run through the networks together: many photos' chips go in one
batch (`compute_photos`, the embed queue and training), one photo's faces in one batch (the
predict path).

    features = photo_features(rgb, [landmark_box, ...])
    inputs = model_inputs(features, use_pretrained=True)   # [N, 129] for the embedding model
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curator.faces import chips
from embeddings import network, pretrained


@dataclass(frozen=True)
class NetworkFiles:
    """The networks' files, for pool processes that have no Django settings: the face network's
    dlib file ("" = find it through the settings) and the pretrained network's ONNX file (""
    when it is not installed, None = find it through the settings)."""

    face_network: str = ""
    pretrained: str | None = None
    threads: int | None = None  # onnxruntime threads; None = CURATOR_NETWORK_THREADS


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


@dataclass
class FaceCut:
    """What is cut from the photo for one face before any network runs."""

    chip: np.ndarray | None  # dlib's 150-px chip (None when no descriptor is wanted)
    small_chip: np.ndarray  # the pretrained network's 32-px chip
    region_phash: int
    region_phash_mirrored: int


def face_cuts(rgb: np.ndarray, boxes: list[tuple[int, int, int, int]], *, descriptor: bool = True) -> list[FaceCut]:
    """The chips and region hashes of each face box of one RGB photo (boxes as the landmarks were
    found in them)."""
    cuts = []
    for box in boxes:
        shape = chips.five_point_shape(rgb, box)
        big = chips.chip(shape, chips.DESCRIPTOR_CHIP_SIZE, chips.DESCRIPTOR_CHIP_PADDING) if descriptor else None
        small = chips.chip(shape, pretrained.CHIP_SIZE, pretrained.CHIP_PADDING)
        cuts.append(FaceCut(big, small, *region_phashes(rgb, box)))
    return cuts


def features_of_cuts(
    cuts: list[FaceCut], *, descriptor: bool = True, files: NetworkFiles | None = None
) -> list[FaceFeatures]:
    """Run the networks over the faces' chips, mirrors in the same batch."""
    if not cuts:
        return []
    files = files or NetworkFiles()
    vectors = None
    if descriptor:
        batch = [c for cut in cuts for c in (cut.chip, chips.flipped(cut.chip))]
        vectors = network.descriptors(batch, path=files.face_network or None, threads=files.threads)
    gender = _pretrained_probabilities([cut.small_chip for cut in cuts], files.pretrained)
    return [
        FaceFeatures(
            descriptor=None if vectors is None else vectors[2 * i],
            descriptor_flipped=None if vectors is None else vectors[2 * i + 1],
            pretrained=None if gender is None else gender[i],
            region_phash=cut.region_phash,
            region_phash_mirrored=cut.region_phash_mirrored,
        )
        for i, cut in enumerate(cuts)
    ]


def photo_features(
    rgb: np.ndarray,
    boxes: list[tuple[int, int, int, int]],
    *,
    pretrained_model: str | None = None,
    descriptor: bool = True,
) -> list[FaceFeatures]:
    """Features of each face box of one RGB photo. `pretrained_model` "" skips the pretrained
    network. `descriptor=False` skips the face network for a model that only reads the
    pretrained network."""
    files = NetworkFiles(pretrained=pretrained_model)
    return features_of_cuts(face_cuts(rgb, boxes, descriptor=descriptor), descriptor=descriptor, files=files)


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


def _pretrained_probabilities(small_chips: list[np.ndarray], model: str | None) -> np.ndarray | None:
    if model == "":
        return None
    batch = np.stack([c for chip in small_chips for c in (chip, chips.flipped(chip))])
    try:
        probabilities = pretrained.gender_probabilities(batch, path=model or None)
    except pretrained.PretrainedModelError:
        return None
    return probabilities.reshape(len(small_chips), 2, 2).mean(axis=1)


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
    files: NetworkFiles,
    descriptor: bool = True,
) -> dict[int, FaceFeatures]:
    """Features of the faces of each photo's bytes (None: the file is gone), the chips of all the
    photos in one batch through each network. Runs in the pool processes of
    embeddings.descriptors, so it touches no database and no Django settings. A photo that is
    gone or no longer decodes is skipped."""
    face_ids, cuts = _photos_cuts(photos, max_pixels=max_pixels, descriptor=descriptor)
    features = features_of_cuts(cuts, descriptor=descriptor, files=files)
    return dict(zip(face_ids, features, strict=True))


def cut_chips(
    photos: list[tuple[bytes | None, list[tuple[int, tuple[int, int, int, int]]]]], *, max_pixels: int
) -> dict[int, np.ndarray]:
    """dlib's 150-px chip of the faces of each photo's bytes (pool processes, like compute_photos)."""
    face_ids, cuts = _photos_cuts(photos, max_pixels=max_pixels, descriptor=True)
    return {face_id: cut.chip for face_id, cut in zip(face_ids, cuts, strict=True)}


def _photos_cuts(photos, *, max_pixels: int, descriptor: bool) -> tuple[list[int], list[FaceCut]]:
    from curator.images import ImageRejected, decode

    face_ids: list[int] = []
    cuts: list[FaceCut] = []
    for blob, faces in photos:
        if blob is None:
            continue
        try:
            rgb, _ = decode(blob, max_pixels=max_pixels)
        except ImageRejected:
            continue
        cuts += face_cuts(rgb, [box for _, box in faces], descriptor=descriptor)
        face_ids += [face_id for face_id, _ in faces]
    return face_ids, cuts


def decode_crop(data: bytes) -> np.ndarray:
    """RGB uint8 array of an aligned crop file's bytes (PIL, the decoder the predict side uses)."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))
