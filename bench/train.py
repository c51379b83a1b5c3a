"""Benchmark of the three training architectures on the UTKFace crops of the development set.

    .venv/bin/python bench/train.py [--models embedding,cnn,seed-cnn] [--runs 3] [--cnn-epochs 30]

Faces: the 4,000 UTKFace 200x200 crops of ../shared/datasets/dev (labels.csv: gender, age, race),
used as they are (they are already aligned and cropped; the pipelines resize them), split
stratified 70/15/15 by gender with seed 0 (the same split function the jobs use). Every model is
chosen on the validation split only; the test split is touched once per chosen model. Prints
wall time, test accuracy and per-slice accuracy (age band, race) per model, and ends with one
JSON line. The embedding head is fitted --runs times (seeds 0..runs-1) and the medians reported;
the CNNs are fitted once each (minutes per run on two cores).
"""

import argparse
import csv
import hashlib
import json
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "curator.settings")
os.environ.setdefault("DEBUG", "1")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.conf import settings  # noqa: E402

from training.data import age_band, stratified_split  # noqa: E402
from training.evaluation import evaluate  # noqa: E402

CLASSES = ["female", "male"]
ALIGNED_SIZE = 160


def load_faces(root: Path) -> list[dict]:
    with open(root / "labels.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["source"] == "UTKFace" and r["gender"] in CLASSES]
    for i, row in enumerate(rows):
        row["id"] = i
        row["y"] = CLASSES.index(row["gender"])
        row["slices"] = {"age_band": age_band(row["age"]), "race": row["race"]}
    return rows


def split_faces(rows: list[dict]) -> dict[str, list[dict]]:
    by_label: dict[str, list[int]] = {}
    for row in rows:
        by_label.setdefault(row["gender"], []).append(row["id"])
    assignment = stratified_split(by_label, seed=0)
    return {s: [r for r in rows if assignment[r["id"]] == s] for s in ("train", "val", "test")}


def _align_one(args: tuple[str, str]) -> str:
    """Align one dev-set photo as an import would (largest face, whole-image fallback) and store
    the crop; returns how it was framed."""
    from curator.faces.pipeline import AlignOptions, detect_and_align, encode_jpeg
    from training.descriptors import decode_crop

    source, target = args
    faces = detect_and_align(
        decode_crop(Path(source).read_bytes()), AlignOptions(crop_size=ALIGNED_SIZE, whole_image_fallback=True)
    )
    Path(target).write_bytes(encode_jpeg(faces[0].crop))
    return "whole_image" if faces[0].whole_image else "detected"


def _descriptors_of_files(paths: list[str]) -> np.ndarray:
    from training.descriptors import decode_crop, descriptors_of_crops

    return descriptors_of_crops([decode_crop(Path(p).read_bytes()) for p in paths])


def crop_files(root: Path, rows: list[dict], mode: str, cache_dir: Path, processes: int) -> list[str]:
    """The crop file of every face: the dev set's 200 px crops as they are (raw), or aligned
    by the app's own pipeline (curator.faces.pipeline.detect_and_align, 160 px), cached."""
    if mode == "raw":
        return [str(root / r["path"]) for r in rows]
    out = cache_dir / f"aligned-{ALIGNED_SIZE}"
    out.mkdir(parents=True, exist_ok=True)
    paths = [str(out / f"{r['sha256']}.jpg") for r in rows]
    todo = [(str(root / r["path"]), p) for r, p in zip(rows, paths, strict=True) if not Path(p).exists()]
    if todo:
        started = time.monotonic()
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            kinds = pool.map(_align_one, todo, chunksize=16)
        seconds = time.monotonic() - started
        print(
            f"aligned {len(todo)} photos in {seconds:.1f} s ({1000 * seconds / len(todo):.1f} ms each, "
            f"{processes} processes): {kinds.count('detected')} detected, {kinds.count('whole_image')} whole-image"
        )
    return paths


def descriptors(paths: list[str], cache_dir: Path, processes: int) -> tuple[np.ndarray, float, bool]:
    """dlib descriptors of every crop, cached on disk by the list of files (computing them is a
    one-off cost per face in the app too: FaceDescriptor)."""
    key = hashlib.sha256("\n".join(paths).encode()).hexdigest()[:16]
    path = cache_dir / f"descriptors-{key}.npy"
    if path.exists():
        return np.load(path), 0.0, True
    started = time.monotonic()
    chunks = [paths[i : i + 64] for i in range(0, len(paths), 64)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        vectors = np.concatenate(pool.map(_descriptors_of_files, chunks))
    seconds = time.monotonic() - started
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors, seconds, False


def report(name: str, metrics: dict) -> None:
    print(
        f"  {name}: test accuracy {metrics['accuracy']:.4f} (n={metrics['n_test']}), ROC AUC {metrics['roc_auc']:.4f}"
    )
    for kind in ("age_band", "race"):
        rows = metrics["slices"].get(kind, [])
        text = ", ".join(f"{r['value']} {r['accuracy']:.3f} (n={r['n']})" for r in rows)
        gap = metrics["bias"].get(kind, {}).get("gap")
        print(f"    by {kind}: {text}" + (f"; gap {gap:.3f}" if gap is not None else ""))


def bench_embedding(paths: list[str], rows, splits, runs: int, processes: int) -> dict:
    from training import engine
    from training.inference import outputs_to_probabilities

    vectors, desc_s, cached = descriptors(paths, Path(settings.VAR_DIR) / "bench", processes)
    print(
        f"embedding: descriptors of {len(rows)} crops "
        + (
            "loaded from the cache"
            if cached
            else f"computed in {desc_s:.1f} s ({1000 * desc_s * processes / len(rows):.1f} ms/face/process)"
        )
    )

    def xy(split):
        return vectors[[r["id"] for r in splits[split]]], np.array([r["y"] for r in splits[split]])

    (xt, yt), (xv, yv), (xs, ys) = xy("train"), xy("val"), xy("test")
    # Model choice on the validation split only.
    grid = [
        {"hidden_units": 0, "dropout": 0.0},
        {"hidden_units": 128, "dropout": 0.3},
        {"hidden_units": 256, "dropout": 0.5},
    ]

    def fit_head(config: dict):
        return engine.fit(
            architecture="embedding",
            config=config,
            classes=CLASSES,
            train_inputs=xt,
            train_labels=yt,
            val_inputs=xv,
            val_labels=yv,
            reporter=engine.ConsoleReporter(verbose=False),
        )

    best = None
    for options in grid:
        config = {**_defaults("embedding"), **options, "seed": 0}
        fit = fit_head(config)
        val_acc = float((outputs_to_probabilities(np.asarray(fit.model(xv)), fit.output).argmax(1) == yv).mean())
        print(
            f"  candidate {options}: validation accuracy {val_acc:.4f}, {fit.seconds:.1f} s, {len(fit.history)} epochs"
        )
        if best is None or val_acc > best[0]:
            best = (val_acc, options)
    print(f"  chosen on validation: {best[1]}")
    accs, secs, metrics = [], [], None
    for seed in range(runs):
        config = {**_defaults("embedding"), **best[1], "seed": seed}
        fit = fit_head(config)
        probs = outputs_to_probabilities(np.asarray(fit.model(xs)), fit.output)
        m = evaluate(classes=CLASSES, y_true=ys, probabilities=probs, slices=[r["slices"] for r in splits["test"]])
        accs.append(m["accuracy"])
        secs.append(fit.seconds)
        metrics = metrics or m
        print(f"  run {seed}: test accuracy {m['accuracy']:.4f}, training {fit.seconds:.1f} s")
    report("embedding (seed 0)", metrics)
    return {"acc": statistics.median(accs), "train_s": statistics.median(secs), "descriptor_s": desc_s}


def _defaults(architecture: str) -> dict:
    from training.config import config_build

    return config_build(architecture)


def bench_cnn(
    paths: list[str], splits, architecture: str, epochs: int, time_limit_s: float, patience: int | None = None
) -> dict:
    from training import engine
    from training.inference import outputs_to_probabilities

    def data(split):
        return [Path(paths[r["id"]]).read_bytes() for r in splits[split]], np.array([r["y"] for r in splits[split]])

    (xt, yt), (xv, yv), (xs, ys) = data("train"), data("val"), data("test")
    config = {**_defaults(architecture), "epochs": epochs, "seed": 0}
    if patience:
        config["patience"] = patience
    print(f"{architecture}: {config}")
    fit = engine.fit(
        architecture=architecture,
        config=config,
        classes=CLASSES,
        train_inputs=xt,
        train_labels=yt,
        val_inputs=xv,
        val_labels=yv,
        reporter=engine.ConsoleReporter(prefix="  "),
        time_limit_s=time_limit_s,
    )
    # The best epoch by validation loss is the model; the test split is used once, here.
    ds = engine.image_dataset(xs, ys, size=config["input_size"], batch_size=128, shuffle=False, seed=0)
    outputs = np.concatenate([np.asarray(fit.model(images, training=False)) for images, _ in ds])
    probs = outputs_to_probabilities(outputs, fit.output)
    metrics = evaluate(classes=CLASSES, y_true=ys, probabilities=probs, slices=[r["slices"] for r in splits["test"]])
    print(f"  trained {fit.seconds:.1f} s, {len(fit.history)} epochs ({fit.stopped}), best epoch {fit.best_epoch}")
    report(architecture, metrics)
    return {"acc": metrics["accuracy"], "train_s": fit.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="embedding,cnn,seed-cnn")
    parser.add_argument("--runs", type=int, default=3, help="fits of the embedding head (medians reported)")
    parser.add_argument("--cnn-epochs", type=int, default=50)
    parser.add_argument("--seed-cnn-epochs", type=int, default=20)
    parser.add_argument("--time-limit", type=float, default=14 * 60, help="seconds of training per CNN at most")
    parser.add_argument("--cnn-patience", type=int, default=None, help="early-stopping patience of the cnn")
    parser.add_argument("--crops", choices=("aligned", "raw"), default="aligned")
    parser.add_argument("--processes", type=int, default=2, help="for alignment and descriptors")
    parser.add_argument("--dataset", default=str(settings.CURATOR_DEV_DATASET))
    args = parser.parse_args()
    root = Path(args.dataset)
    if not (root / "labels.csv").exists():
        sys.exit(f"development data set not found at {root}")
    rows = load_faces(root)
    splits = split_faces(rows)
    print(
        f"{len(rows)} UTKFace crops; split "
        + ", ".join(f"{s} {len(v)} ({sum(r['y'] == 0 for r in v)} female)" for s, v in splits.items())
    )
    paths = crop_files(root, rows, args.crops, Path(settings.VAR_DIR) / "bench", args.processes)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    result: dict[str, float | None] = {}
    for name in ("embedding", "cnn", "seed-cnn"):
        key = name.replace("-", "_")
        if name not in models:
            result[f"{key}_acc"] = result[f"{key}_train_s"] = None
            continue
        started = time.monotonic()
        if name == "embedding":
            figures = bench_embedding(paths, rows, splits, args.runs, args.processes)
        else:
            epochs = args.cnn_epochs if name == "cnn" else args.seed_cnn_epochs
            patience = args.cnn_patience if name == "cnn" else None
            figures = bench_cnn(paths, splits, name, epochs, args.time_limit, patience)
        print(f"{name}: wall time {time.monotonic() - started:.1f} s")
        result[f"{key}_acc"] = round(figures["acc"], 4)
        result[f"{key}_train_s"] = round(figures["train_s"], 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
