"""Who in a dataset looks like a new photo: every face of the photo is found and aligned as the
dataset's imports are, described by the same path as the dataset's faces (embeddings.features:
dlib's chip and its mirror, averaged) and compared with the dataset's descriptors."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from curator.images import ImageRejected, decode
from curator.models import Dataset
from embeddings import selectors


class PhotoRejected(Exception):
    def __init__(self, message: str, *, status: int = 400, code: str = "bad_image"):
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


@dataclass
class PhotoFace:
    index: int
    box: tuple[int, int, int, int]
    neighbours: list[tuple[int, float]]  # (face id, distance), nearest first


def photo_neighbours(*, dataset: Dataset, data: bytes, k: int = 12) -> list[PhotoFace]:
    """The k faces of the dataset nearest to each face of the photo (largest face first)."""
    from curator.faces.pipeline import AlignOptions, detect_and_align, landmark_box
    from embeddings.features import photo_features

    if len(data) > settings.CURATOR_PREDICT_MAX_BYTES:
        raise PhotoRejected(
            f"The file is {len(data):,} bytes, more than the limit of {settings.CURATOR_PREDICT_MAX_BYTES:,}.",
            status=413,
            code="too_large",
        )
    try:
        rgb, _ = decode(data, max_pixels=settings.CURATOR_PREDICT_MAX_PIXELS)
    except ImageRejected as exc:
        raise PhotoRejected(f"Not a usable image: {exc}.", status=415) from exc
    aligned = detect_and_align(rgb, AlignOptions.from_dataset(dataset))
    if not aligned:
        return []
    height, width = rgb.shape[:2]
    boxes = [landmark_box(width=width, height=height, box=f.box, whole_image=f.whole_image) for f in aligned]
    # pretrained_model="": only the descriptor is wanted, not the gender network.
    features = photo_features(rgb, boxes, pretrained_model="")
    return [
        PhotoFace(
            index=i,
            box=tuple(int(v) for v in face.box),
            neighbours=selectors.faces_nearest(dataset=dataset, vector=feature.descriptor_tta, k=k),
        )
        for i, (face, feature) in enumerate(zip(aligned, features, strict=True))
    ]
