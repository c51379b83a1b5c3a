"""Face embeddings (issue 10): descriptor speed, near-duplicate precision/recall, nearest-neighbour
query time and the map's computation time, through the app's own functions (no database).

    .venv/bin/python bench/embeddings.py [--originals N] [--copies K] [--rate-photos N] [--quick]

1. Descriptors per second, on LFW photos of ../shared/datasets/dev (CURATOR_DEV_DATASET): the
   app's batch path (embeddings.features.face_cuts + features_of_cuts, as the embed queue runs it:
   dlib's 5-point shape, its 150-px chip and the region pHash per face, then 16 faces' chips and
   their mirrors in one call of the face network, embeddings.network) in 1 and in 2 processes, against
   dlib's own batch call `compute_face_descriptor(img, shapes)` on the same photos and shapes (one
   descriptor a face). A "descriptor" is one 128-D vector: the app computes two a face (the chip
   and its mirror, averaged for similarity). Median of --repeats runs.
2. Duplicate precision and recall on a labelled set built from the dev data (embeddings.dupset):
   --originals real faces (half LFW photos, half UTKFace crops) with --copies augmented copies
   each (JPEG quality 40-70, resized 0.5-1.5x, cropped 5-10 %, mirrored, brightness changed, and
   combinations); positives are (original, copy) and (copy, copy) pairs of one photo, negatives
   every pair of different photos. The groups are those of the duplicates page (complete
   linkage); distances of true and false pairs are printed for tuning.
   Look-alikes: --lookalike-photos dev photos (half LFW, half UTKFace, none of them copies), and
   of their pairs of different people the 200 whose face regions hash closest (same pose, same
   light, same framing: embeddings.dupset.lookalike_pairs); none of them may be flagged
   (`lookalike_flagged`), while the hash alone, the rule before issue 20, flagged some.
3. Nearest-neighbour query p50 over 100,000 vectors drawn around the set's real descriptors
   (embeddings.selectors.VectorIndex, the index behind similarity search), k=20.
4. Map of 10,000 such vectors: embeddings.projection.projection_compute when it exists (null
   otherwise).

Last line: {"descr_per_s_2", "dup_precision", "dup_recall", "lookalike_pairs", "lookalike_flagged",
"knn_p50_ms_100k", "map_10k_s"}.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "curator.settings")
os.environ.setdefault("DEBUG", "1")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402

from embeddings import dupset  # noqa: E402
from embeddings.duplicates import HASH_MAX_BITS, SAME_SHOT_DISTANCE  # noqa: E402


def dev_root() -> Path:
    from django.conf import settings

    return Path(settings.CURATOR_DEV_DATASET)


def photos_and_boxes(paths: list[Path]) -> list[tuple[np.ndarray, tuple]]:
    """Each photo's RGB and its largest face's landmark box (detection is not what is timed)."""
    from curator.faces.pipeline import AlignOptions, detect_and_align, landmark_box
    from curator.images import load_rgb

    out = []
    for path in paths:
        rgb = load_rgb(path.read_bytes())
        faces = detect_and_align(rgb, AlignOptions(whole_image_fallback=True))
        if faces:
            f = max(faces, key=lambda x: x.size_px)
            out.append(
                (rgb, landmark_box(width=rgb.shape[1], height=rgb.shape[0], box=f.box, whole_image=f.whole_image))
            )
    return out


def ours(work: list[tuple[np.ndarray, tuple]]) -> int:
    """The app's batch path (the embed queue's): every photo's cuts, then the chips and their
    mirrors through the face network in batches of BATCH faces."""
    from embeddings.features import NetworkFiles, face_cuts, features_of_cuts

    files = NetworkFiles(pretrained="")
    n = 0
    for start in range(0, len(work), BATCH):
        cuts = [cut for rgb, box in work[start : start + BATCH] for cut in face_cuts(rgb, [box])]
        n += 2 * len(features_of_cuts(cuts, files=files))  # the chip's descriptor and the mirror's
    return n


BATCH = 16  # faces per network call, as embeddings.descriptors sends them


def dlib_batch(work: list[tuple[np.ndarray, tuple]]) -> int:
    """dlib's own call on the photo with the faces' 5-point shapes (found as the app finds them)."""
    import dlib

    from curator.faces import chips, model_files

    network = dlib.face_recognition_model_v1(model_files.model_path(model_files.FACE_DESCRIPTOR_RESNET))
    n = 0
    for rgb, box in work:
        shape = chips.five_point_shape(rgb, box)
        shapes = dlib.full_object_detections()
        shapes.append(shape.shape)
        rows = network.compute_face_descriptor(shape.region, shapes)
        n += len(rows)
    return n


def _rate(fn, work, processes: int, pool=None) -> tuple[float, float]:
    """(descriptors per wall second, CPU ms per descriptor of this process: 1-process runs only)."""
    if processes == 1:
        wall, cpu = time.perf_counter(), time.process_time()
        n = fn(work)
        return n / (time.perf_counter() - wall), (time.process_time() - cpu) * 1000 / n
    parts = [work[i::processes] for i in range(processes)]
    wall = time.perf_counter()
    n = sum(pool.map(fn, parts))
    return n / (time.perf_counter() - wall), float("nan")


def descriptor_rates(paths: list[Path], repeats: int) -> dict:
    """Ours and dlib's call alternate within each repeat, so both meet the same load."""
    work = photos_and_boxes(paths)
    fns = {"ours": ours, "dlib_batch": dlib_batch}
    runs: dict[str, list] = {f"{name}_{p}": [] for name in fns for p in (1, 2)}
    cpu: dict[str, list] = {name: [] for name in fns}
    for fn in fns.values():
        fn(work[:2])  # load the networks outside the timing
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        for fn in fns.values():
            list(pool.map(fn, [work[:1], work[1:2]]))  # start and warm both processes
        for _ in range(repeats):
            for name, fn in fns.items():
                rate, ms = _rate(fn, work, 1)
                runs[f"{name}_1"].append(rate)
                cpu[name].append(ms)
                runs[f"{name}_2"].append(_rate(fn, work, 2, pool)[0])
    out = {key: round(statistics.median(values), 2) for key, values in runs.items()}
    for key, values in runs.items():
        print(f"  {key:13s} {out[key]:7.2f} descriptors/s  (runs {[round(r, 1) for r in values]})", flush=True)
    for name, values in cpu.items():
        out[f"{name}_cpu_ms"] = round(statistics.median(values), 1)
        print(f"  {name:13s} {out[f'{name}_cpu_ms']:7.1f} CPU ms per descriptor (1 process)", flush=True)
    # Per face: ours computes two descriptors a face (chip and mirror), dlib's call one.
    out["ours_faces_per_s_2"] = round(out["ours_2"] / 2, 2)
    out["dlib_faces_per_s_2"] = out["dlib_batch_2"]
    return out


def duplicate_set(originals: int, copies: int, seed: int):
    rows = list(csv.DictReader((dev_root() / "labels.csv").open()))
    rng = random.Random(seed)
    lfw = [r for r in rows if r["source"] == "LFW"]
    utk = [r for r in rows if r["source"] != "LFW"]
    pick = rng.sample(lfw, min(len(lfw), originals // 2)) + rng.sample(utk, originals - originals // 2)
    items = dupset.build_items(
        [dev_root() / r["path"] for r in pick], persons=[r["identity"] for r in pick], copies=copies, seed=seed
    )
    t = time.perf_counter()
    records = dupset.items_records(items, processes=2)
    print(
        f"  {len(items)} images ({originals} originals, {copies} copies each): features in {time.perf_counter() - t:.0f} s",
        flush=True,
    )
    return items, records


def lookalikes(photos: int, seed: int) -> dict:
    """Pairs of different people that look alike (embeddings.dupset.lookalike_pairs) among
    `photos` dev photos, and how many of them the duplicate tests flag."""
    rows = list(csv.DictReader((dev_root() / "labels.csv").open()))
    rng = random.Random(seed + 1)
    lfw = [r for r in rows if r["source"] == "LFW"]
    utk = [r for r in rows if r["source"] != "LFW"]
    pick = rng.sample(lfw, min(len(lfw), photos // 2))
    pick += rng.sample(utk, min(len(utk), photos - len(pick)))
    items = dupset.build_items([dev_root() / r["path"] for r in pick], persons=[r["identity"] for r in pick], copies=0)
    records = dupset.items_records(items, processes=2)
    people = [dupset.Person(r["identity"], r["gender"], r["race"], r["source"]) for r in pick]
    pairs = dupset.lookalike_pairs(people, records, count=200)
    # UTKFace holds some photos twice under different ages or genders (a baby under both): the
    # same shot by descriptor is a real copy, not two people; named, and left out of the count.
    copies = [(a, b) for a, b in pairs if (dupset_distance(records[a], records[b]) or 1.0) < SAME_SHOT_DISTANCE]
    for a, b in copies:
        print(f"    left out, one photo under two labels: {items[a].name} ~ {items[b].name}")
    pairs = [p for p in pairs if p not in copies]
    result = dupset.lookalikes_flagged(records, pairs)
    bits = [dupset_bits(records[a], records[b]) for a, b in pairs]
    print(
        f"  {len(items)} photos; {result['pairs']} look-alike pairs of different people (region hash {min(bits)}-{max(bits)} bits): "
        f"{result['flagged']} flagged (the hash alone would flag {result['flagged_by_hash_alone']}); "
        f"the nearest pair within the hash's {HASH_MAX_BITS} bits is {result['nearest_descriptor_within_hash']:.3f} apart by descriptor",
        flush=True,
    )
    for a, b, why in result["examples"]:
        print(f"    flagged: {items[a].name} ~ {items[b].name} {why}")
    return result


def dupset_distance(a, b) -> float | None:
    from embeddings.duplicates import descriptor_distance

    return descriptor_distance(a, b)


def dupset_bits(a, b) -> int:
    from embeddings.duplicates import region_hash_distance

    return region_hash_distance(a, b)


def knn_p50_ms(base: np.ndarray, n: int = 100_000, queries: int = 50, seed: int = 0) -> float:
    from embeddings.selectors import VectorIndex

    vectors = synthetic(base, n, seed)
    index = VectorIndex(np.arange(n, dtype=np.int64), vectors)
    rng = np.random.default_rng(seed + 1)
    times = []
    for q in vectors[rng.integers(0, n, queries)]:
        t = time.perf_counter()
        index.query(q, k=20)
        times.append((time.perf_counter() - t) * 1000)
    return round(float(np.median(times)), 2)


def synthetic(base: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n vectors around the real ones: a real descriptor plus noise of about a same-person spread."""
    rng = np.random.default_rng(seed)
    picks = base[rng.integers(0, len(base), n)]
    noise = rng.normal(size=picks.shape).astype(np.float32)
    noise *= 0.2 / np.linalg.norm(noise, axis=1, keepdims=True)
    return (picks + noise).astype(np.float32)


def map_seconds(base: np.ndarray) -> float | None:
    try:
        from embeddings.projection import projection_compute
    except ImportError:
        print("  embeddings.projection.projection_compute is not there: map time null")
        return None
    vectors = synthetic(base, 10_000, 3)
    t = time.perf_counter()
    xy = projection_compute(vectors)
    seconds = time.perf_counter() - t
    assert xy.shape == (10_000, 2)
    return round(seconds, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--originals", type=int, default=200)
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--rate-photos", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lookalike-photos", type=int, default=4300, help="all of the dev set by default")
    parser.add_argument("--rates-only", action="store_true", help="step 1 only")
    parser.add_argument("--lookalikes-only", action="store_true", help="the look-alike pairs only")
    parser.add_argument("--quick", action="store_true", help="60 originals, 1 copy, 16 photos for the rates, 1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.originals, args.copies, args.rate_photos, args.repeats = 60, 1, 16, 1

    if args.lookalikes_only:
        print("2. Look-alike pairs of different people", flush=True)
        found = lookalikes(args.lookalike_photos, args.seed)
        print(json.dumps({"lookalike_pairs": found["pairs"], "lookalike_flagged": found["flagged"]}))
        return

    lfw_paths = sorted((dev_root() / "lfw_wild").glob("*.jpg"))[: args.rate_photos]
    print(f"1. Descriptors per second ({len(lfw_paths)} LFW photos, median of {args.repeats})", flush=True)
    rates = descriptor_rates(lfw_paths, args.repeats)
    if args.rates_only:
        print(json.dumps({"descr_per_s_2": rates["ours_2"], "dlib_descr_per_s_2": rates["dlib_batch_2"]}))
        return

    print("2. Near-duplicates on the built set", flush=True)
    items, records = duplicate_set(args.originals, args.copies, args.seed)
    precision, recall, detail = dupset.measure(items, records)
    table = dupset.pair_distance_table(items, records)
    for key, values in table.items():
        if len(values):
            print(
                f"  {key:11s} n={len(values):6d}  min {values.min():.3f}  p1 {np.percentile(values, 1):.3f}  median {np.median(values):.3f}  p99 {np.percentile(values, 99):.3f}  max {values.max():.3f}"
            )
    print(
        f"  precision {precision:.4f}  recall {recall:.4f}  ({detail['pairs_found']} pairs grouped, {detail['pairs_true']} true)"
    )
    if detail["missed"]:
        print(f"  missed by kind {detail['missed_by_kind']}; e.g. {detail['missed'][:5]}")
    if detail["false"]:
        print(f"  false pairs e.g. {detail['false'][:5]}")

    print("   Look-alike pairs of different people", flush=True)
    found = lookalikes(args.lookalike_photos, args.seed)

    base = np.stack([r.vector for r in records if r.vector is not None])
    print("3. Nearest neighbours over 100,000 vectors", flush=True)
    knn = knn_p50_ms(base)
    print(f"  p50 {knn} ms (k=20, brute force over a float32 matrix)")
    print("4. Map of 10,000 faces", flush=True)
    map_s = map_seconds(base)
    print(f"  {map_s} s")
    print(
        f"  descriptors: ours {rates['ours_2']}/s vs dlib's batch call {rates['dlib_batch_2']}/s with 2 processes "
        f"({rates['ours_faces_per_s_2']} vs {rates['dlib_faces_per_s_2']} faces/s)"
    )
    print(
        json.dumps(
            {
                "descr_per_s_2": rates["ours_2"],
                "dup_precision": round(precision, 4),
                "dup_recall": round(recall, 4),
                "lookalike_pairs": found["pairs"],
                "lookalike_flagged": found["flagged"],
                "knn_p50_ms_100k": knn,
                "map_10k_s": map_s,
            }
        )
    )


if __name__ == "__main__":
    main()
