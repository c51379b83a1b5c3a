"""Alignment throughput: images per second through the face pipeline (decode as an align worker
does, `load_photo`: a large JPEG at a reduced DCT scale; coarse-to-fine HOG detection up to a
1024-px copy upsampled once; 68 landmarks, OpenFace warp, quality, JPEG encode of every crop) with 1 and 2
worker processes over ../shared/datasets/dev/lfw_wild (300 photos of 250x250), faces found, and
what a large photo (about 3000x2000) costs against the same photo at 1024 px.

It measures the pipeline through a real process pool (each process loads the dlib models once,
as an `align` worker process does), not the database or broker around it.

    .venv/bin/python bench/align.py [--repeats 3] [--images DIR]

Prints the figures of each run, their medians, and ends with one JSON line."""

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "curator.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")

import django  # noqa: E402

django.setup()

import cv2  # noqa: E402
from django.conf import settings  # noqa: E402

from curator.faces.detection import hog_detector  # noqa: E402
from curator.faces.landmarks import shape_predictor  # noqa: E402
from curator.faces.pipeline import AlignOptions, detect_and_align, encode_jpeg, load_photo  # noqa: E402
from curator.images import load_rgb  # noqa: E402

OPTIONS = AlignOptions()  # the defaults: HOG, upsample 1, 1024-px detection, 160-px crops


def _load_models() -> None:
    hog_detector()
    shape_predictor()


def align_file(path: str) -> int:
    """What an align worker does with one photo, minus the database: returns the faces found."""
    faces = detect_and_align(load_photo(path, OPTIONS), OPTIONS)
    for face in faces:
        encode_jpeg(face.crop)
    return len(faces)


def align_file_timed(path: str) -> tuple[int, float]:
    """Faces found and the CPU seconds this process spent on the photo."""
    start = time.process_time()
    count = align_file(path)
    return count, time.process_time() - start


def throughput(paths: list[str], processes: int) -> tuple[float, list[int], float]:
    """Images per second (wall clock), faces per photo, and CPU milliseconds per photo. On a
    shared machine the wall-clock rate depends on what else runs; the CPU time much less."""
    context = multiprocessing.get_context("fork")
    with context.Pool(processes, initializer=_load_models) as pool:
        pool.map(_load_models_task, range(processes * 2))  # every process warm before timing
        start = time.perf_counter()
        results = pool.map(align_file_timed, paths, chunksize=settings.CURATOR_ALIGN_CHUNK_SIZE)
        elapsed = time.perf_counter() - start
    counts = [count for count, _ in results]
    cpu_ms = 1000 * sum(cpu for _, cpu in results) / len(paths)
    return len(paths) / elapsed, counts, cpu_ms


def _load_models_task(_: int) -> None:
    _load_models()


def make_large_photos(paths: list[str], folder: Path, count: int) -> list[tuple[str, str]]:
    """Pairs (about 3000x2000, 1024x683) of the same scene: a photo upscaled 8x, widened to 3:2
    with mirrored borders, saved as JPEG like a camera photo."""
    pairs = []
    for i, path in enumerate(paths[:count]):
        rgb = load_rgb(path)
        big = cv2.resize(rgb, (2000, 2000), interpolation=cv2.INTER_CUBIC)
        big = cv2.copyMakeBorder(big, 0, 0, 500, 500, cv2.BORDER_REFLECT)  # 3000 x 2000
        small = cv2.resize(big, (1024, 683), interpolation=cv2.INTER_AREA)
        pair = []
        for name, image in (("large", big), ("small", small)):
            target = folder / f"{name}-{i}.jpg"
            cv2.imwrite(str(target), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
            pair.append(str(target))
        pairs.append(tuple(pair))
    return pairs


def large_and_small_seconds(pairs: list[tuple[str, str]], rounds: int = 2) -> tuple[float, float]:
    """Median time of one large and of one 1024-px photo, in this (warm) process. Each pair is
    timed back to back, so a busy spell on the shared machine slows both alike."""
    large, small = [], []
    for _ in range(rounds):
        for large_path, small_path in pairs:
            for path, times in ((large_path, large), (small_path, small)):
                start = time.perf_counter()
                align_file(path)
                times.append(time.perf_counter() - start)
    return statistics.median(large), statistics.median(small)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=Path(settings.CURATOR_DEV_DATASET) / "lfw_wild")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large", type=int, default=12, help="how many large/1024-px pairs to time")
    args = parser.parse_args()
    paths = sorted(str(p) for p in args.images.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not paths:
        sys.exit(f"no photos in {args.images}")
    print(f"{len(paths)} photos from {args.images}; {os.cpu_count()} CPUs; options {OPTIONS.as_dict()}")

    _load_models()
    runs_1, runs_2, ratios, cpu_ms, load = [], [], [], [], []
    faces = no_face = 0
    with tempfile.TemporaryDirectory() as tmp:
        pairs = make_large_photos(paths, Path(tmp), args.large)
        for run in range(1, args.repeats + 1):
            rate_1, _, cpu_1 = throughput(paths, 1)
            rate_2, counts, cpu_2 = throughput(paths, 2)
            cpu_ms.append((cpu_1 + cpu_2) / 2)
            load.append(os.getloadavg()[0])
            faces, no_face = sum(counts), sum(1 for c in counts if c == 0)
            large, small = large_and_small_seconds(pairs)
            runs_1.append(rate_1)
            runs_2.append(rate_2)
            ratios.append(large / small)
            print(
                f"run {run}: {rate_1:6.1f} images/s with 1 process, {rate_2:6.1f} with 2; "
                f"{faces} faces, {no_face} photos without a face; "
                f"3000x2000 {large * 1000:.0f} ms vs 1024x683 {small * 1000:.0f} ms (x{large / small:.2f}); "
                f"{cpu_ms[-1]:.1f} CPU ms per 250-px photo; load average {load[-1]:.1f}"
            )
    result = {
        "images_per_s_1": round(statistics.median(runs_1), 1),
        "images_per_s_2": round(statistics.median(runs_2), 1),
        "faces": faces,
        "no_face": no_face,
        "large_vs_1024_ratio": round(statistics.median(ratios), 2),
    }
    cpu = statistics.median(cpu_ms)
    print(
        f"CPU time per 250-px photo: {cpu:.1f} ms, so {1000 / cpu:.0f} images/s per idle core "
        f"({2000 / cpu:.0f} on two); the wall-clock rates above share the CPUs with everything else running"
    )
    print(
        f"medians of {args.repeats} runs: {result['images_per_s_1']} / {result['images_per_s_2']} images/s, "
        f"large photo x{result['large_vs_1024_ratio']} a 1024-px one (goals: >= 50 images/s with 2, <= 2x)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
