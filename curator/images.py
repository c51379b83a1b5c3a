"""Decoding photos safely: every format Pillow reads, EXIF orientation applied, odd modes (CMYK,
16-bit, palette, alpha) turned into 8-bit RGB, and a pixel limit checked before any decoding so a
decompression bomb costs nothing. Every refusal carries a reason a person can act on."""

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from django.conf import settings
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# We check the pixel count ourselves (with a clearer message) before Pillow decodes anything.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False

# File extensions we store originals under, by Pillow format name.
FORMAT_EXTENSIONS = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "MPO": ".jpg",
    "PPM": ".ppm",
    "ICO": ".ico",
    "TGA": ".tga",
    "JPEG2000": ".jp2",
}


class ImageRejected(ValueError):
    """The file is not a usable image; str() is the reason shown to the user."""


@dataclass(frozen=True)
class ImageInfo:
    width: int  # after EXIF orientation
    height: int
    image_format: str  # Pillow's name, e.g. "JPEG"
    mode: str  # the file's own mode, e.g. "CMYK", "I;16", "P"

    @property
    def extension(self) -> str:
        return FORMAT_EXTENSIONS.get(self.image_format, f".{self.image_format.lower()}")


def _sniff_non_image(head: bytes) -> str | None:
    """Name what a non-image file is, from its first bytes, for a clearer reason."""
    if not head:
        return "empty file (0 bytes)"
    if head[:2] == b"\x1f\x8b":
        return "gzip-compressed data, not an image"
    if head[:4] == b"PK\x03\x04":
        return "a zip archive, not an image"
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<svg", b"<")):
        return "HTML/XML text, not an image"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head[:512]):
        return "plain text, not an image"
    return None


def _open(source: str | Path | bytes | BinaryIO) -> tuple[Image.Image, BinaryIO]:
    if isinstance(source, bytes):
        handle: BinaryIO = io.BytesIO(source)
    elif isinstance(source, str | Path):
        handle = open(source, "rb")  # noqa: SIM115 (the caller's Image keeps it open)
    else:
        handle = source
    start = handle.tell() if handle.seekable() else 0
    head = handle.read(1024)
    handle.seek(start)
    sniffed = _sniff_non_image(head)
    # Plain text may still be an image (ASCII PPM/PBM): let Pillow try before refusing it.
    if sniffed and not sniffed.startswith("plain text"):
        raise ImageRejected(sniffed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(handle)
    except UnidentifiedImageError as exc:
        raise ImageRejected(sniffed or "not an image format Pillow can read") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(f"unreadable image header ({exc})") from exc
    return image, handle


def _check_pixels(image: Image.Image, max_pixels: int | None) -> None:
    limit = settings.CURATOR_MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageRejected("image has no pixels")
    if width * height > limit:
        raise ImageRejected(
            f"{width}x{height} is {width * height:,} pixels, more than the limit of {limit:,} "
            "(CURATOR_MAX_IMAGE_PIXELS); likely a decompression bomb"
        )


def _to_rgb8(image: Image.Image) -> np.ndarray:
    """8-bit RGB from any Pillow mode; transparent areas become white."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        gray = np.clip(values * (255.0 / top), 0, 255).round().astype(np.uint8)
        return np.ascontiguousarray(np.stack([gray] * 3, axis=-1))
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        lo, hi = float(values.min(initial=0)), float(values.max(initial=1))
        gray = ((values - lo) / ((hi - lo) or 1.0) * 255).round().astype(np.uint8)
        return np.ascontiguousarray(np.stack([gray] * 3, axis=-1))
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode != "RGB":
        image = image.convert("RGB")  # CMYK, L, 1, YCbCr, LAB, HSV ...
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def _oriented_size(image: Image.Image) -> tuple[int, int]:
    """The file's width and height once its EXIF orientation is applied."""
    width, height = image.size
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block is ignored here as exif_transpose ignores it
        orientation = 1
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def decode(
    source: str | Path | bytes | BinaryIO, *, max_pixels: int | None = None, min_longest: int | None = None
) -> tuple[np.ndarray, ImageInfo]:
    """Decode fully (so truncated data is caught) and return 8-bit RGB pixels and what the file is.

    With `min_longest`, a JPEG is decoded at the smallest DCT scale (1/2, 1/4 or 1/8, libjpeg's
    own scaling: several times cheaper than a full decode) whose longest side is still at least
    that; the pixels are then smaller than the file, whose full size ImageInfo keeps. Other
    formats ignore it."""
    image, handle = _open(source)
    try:
        _check_pixels(image, max_pixels)
        file_mode, file_format = image.mode, image.format or "unknown"
        full_size = _oriented_size(image)
        try:
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)  # GIF, multi-page TIFF: the first frame
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                width, height = image.size
                reduced = bool(min_longest) and max(width, height) >= 2 * min_longest
                if reduced:
                    # Pillow picks the largest reduction that keeps both sides at least this.
                    ratio = max(width, height) / min_longest
                    image.draft(None, (max(1, int(width / ratio)), max(1, int(height / ratio))))
                image.load()
                # In place: otherwise Pillow copies every photo without an orientation tag
                # (about 20 ms for 6 megapixels).
                ImageOps.exif_transpose(image, in_place=True)
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            message = str(exc)
            if "truncated" in message or isinstance(exc, EOFError):
                raise ImageRejected("truncated image data (the file ends early)") from exc
            raise ImageRejected(f"corrupt image data ({message})") from exc
        except Image.DecompressionBombError as exc:  # pragma: no cover (we check first)
            raise ImageRejected(str(exc)) from exc
        pixels = _to_rgb8(image)
        if not (reduced and max(pixels.shape[:2]) < max(full_size)):
            full_size = (pixels.shape[1], pixels.shape[0])
        return pixels, ImageInfo(full_size[0], full_size[1], file_format, file_mode)
    finally:
        if not isinstance(source, bytes) and isinstance(source, str | Path):
            handle.close()


def load_rgb(source: str | Path | bytes | BinaryIO, *, max_pixels: int | None = None) -> np.ndarray:
    """8-bit RGB pixels (H x W x 3) of an image file, path or bytes; raises ImageRejected."""
    return decode(source, max_pixels=max_pixels)[0]
