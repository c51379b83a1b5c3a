"""Builds the photo folders the alignment benchmarks and tests measure on, from the dev set only
(nothing downloaded):

- large/: web-sized photos of real faces. `up-*`: an LFW photo upscaled 6-8x onto a
  3000x2000 (or 2400x1600, 2048x1365) scene whose borders are blurred, mirrored and tinted
  copies of other LFW photos, the face placed anywhere; `tile-*`: 3x2, 4x3, 6x4 or 8x6 LFW
  photos tiled into one 3000x2000 photo, so there are several smaller faces (about 330, 220
  and 165 px in the original, 113, 75 and 56 px at the 1024-px detection size); `scene-*`:
  the same blurred scenes without any face; `half-*`: half-length portraits, an LFW photo
  scaled so that its face is 7-20 % of the longest side (200-600 px in a 3000-px photo: too
  small for the 512-px pass to settle, or to find at all), put on such a scene; `small-*`: the
  same with a face of 3.5-7 % (105-210 px), which only the upsampled 2048-px pass finds. JPEG q=90.
- nonfaces/: photos without a face, most of them shaped like a face crop (square-ish, at most
  640 px: the only photos the whole-photo fallback may keep): background corners of LFW
  photos (outside every detected face box, with a margin), the same from the large scenes,
  textures (noise, stripes, checks, blurred blobs, gradients), drawn objects (clock and watch
  faces, logos, text, shapes) and UTKFace crops turned upside down or on their side (a face
  the pipeline cannot align is not a face to keep whole).

    .venv/bin/python bench/nonfaces.py OUT_DIR [--large 24] [--nonfaces 300] [--scenes 6] [--half-length 12]
        [--small-faces 12]

Prints what it wrote and ends with one JSON line. Seeded: the same folders every time."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
DEV = Path(os.environ.get("CURATOR_DEV_DATASET", ROOT.parent / "shared" / "datasets" / "dev"))
SIZES = [(3000, 2000), (3000, 2000), (2400, 1600), (2048, 1365)]
TILINGS = [(3, 2), (4, 3), (6, 4), (8, 6)]


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _save(rgb: np.ndarray, path: Path, quality: int = 90) -> None:
    Image.fromarray(rgb).save(path, quality=quality)


def lfw_paths() -> list[Path]:
    return sorted((DEV / "lfw_wild").glob("*.jpg"))


def utk_paths() -> list[Path]:
    return sorted((DEV / "utkface_cropped").glob("*.jpg"))


def _scene(rng: np.random.Generator, width: int, height: int, others: list[Path]) -> np.ndarray:
    """A background: another LFW photo blown up, blurred hard (so no face survives), mirrored,
    tinted and with some noise, like an out-of-focus scene."""
    base = _rgb(others[rng.integers(len(others))])
    base = cv2.resize(base, (width // 8, height // 8), interpolation=cv2.INTER_AREA)
    base = cv2.GaussianBlur(base, (0, 0), 6)
    if rng.random() < 0.5:
        base = base[:, ::-1]
    scene = cv2.resize(np.ascontiguousarray(base), (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    scene = scene * rng.uniform(0.7, 1.1, 3) + rng.normal(0, 4, scene.shape)
    return np.clip(scene, 0, 255).astype(np.uint8)


def _face_on_scene(
    rng: np.random.Generator, width: int, height: int, face_photo: np.ndarray, side: int, others: list[Path]
) -> np.ndarray:
    """A blurred scene with the face photo scaled to side x side put anywhere on it."""
    scene = _scene(rng, width, height, others)
    x, y = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
    scene[y : y + side, x : x + side] = cv2.resize(face_photo, (side, side), interpolation=cv2.INTER_CUBIC)
    return scene


def build_large(out: Path, count: int, seed: int = 12) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = lfw_paths()
    picks = rng.permutation(len(paths))
    written = []
    upscaled = count - count // 3
    for i in range(upscaled):
        width, height = SIZES[i % len(SIZES)]
        face_photo = _rgb(paths[picks[i]])
        side = int(height * rng.uniform(0.75, 1.0))  # the 250-px photo blown up 6-8x
        target = out / f"up-{i:03d}.jpg"
        _save(_face_on_scene(rng, width, height, face_photo, side, paths), target)
        written.append(target)
    for j in range(count - upscaled):
        columns, rows = TILINGS[j % len(TILINGS)]
        tile_w, tile_h = 3000 // columns, 2000 // rows
        tiles = []
        for r in range(rows):
            row = []
            for c in range(columns):
                photo = _rgb(paths[picks[(upscaled + j * 48 + r * columns + c) % len(paths)]])
                row.append(cv2.resize(photo, (tile_w, tile_h), interpolation=cv2.INTER_CUBIC))
            tiles.append(np.hstack(row))
        target = out / f"tile-{columns}x{rows}-{j:03d}.jpg"
        _save(np.vstack(tiles), target)
        written.append(target)
    return written


def build_scenes(out: Path, count: int, seed: int = 13) -> list[Path]:
    """`scene-*`: large photos without a face (the blurred scenes the `up-*` faces are put on),
    in the large folder: what a web photo of a landscape, a product or a crowd too far away
    costs, where every detection pass runs and finds nothing."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = []
    for i in range(count):
        width, height = SIZES[i % len(SIZES)]
        target = out / f"scene-{i:03d}.jpg"
        _save(_scene(rng, width, height, lfw_paths()), target)
        written.append(target)
    return written


LFW_FACE_SHARE = 0.42  # an LFW photo's detected face box is about 105 of its 250 px


def build_portraits(out: Path, count: int, *, prefix: str, shares: tuple[float, float], seed: int) -> list[Path]:
    """`prefix-*`: one face per photo, its box `shares` of the longest side (evenly spread over
    the photos), on a blurred scene."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = lfw_paths()
    written = []
    for i, share in enumerate(np.linspace(*shares, count)):
        width, height = SIZES[i % len(SIZES)]
        side = min(height, round(share * width / LFW_FACE_SHARE))
        face_photo = _rgb(paths[int(rng.integers(len(paths)))])
        target = out / f"{prefix}-{i:03d}.jpg"
        _save(_face_on_scene(rng, width, height, face_photo, side, paths), target)
        written.append(target)
    return written


def build_half_length(out: Path, count: int) -> list[Path]:
    """`half-*`: a face of 7-20 % of the longest side, the size of a half-length or
    full-length portrait on the web."""
    return build_portraits(out, count, prefix="half", shares=(0.07, 0.20), seed=14)


def build_small_faces(out: Path, count: int) -> list[Path]:
    """`small-*`: a face of 3.5-7 % of the longest side (105-210 px in a 3000-px photo), a
    person standing in a street or a room: only the upsampled pass finds it."""
    return build_portraits(out, count, prefix="small", shares=(0.035, 0.07), seed=21)


# --- Non-face photos --------------------------------------------------------------------------------


def _face_boxes(rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
    import dlib

    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    back = max(1.0, max(grey.shape) / 800)  # the scenes' faces are large: 800 px is plenty
    if back > 1:
        grey = cv2.resize(grey, None, fx=1 / back, fy=1 / back, interpolation=cv2.INTER_AREA)
    rects, _, _ = dlib.get_frontal_face_detector().run(grey, 1, -0.5)
    return [tuple(round(v * back) for v in (r.left(), r.top(), r.right() + 1, r.bottom() + 1)) for r in rects]


def _background_crops(
    rgb: np.ndarray, rng: np.random.Generator, tries: int, min_side: int, margin: float = 0.5
) -> list[np.ndarray]:
    """Square regions that stay clear of every face box (even a weak one) grown by `margin` of
    its size on each side."""
    height, width = rgb.shape[:2]
    grown = []
    for left, top, right, bottom in _face_boxes(rgb):
        mx, my = round((right - left) * margin), round((bottom - top) * margin)
        grown.append((left - mx, top - my, right + mx, bottom + my))
    crops = []
    for _ in range(tries):
        side = int(rng.integers(min_side, max(min_side + 1, min(height, width) // 2)))
        x, y = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
        if any(x < x1 and x + side > x0 and y < y1 and y + side > y0 for x0, y0, x1, y1 in grown):
            continue
        crops.append(rgb[y : y + side, x : x + side])
    return crops


def _texture(rng: np.random.Generator, side: int) -> np.ndarray:
    kind = rng.integers(5)
    if kind == 0:  # blurred coloured noise
        small = rng.random((side // 16, side // 16, 3)) * 255
        image = cv2.resize(small, (side, side), interpolation=cv2.INTER_CUBIC)
    elif kind == 1:  # stripes at an angle
        yy, xx = np.mgrid[:side, :side]
        angle, period = rng.uniform(0, np.pi), rng.uniform(6, 40)
        wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
        image = (wave[..., None] * 100 + 128) * rng.uniform(0.5, 1.0, 3)
    elif kind == 2:  # checks
        cell = int(rng.integers(8, 50))
        yy, xx = np.mgrid[:side, :side]
        image = (((xx // cell + yy // cell) % 2) * 180 + 40)[..., None] * np.ones(3)
    elif kind == 3:  # fine noise
        image = rng.normal(128, 40, (side, side, 3))
    else:  # a lit gradient with blobs
        yy, xx = np.mgrid[:side, :side] / side
        image = (xx * 120 + yy * 80)[..., None] + rng.uniform(40, 80, 3)
        for _ in range(int(rng.integers(2, 7))):
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.25)
            image += ((xx - cx) ** 2 + (yy - cy) ** 2 < r * r)[..., None] * rng.uniform(-80, 80, 3)
    return np.clip(image, 0, 255).astype(np.uint8)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover (old Pillow)
        return ImageFont.load_default()


def _drawing(rng: np.random.Generator, side: int) -> np.ndarray:
    background = tuple(int(v) for v in rng.integers(150, 256, 3))
    image = Image.new("RGB", (side, side), background)
    draw = ImageDraw.Draw(image)
    ink = tuple(int(v) for v in rng.integers(0, 90, 3))
    kind = rng.integers(4)
    c = side / 2
    if kind == 0:  # a clock or watch face: rim, 12 ticks, two hands, maybe a strap
        r = side * rng.uniform(0.3, 0.45)
        if rng.random() < 0.5:
            draw.rectangle((c - r * 0.5, 0, c + r * 0.5, side), fill=tuple(int(v) for v in rng.integers(30, 120, 3)))
        draw.ellipse((c - r, c - r, c + r, c + r), fill=(240, 240, 235), outline=ink, width=max(2, side // 40))
        for hour in range(12):
            a = hour * np.pi / 6
            draw.line(
                (c + 0.8 * r * np.cos(a), c + 0.8 * r * np.sin(a), c + 0.95 * r * np.cos(a), c + 0.95 * r * np.sin(a)),
                fill=ink,
                width=max(2, side // 60),
            )
        for length, angle in ((0.5, rng.uniform(0, 2 * np.pi)), (0.8, rng.uniform(0, 2 * np.pi))):
            draw.line((c, c, c + length * r * np.cos(angle), c + length * r * np.sin(angle)), fill=ink, width=4)
    elif kind == 1:  # a logo: shapes and a word
        for _ in range(3):
            x0, y0 = rng.uniform(0, side * 0.6, 2)
            x1, y1 = x0 + rng.uniform(side * 0.2, side * 0.4), y0 + rng.uniform(side * 0.2, side * 0.4)
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
        draw.text((side * 0.1, side * 0.75), "ACME", fill=ink, font=_font(side // 8))
    elif kind == 2:  # text
        for line in range(6):
            words = " ".join(
                "".join(chr(97 + int(v)) for v in rng.integers(0, 26, rng.integers(2, 8))) for _ in range(3)
            )
            draw.text((side * 0.05, side * (0.08 + line * 0.15)), words, fill=ink, font=_font(side // 12))
    else:  # two circles and a line: the shapes a face detector could be fooled by
        r = side * 0.08
        for x in (0.35, 0.65):
            draw.ellipse((side * x - r, side * 0.4 - r, side * x + r, side * 0.4 + r), fill=ink)
        draw.rectangle((side * 0.2, side * 0.7, side * 0.8, side * 0.75), fill=ink)
    return np.asarray(image)


def build_nonfaces(out: Path, count: int, seed: int = 7, large: list[Path] | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written: list[Path] = []

    def keep(rgb: np.ndarray, name: str) -> None:
        target = out / f"{name}-{len(written):04d}.jpg"
        _save(np.ascontiguousarray(rgb), target)
        written.append(target)

    share = count // 6
    lfw = lfw_paths()
    for path in [lfw[i] for i in rng.permutation(len(lfw))]:
        if len(written) >= share:
            break
        # LFW photos are framed on one face: what lies a fifth of a box away from it is scene.
        for crop in _background_crops(_rgb(path), rng, tries=20, min_side=40, margin=0.2)[:1]:
            side = int(rng.choice([160, 200, 250]))
            keep(cv2.resize(crop, (side, side), interpolation=cv2.INTER_CUBIC), "lfw-background")
    for path in large or []:
        if len(written) >= 2 * share:
            break
        rgb = _rgb(path)
        if not path.name.startswith("up-"):
            continue
        for crop in _background_crops(rgb, rng, tries=12, min_side=200)[:3]:
            side = int(rng.choice([200, 320, 480, 640]))
            keep(cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA), "scene-background")
    for _ in range(share):
        keep(_texture(rng, int(rng.choice([200, 256, 320]))), "texture")
    for _ in range(share):
        keep(_drawing(rng, int(rng.choice([200, 256, 400]))), "drawing")
    utk = utk_paths()
    for index in rng.permutation(len(utk))[: count - len(written)]:
        face = _rgb(utk[index])
        turn = rng.random()
        if turn < 0.35:
            keep(face[::-1], "utk-flipped")  # mirrored top to bottom
        elif turn < 0.7:
            keep(np.rot90(face, 2), "utk-upside-down")
        else:
            keep(np.rot90(face, 1 if turn < 0.85 else 3), "utk-on-its-side")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--large", type=int, default=24)
    parser.add_argument("--nonfaces", type=int, default=300)
    parser.add_argument("--scenes", type=int, default=6, help="large photos without a face, in large/")
    parser.add_argument("--half-length", type=int, default=12, help="half-length portraits, in large/")
    parser.add_argument("--small-faces", type=int, default=12, help="photos of one small face, in large/")
    args = parser.parse_args()
    large = build_large(args.out / "large", args.large)
    nonfaces = build_nonfaces(args.out / "nonfaces", args.nonfaces, large=large)
    large += build_scenes(args.out / "large", args.scenes)
    large += build_half_length(args.out / "large", args.half_length)
    large += build_small_faces(args.out / "large", args.small_faces)
    kinds: dict[str, int] = {}
    for path in nonfaces:
        kind = path.stem.rsplit("-", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    print(
        f"{len(large)} large photos in {args.out / 'large'}; {len(nonfaces)} non-face photos in {args.out / 'nonfaces'}"
    )
    print(json.dumps({"large": len(large), "nonfaces": len(nonfaces), "kinds": kinds}))


if __name__ == "__main__":
    sys.exit(main())
