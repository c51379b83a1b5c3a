"""Training memory against the number of faces: one epoch of a CNN (training.engine.fit, the job's
own pipeline) over a synthetic dataset of N faces, in a fresh process per size, with its peak RSS
(VmHWM). The crops stream from storage (training.engine.file_dataset), so the peak should not grow
with N; `--held` also runs the former pipeline (every crop's bytes in memory, the decoded images
cached) at the smallest size, for comparison.

    .venv/bin/python bench/train_stream.py [--faces 20000,100000] [--held] [--architecture seed-cnn] [--input-size 32]

A few hundred real crops of the dev set (CURATOR_DEV_DATASET's utkface_cropped) are copied into the
bench media folder once (MEDIA_ROOT, default var/bench-media) and read through Django's
default_storage; every face is one of them (the files are reused across faces, as in
bench/million.py), with a random label; 2 % of the faces are the validation split, streamed too.
No database. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import bench_environment  # noqa: E402 (bench/, beside this script)

bench_environment("postgres://postgres@127.0.0.1:5432/curator_bench")

SEED_CROPS = 300
FOLDER = "bench-train-stream/crops"
VAL_SHARE = 0.02


def memory_mb(field: str) -> float:
    """VmHWM (peak) or VmRSS (now) of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def seed_crops() -> list[str]:
    """Storage paths of the real crops, copied into storage on the first run."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    dev = Path(os.environ.get("CURATOR_DEV_DATASET", "/work/shared/datasets/dev")) / "utkface_cropped"
    sources = sorted(dev.glob("*.jpg"))[:SEED_CROPS]
    if len(sources) < SEED_CROPS:
        sys.exit(f"{dev} has {len(sources)} crops; the bench needs {SEED_CROPS}.")
    paths = []
    for i, source in enumerate(sources):
        path = f"{FOLDER}/{i}.jpg"
        if not default_storage.exists(path):
            default_storage.save(path, ContentFile(source.read_bytes()))
        paths.append(path)
    return paths


def held_dataset(engine, paths, labels, *, read, size, batch_size, shuffle, seed):
    """The pipeline before streaming: every file's bytes in memory, the decoded images cached."""
    tf = engine.tf
    blobs = [read(path) for path in paths]

    def decode(blob, label):
        image = tf.io.decode_image(blob, channels=3, expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32), (size, size), antialias=True)
        image.set_shape((size, size, 3))
        return image, label

    ds = tf.data.Dataset.from_tensor_slices((tf.constant(blobs, dtype=tf.string), labels))
    ds = ds.map(decode, num_parallel_calls=engine.AUTOTUNE).cache()
    if shuffle:
        ds = ds.shuffle(len(blobs), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(engine.AUTOTUNE)


def child(faces: int, architecture: str, held: bool, input_size: int) -> dict:
    """One epoch over `faces` faces in this process; its figures."""
    import django

    django.setup()
    from training import engine
    from training.config import config_build
    from training.data import read_storage_file

    crops = seed_crops()
    rng = np.random.default_rng(0)
    n_val = max(1, int(faces * VAL_SHARE))
    n_train = faces - n_val
    # What a job holds: a path and a label per face.
    paths = [crops[i] for i in rng.integers(0, len(crops), faces)]
    labels = rng.integers(0, 2, faces).astype(np.int64)
    if held:
        engine.image_dataset = lambda *args, **kwargs: held_dataset(engine, *args, **kwargs)
    config = config_build(architecture, {"epochs": 1, "patience": 1, "input_size": input_size})
    before_mb = memory_mb("VmRSS")
    started = time.monotonic()
    result = engine.fit(
        architecture=architecture,
        config=config,
        classes=["female", "male"],
        train_inputs=paths[:n_train],
        train_labels=labels[:n_train],
        val_inputs=paths[n_train:],
        val_labels=labels[n_train:],
        reporter=engine.ConsoleReporter(verbose=False),
        read=read_storage_file,
    )
    seconds = time.monotonic() - started
    return {
        "faces": faces,
        "pipeline": "held" if held else "stream",
        "epoch_s": round(seconds, 1),
        "faces_per_s": round(faces / seconds),
        "rss_before_fit_mb": round(before_mb),
        "peak_rss_mb": round(memory_mb("VmHWM")),
        "epochs_done": len(result.history),
    }


def run_child(faces: int, architecture: str, held: bool, input_size: int) -> dict:
    command = [sys.executable, __file__, "--child", str(faces), "--architecture", architecture]
    command += ["--input-size", str(input_size)]
    if held:
        command.append("--held")
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", default="20000,100000", help="comma-separated dataset sizes")
    parser.add_argument("--architecture", default="seed-cnn", choices=["cnn", "seed-cnn"])
    parser.add_argument("--input-size", type=int, default=32, help="side of the resized crops (small: 2 cores)")
    parser.add_argument("--held", action="store_true", help="also run the former in-memory pipeline (smallest size)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.architecture, args.held, args.input_size)), flush=True)
        return

    import django

    django.setup()
    seed_crops()  # once, before the children time anything
    sizes = [int(s) for s in args.faces.split(",")]
    rows = [run_child(n, args.architecture, held=False, input_size=args.input_size) for n in sizes]
    if args.held:
        rows.append(run_child(min(sizes), args.architecture, held=True, input_size=args.input_size))
    print(
        f"One epoch of {args.architecture} (default config, {args.input_size}-px input), {SEED_CROPS} real crops reused:"
    )
    for row in rows:
        print(
            f"  {row['pipeline']:>6} {row['faces']:>8,} faces: {row['epoch_s']:7.1f} s ({row['faces_per_s']} faces/s), "
            f"RSS before fit {row['rss_before_fit_mb']} MB, peak {row['peak_rss_mb']} MB"
        )
    streamed = [r for r in rows if r["pipeline"] == "stream"]
    summary = {
        "architecture": args.architecture,
        "input_size": args.input_size,
        **{f"stream_{r['faces']}_peak_mb": r["peak_rss_mb"] for r in streamed},
        **{f"stream_{r['faces']}_epoch_s": r["epoch_s"] for r in streamed},
        "peak_growth_mb": streamed[-1]["peak_rss_mb"] - streamed[0]["peak_rss_mb"],
        **{f"held_{r['faces']}_peak_mb": r["peak_rss_mb"] for r in rows if r["pipeline"] == "held"},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
