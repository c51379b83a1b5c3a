"""A photo on its way through the face pipeline, decoded only as finely as each step needs.

Decoding a 3000x2000 JPEG in full costs more than everything else the pipeline does with it
(about 50-90 ms against 20-30 ms), yet detection runs on a copy of at most 1024 px and a face
of 800 px is warped into a 160-px crop. So a JPEG file is decoded at the smallest DCT scale
(1/2, 1/4, 1/8: libjpeg scales while it decodes, for a fraction of the cost) that still holds
the detection copy, and a face is fitted and warped on the pixels of that scale only when it
has at least LANDMARK_MIN_SIDE pixels there (1.25 crop sides: the warp would shrink a larger
face to that resolution anyway, see alignment.warp); smaller faces get the photo decoded at the
finer scale they need, up to the full pixels, once. An RGB array given directly (predict API,
tests) is used as it is.

Coordinates: pixel i of a 1/k copy covers original pixels [i*k, (i+1)*k), so a point maps to
(x + 0.5) * k - 0.5 in the original (cv2.INTER_AREA copies follow the same convention)."""

from __future__ import annotations

import cv2
import numpy as np

from curator.images import decode

# A face is fitted on a reduced copy only when its box there is at least this many crop sides.
LANDMARK_MIN_CROP_SIDES = 1.25
# ... and never below this many pixels, whatever the crop size (the 68-point predictor is
# trained on faces of about 200 px; at 100 px and more its points agree within a pixel or two).
LANDMARK_MIN_SIDE = 100


class Photo:
    """An RGB photo: its full size, reduced copies and (only if needed) its full pixels."""

    def __init__(self, *, rgb: np.ndarray | None = None, data: bytes | None = None, max_pixels: int | None = None):
        self._data = data
        self._max_pixels = max_pixels
        self._scales: dict[int, np.ndarray] = {}  # k -> RGB pixels at 1/k
        self._grey: tuple[int, np.ndarray] | None = None
        if rgb is not None:
            if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
                raise ValueError("a photo needs an 8-bit RGB array of shape (height, width, 3)")
            self._scales[1] = np.ascontiguousarray(rgb)
            self.height, self.width = rgb.shape[:2]
            self.image_info = None
        elif data is None:
            raise ValueError("a photo needs pixels or file data")

    @classmethod
    def from_array(cls, rgb: np.ndarray) -> Photo:
        return cls(rgb=rgb)

    @classmethod
    def from_bytes(cls, data: bytes, *, working_side: int, max_pixels: int | None = None) -> Photo:
        """Decode the file once at the smallest JPEG scale whose longest side is at least
        working_side (other formats: in full). Raises curator.images.ImageRejected, like
        load_rgb, for a file that is not a usable image (truncated data included)."""
        photo = cls(data=data, max_pixels=max_pixels)
        pixels, info = decode(data, max_pixels=max_pixels, min_longest=working_side or None)
        photo.width, photo.height, photo.image_info = info.width, info.height, info
        photo._scales[photo._scale_of(pixels)] = np.ascontiguousarray(pixels)
        return photo

    def _scale_of(self, pixels: np.ndarray) -> int:
        ratio = max(self.width, self.height) / max(pixels.shape[:2])
        return max(1, 2 ** round(np.log2(ratio))) if ratio > 1.01 else 1

    @property
    def longest(self) -> int:
        return max(self.width, self.height)

    @property
    def coarsest(self) -> tuple[int, np.ndarray]:
        k = max(self._scales)
        return k, self._scales[k]

    def pixels(self, k: int) -> tuple[int, np.ndarray]:
        """RGB pixels at 1/k of the original (k a power of two; 1 = the original) and their k:
        decoded now if no copy at that scale or finer is in hand."""
        finer = [s for s in self._scales if s <= k]
        if finer:
            k = max(finer)
        else:
            target = max(1, round(self.longest / k))
            pixels, _ = decode(self._data, max_pixels=self._max_pixels, min_longest=target if k > 1 else None)
            k = self._scale_of(pixels)
            self._scales[k] = np.ascontiguousarray(pixels)
        return k, self._scales[k]

    def full(self) -> np.ndarray:
        return self.pixels(1)[1]

    def scale_for(self, box: tuple[int, int, int, int], crop_size: int) -> int:
        """The coarsest scale at which a face of this box still has enough pixels for its
        landmarks and warp: one already decoded where possible, else the one to decode."""
        side = min(box[2] - box[0], box[3] - box[1])
        needed = max(LANDMARK_MIN_SIDE, LANDMARK_MIN_CROP_SIDES * crop_size)
        k = 1
        while k < 8 and side / (2 * k) >= needed:
            k *= 2
        return k

    def grey(self, max_side: int) -> tuple[np.ndarray, float]:
        """A grey copy whose longest side is at most max_side (0: the original), and the factor
        from its pixels back to the original's, made from the coarsest decoded pixels that hold
        it and converted to grey once (HOG runs on grey; see detection.detect)."""
        target = self.longest if not max_side else min(max_side, self.longest)
        if self._grey is None or max(self._grey[1].shape[:2]) < target:
            candidates = [s for s in self._scales if max(self._scales[s].shape[:2]) >= target]
            k = max(candidates) if candidates else min(self._scales)
            self._grey = (k, cv2.cvtColor(self._scales[k], cv2.COLOR_RGB2GRAY))
        k, grey = self._grey
        longest = max(grey.shape[:2])
        if longest <= target:
            return grey, self.longest / longest
        factor = target / longest
        height, width = grey.shape[:2]
        small = cv2.resize(
            grey, (max(1, round(width * factor)), max(1, round(height * factor))), interpolation=cv2.INTER_AREA
        )
        return small, self.longest / max(small.shape[:2])
