"""Alignment cost per photo and faces found, before and after a change of the face pipeline:
CPU seconds per photo (time.process_time in one warm process: decode from the file's bytes,
detect, landmarks, warp, quality, JPEG encode of every crop) on large web-sized photos and on
LFW-size ones, and the faces found on each folder, matched box to box (IoU >= 0.5) against
the "before" code.

"Before" is the same measurement run by another checkout of the repository (its own
curator/faces), e.g. git HEAD in a temporary worktree:

    git worktree add /tmp/align-before HEAD
    .venv/bin/python bench/align_cost.py --before /tmp/align-before [--sets /tmp/align-sets]
    git worktree remove /tmp/align-before

The folders: `large` and `nonfaces` built by bench/nonfaces.py into --sets (built on first use),
and the dev set's lfw_wild (300 photos of 250x250) and utkface_cropped (4,000 crops of 200x200;
--utk N takes every k-th for N of them). The options are a new dataset's defaults (HOG,
upsample 1, 1024-px detection, 160-px crops, keep undetected crops on). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("large", "lfw", "utk", "nonfaces")
# The kinds of photo in the large folder (bench/nonfaces.py), by file name prefix.
KINDS = (
    ("single_face", "up-"),
    ("half_length", "half-"),
    ("small_face", "small-"),
    ("group", "tile-"),
    ("no_face", "scene-"),
)


def _setup(tree: Path) -> None:
    sys.path.insert(0, str(tree))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "curator.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
    import django

    django.setup()


def measure(tree: Path, paths: list[str]) -> list[dict]:
    """In this process, with `tree`'s pipeline: per photo, CPU seconds and the face boxes."""
    _setup(tree)
    from curator.faces import pipeline
    from curator.faces.detection import hog_detector
    from curator.faces.landmarks import shape_predictor

    options = pipeline.AlignOptions(whole_image_fallback=True)
    load_photo = getattr(pipeline, "load_photo", None)  # absent in the code before the change
    if load_photo is None:
        from curator.images import load_rgb

        def load_photo(data, _options):
            return load_rgb(data)

    hog_detector(), shape_predictor()
    rows = []
    for path in paths:
        data = Path(path).read_bytes()  # the worker reads from storage: not timed as decoding
        start = time.process_time()
        faces = pipeline.detect_and_align(load_photo(data, options), options)
        for face in faces:
            pipeline.encode_jpeg(face.crop)
        cpu = time.process_time() - start
        rows.append(
            {
                "name": Path(path).name,
                "cpu_s": cpu,
                "boxes": [list(map(int, f.box)) for f in faces],
                "whole": [bool(f.whole_image) for f in faces],
            }
        )
    return rows


def _run_tree(tree: Path, paths: list[str]) -> list[dict]:
    """measure() in a fresh process for one checkout (its modules must not mix with ours)."""
    result = subprocess.run(
        [sys.executable, __file__, "--measure", str(tree)],
        input=json.dumps(paths),
        capture_output=True,
        text=True,
        check=True,
        cwd=tree,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def _iou(a, b) -> float:
    left, top, right, bottom = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, right - left) * max(0, bottom - top)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def compare(before: list[dict], after: list[dict]) -> dict:
    """Faces kept, lost and new (box matched at IoU >= 0.5), photos with a face before/after."""
    kept = lost = new = 0
    changed = []
    for old, now in zip(before, after, strict=True):
        used: set[int] = set()
        for box in old["boxes"]:
            match = next((i for i, b in enumerate(now["boxes"]) if i not in used and _iou(box, b) >= 0.5), None)
            if match is None:
                lost += 1
            else:
                kept += 1
                used.add(match)
        new += len(now["boxes"]) - len(used)
        if len(old["boxes"]) != len(now["boxes"]) or len(used) != len(old["boxes"]):
            changed.append(f"{old['name']} {len(old['boxes'])}->{len(now['boxes'])}")
    return {
        "kept": kept,
        "lost": lost,
        "new": new,
        "photos_with_face_before": sum(1 for r in before if r["boxes"]),
        "photos_with_face_after": sum(1 for r in after if r["boxes"]),
        "changed": changed,
    }


def _by_kind(rows: list[dict], entry: dict, when: str) -> str:
    parts = []
    for kind, prefix in KINDS:
        cpu = [r["cpu_s"] for r in rows if r["name"].startswith(prefix)]
        if cpu:
            entry[f"cpu_s_{when}_{kind}"] = round(statistics.mean(cpu), 4)
            parts.append(f"{kind.replace('_', ' ')} {statistics.mean(cpu):.4f}")
    return f" ({when}: {', '.join(parts)})"


def folder_paths(name: str, sets: Path, dev: Path, utk: int) -> list[str]:
    if name == "lfw":
        folder = dev / "lfw_wild"
    elif name == "utk":
        folder = dev / "utkface_cropped"
    else:
        folder = sets / name
    paths = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if name == "utk" and utk and utk < len(paths):
        paths = paths[:: len(paths) // utk][:utk]
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="a checkout of the code before the change")
    parser.add_argument("--sets", type=Path, default=Path("/tmp/align-sets"))
    parser.add_argument("--folders", default=",".join(FOLDERS))
    parser.add_argument("--utk", type=int, default=0, help="how many UTKFace crops (0: all 4,000)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # the child process of _run_tree
        print(json.dumps(measure(args.measure, json.loads(sys.stdin.read()))))
        return

    dev = Path(os.environ.get("CURATOR_DEV_DATASET", ROOT.parent / "shared" / "datasets" / "dev"))
    if not (args.sets / "large").is_dir() or not (args.sets / "nonfaces").is_dir():
        subprocess.run([sys.executable, str(ROOT / "bench" / "nonfaces.py"), str(args.sets)], check=True)
    result: dict = {}
    for name in args.folders.split(","):
        paths = folder_paths(name, args.sets, dev, args.utk)
        after = _run_tree(ROOT, paths)
        cpu_after = statistics.mean(r["cpu_s"] for r in after)
        faces_after = sum(len(r["boxes"]) for r in after)
        line = f"{name}: {len(paths)} photos; after {cpu_after:.4f} CPU-s/photo, {faces_after} faces"
        entry = {"photos": len(paths), "cpu_s_after": round(cpu_after, 4), "faces_after": faces_after}
        if name in ("utk", "lfw", "nonfaces"):
            entry["whole_after"] = sum(sum(r["whole"]) for r in after)
        if name == "large":  # portraits (one big face) and group photos (tiles of small faces) apart
            line += _by_kind(after, entry, "after")
        if args.before:
            before = _run_tree(args.before, paths)
            cpu_before = statistics.mean(r["cpu_s"] for r in before)
            diff = compare(before, after)
            entry.update(
                cpu_s_before=round(cpu_before, 4),
                faces_before=sum(len(r["boxes"]) for r in before),
                kept=diff["kept"],
                lost=diff["lost"],
                new=diff["new"],
                with_face_before=diff["photos_with_face_before"],
                with_face_after=diff["photos_with_face_after"],
            )
            if name in ("utk", "lfw", "nonfaces"):
                entry["whole_before"] = sum(sum(r["whole"]) for r in before)
            line += (
                f"; before {cpu_before:.4f} CPU-s/photo, {entry['faces_before']} faces "
                f"(x{cpu_before / cpu_after:.1f} cheaper now); faces kept {diff['kept']}, lost {diff['lost']}, "
                f"new {diff['new']}; photos with a face {diff['photos_with_face_before']} -> "
                f"{diff['photos_with_face_after']}"
            )
            if name == "large":
                line += _by_kind(before, entry, "before")
            if diff["changed"]:
                line += f"\n  changed: {', '.join(diff['changed'][:20])}{' ...' if len(diff['changed']) > 20 else ''}"
        else:
            entry["with_face_after"] = sum(1 for r in after if r["boxes"])
        if "whole_after" in entry:
            line += f"; kept whole {entry.get('whole_before', '?')} -> {entry['whole_after']}"
        print(line, flush=True)
        result[name] = entry
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
