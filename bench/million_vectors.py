"""The vector half of the 1M-face bench (issue 21): "more like this", near-duplicates with identity
clusters, and the map, over a million face descriptors.

    .venv/bin/python bench/million_vectors.py --synthetic 1000000 [--sample 50000] [--skip-map]

bench/million.py calls measure_vectors(dataset_id) on the dataset it built in PostgreSQL; standalone,
the bench draws realistic descriptors itself (--synthetic N) and needs no database:

- real dlib descriptors of --base dev photos (half LFW, half UTKFace, CURATOR_DEV_DATASET), computed
  by the app's own path once and cached in var/bench/dev_descriptors_<n>.npy;
- identities: each a real descriptor moved by IDENTITY_SPREAD (another person near a real one),
  with a few photos each (geometric, mean FACES_PER_IDENTITY) at PHOTO_SPREAD from their person:
  two photos of one person ~0.35 apart, two people ~0.7, as dlib's descriptors are;
- near-duplicate pairs: DUPLICATE_SHARE of the faces get a copy at COPY_SPREAD (a re-encoded or
  resized photo: ~0.1), with its region hash a few bits from the original's;
- noise: NOISE_SHARE of the faces are strangers seen once.

Figures:
1. knn: the app's index (embeddings.ann) over all N: build time, then p50 of "more like this"
   (k=20) queries of faces of the set, and recall@10 against brute force on those queries.
2. dups + identities: the app's duplicate groups and identity clusters over all N, timed
   together; then on a --sample subset, agreement of each with exact (brute-force) search:
   adjusted Rand index over the faces and pair precision/recall of "same group".
3. map: embeddings.projection.projection_compute over all N (PCA, openTSNE on a sample, the rest
   placed among their nearest sampled faces), and the uniqueness scores the map task computes
   with it (from the neighbour graph of step 2 when this process still holds it, as an embed
   worker that computed the identities does).

Last line: {"faces", "knn_build_s", "knn_p50_ms", "knn_recall10", "dups_identities_s",
"dups_agreement_ari", "identities_agreement_ari", "map_s"}.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "curator.settings")
os.environ.setdefault("DEBUG", "1")

import numpy as np  # noqa: E402

CACHE = ROOT / "var" / "bench"
IDENTITY_SPREAD = 0.45
PHOTO_SPREAD = 0.25
COPY_SPREAD = 0.08
FACES_PER_IDENTITY = 6
DUPLICATE_SHARE = 0.05
NOISE_SHARE = 0.10
KNN_QUERIES = 200


def _django() -> None:
    import django

    django.setup()


def dev_descriptors(count: int = 1200) -> np.ndarray:
    """Flip-averaged descriptors of `count` dev photos' largest faces, computed once (about two
    minutes on 2 cores) and cached."""
    path = CACHE / f"dev_descriptors_{count}.npy"
    if path.exists():
        return np.load(path)
    _django()
    from django.conf import settings

    from embeddings import dupset

    root = Path(settings.CURATOR_DEV_DATASET)
    rows = list(csv.DictReader((root / "labels.csv").open()))
    rng = random.Random(0)
    lfw = [r for r in rows if r["source"] == "LFW"]
    utk = [r for r in rows if r["source"] != "LFW"]
    pick = rng.sample(lfw, min(len(lfw), count // 2))
    pick += rng.sample(utk, min(len(utk), count - len(pick)))
    started = time.perf_counter()
    items = dupset.build_items([root / r["path"] for r in pick], copies=0)
    records = dupset.items_records(items, processes=2)
    vectors = np.stack([r.vector for r in records if r.vector is not None]).astype(np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    print(f"  {len(vectors)} real dev descriptors computed in {time.perf_counter() - started:.0f} s, cached in {path}")
    return vectors


def _jitter(rng: np.random.Generator, centres: np.ndarray, spread: float) -> np.ndarray:
    """Each centre moved by `spread` in a random direction (isotropic in the 128 dimensions)."""
    noise = rng.standard_normal(centres.shape, dtype=np.float32)
    noise *= spread / np.linalg.norm(noise, axis=1, keepdims=True)
    return centres + noise


def synthetic_faces(base: np.ndarray, n: int, *, seed: int = 0) -> dict:
    """n descriptors drawn around the real ones (module docstring), with a 64-bit region hash each
    and the id of the photo a duplicate copies: {"vectors", "hashes", "copy_of", "person"}."""
    rng = np.random.default_rng(seed)
    noise = int(n * NOISE_SHARE)
    copies = int(n * DUPLICATE_SHARE)
    photos = n - noise - copies
    sizes = rng.geometric(1 / FACES_PER_IDENTITY, size=photos // FACES_PER_IDENTITY * 2)
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), photos) + 1]
    sizes[-1] -= sizes.sum() - photos
    people = _jitter(rng, base[rng.integers(0, len(base), len(sizes))], IDENTITY_SPREAD)
    person = np.repeat(np.arange(len(sizes)), sizes)
    vectors = _jitter(rng, people[person], PHOTO_SPREAD)
    strangers = _jitter(rng, base[rng.integers(0, len(base), noise)], IDENTITY_SPREAD + PHOTO_SPREAD)
    copy_of = rng.choice(photos, size=copies, replace=False)
    copied = _jitter(rng, vectors[copy_of], COPY_SPREAD)
    hashes = rng.integers(0, 2**63, size=photos + noise, dtype=np.int64)
    flips = np.zeros(copies, dtype=np.int64)
    for _ in range(3):  # a copy's region hash differs in up to 3 bits
        flips ^= np.left_shift(np.int64(1), rng.integers(0, 63, copies))
    copy_hashes = hashes[copy_of] ^ flips
    return {
        "vectors": np.concatenate([vectors, strangers, copied]).astype(np.float32),
        "hashes": np.concatenate([hashes, copy_hashes]),
        "copy_of": np.concatenate([np.full(photos + noise, -1), copy_of]),
        "person": np.concatenate([person, -1 - np.arange(noise), person[copy_of]]),
    }


def _brute_nearest(vectors: np.ndarray, norms: np.ndarray, query: np.ndarray, k: int, exclude: int) -> list[int]:
    d = norms - 2 * vectors @ query
    d[exclude] = np.inf
    nearest = np.argpartition(d, k)[:k]
    return nearest[np.argsort(d[nearest])].tolist()


def knn_figures(ids: np.ndarray, vectors: np.ndarray, query, *, queries: int = KNN_QUERIES, seed: int = 1) -> dict:
    """p50 of query(position) -> [(face id, distance)] (k=20, the face itself left out) over
    random faces of the set, and recall@10 of those answers against brute force."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(ids), size=min(queries, len(ids)), replace=False)
    norms = np.einsum("ij,ij->i", vectors, vectors)
    # The exact answers first: BLAS threads left spinning after a brute-force product would be
    # timed as part of the next query.
    truths = [set(ids[_brute_nearest(vectors, norms, vectors[p], 10, int(p))].tolist()) for p in picks]
    times, recalls = [], []
    for p, truth in zip(picks, truths, strict=True):
        started = time.perf_counter()
        found = query(int(p))
        times.append((time.perf_counter() - started) * 1000)
        recalls.append(len({f for f, _ in found[:10]} & truth) / 10)
    return {"knn_p50_ms": round(float(np.median(times)), 2), "knn_recall10": round(float(np.mean(recalls)), 4)}


def duplicate_groups(faces: dict, rows: np.ndarray | None = None) -> list[list[int]]:
    """The duplicates page's groups (embeddings.duplicates) over the synthetic faces (or `rows`
    of them): every face its own photo, its region hash as both hashes."""
    from embeddings.duplicates import FaceRecord, complete_linkage_groups, pair_evidence

    rows = np.arange(len(faces["vectors"])) if rows is None else rows
    vectors, hashes = faces["vectors"], faces["hashes"]
    records = [FaceRecord(int(i), int(i), f"{i:x}", vectors[i], int(hashes[i]), int(hashes[i])) for i in rows.tolist()]
    return complete_linkage_groups(pair_evidence(records))


def group_labels(groups: list[list[int]], rows: np.ndarray) -> np.ndarray:
    """A label per row: its group's number, or a number of its own when it is in no group."""
    labels = np.arange(len(rows)) + len(groups)
    where = {int(r): i for i, r in enumerate(rows.tolist())}
    for g, members in enumerate(groups):
        for m in members:
            labels[where[m]] = g
    return labels


def agreement(exact: np.ndarray, approximate: np.ndarray) -> dict:
    """Adjusted Rand index of two groupings of the same faces (1: identical, ~0: unrelated), and
    precision/recall of the approximate one's "same group" pairs against the exact one's."""
    from sklearn.metrics import adjusted_rand_score
    from sklearn.metrics.cluster import pair_confusion_matrix

    (_, fp), (fn, tp) = pair_confusion_matrix(exact, approximate)
    return {
        "ari": round(float(adjusted_rand_score(exact, approximate)), 4),
        "pair_precision": round(float(tp / max(tp + fp, 1)), 4),
        "pair_recall": round(float(tp / max(tp + fn, 1)), 4),
    }


def sample_agreement(faces: dict, size: int, *, seed: int = 2) -> dict:
    """On `size` faces (whole people: a random sample of faces would cut most groups), identity
    clusters and duplicate groups from the approximate graph against those from exact search."""
    from embeddings import graph, identities

    rng = np.random.default_rng(seed)
    person = faces["person"]
    chosen = rng.permutation(np.unique(person))
    counts = np.bincount(np.searchsorted(np.unique(person), person))
    take = chosen[: np.searchsorted(np.cumsum(counts[np.searchsorted(np.unique(person), chosen)]), size)]
    rows = np.flatnonzero(np.isin(person, take))
    vectors = faces["vectors"][rows]
    out = {"sample": len(rows)}
    saved = graph.EXACT_MAX
    try:
        for name, limit in (("exact", 10**12), ("approximate", 0)):
            graph.EXACT_MAX = limit
            started = time.perf_counter()
            out[f"identities_{name}"] = identities.cluster_labels(vectors)
            out[f"duplicates_{name}"] = group_labels(duplicate_groups(faces, rows), rows)
            out[f"{name}_s"] = round(time.perf_counter() - started, 1)
    finally:
        graph.EXACT_MAX = saved
    out["identities"] = agreement(out.pop("identities_exact"), out.pop("identities_approximate"))
    out["duplicates"] = agreement(out.pop("duplicates_exact"), out.pop("duplicates_approximate"))
    return out


def measure_synthetic(n: int, *, base_count: int, sample: int, skip_map: bool) -> dict:
    from embeddings import ann, identities, projection, uniqueness

    base = dev_descriptors(base_count)
    started = time.perf_counter()
    faces = synthetic_faces(base, n)
    vectors = faces["vectors"]
    ids = np.arange(1, n + 1, dtype=np.int64)
    print(
        f"{n} synthetic faces around {len(base)} real descriptors: {len(np.unique(faces['person']))} people, "
        f"{int((faces['copy_of'] >= 0).sum())} near-duplicate copies, drawn in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    result = {"faces": n}

    started = time.perf_counter()
    index = ann.AnnIndex.build(ids, vectors)
    result["knn_build_s"] = round(time.perf_counter() - started, 1)
    result.update(knn_figures(ids, vectors, lambda p: index.query(vectors[p], k=20, exclude_ids=(ids[p],))))
    print(
        f"1. more like this: index built in {result['knn_build_s']} s; p50 {result['knn_p50_ms']} ms, "
        f"recall@10 {result['knn_recall10']} (k=20, {KNN_QUERIES} faces)",
        flush=True,
    )

    started = time.perf_counter()
    labels = identities.cluster_labels(vectors)
    identities_s = time.perf_counter() - started
    started = time.perf_counter()
    groups = duplicate_groups(faces)
    duplicates_s = time.perf_counter() - started
    result["dups_identities_s"] = round(identities_s + duplicates_s, 1)
    print(
        f"2. identities: {len(np.unique(labels))} clusters in {identities_s:.1f} s; duplicates: {len(groups)} groups "
        f"in {duplicates_s:.1f} s (copies drawn: {int((faces['copy_of'] >= 0).sum())}); together "
        f"{result['dups_identities_s']} s",
        flush=True,
    )
    check = sample_agreement(faces, sample)
    result["identities_agreement_ari"] = check["identities"]["ari"]
    result["dups_agreement_ari"] = check["duplicates"]["ari"]
    print(
        f"   against exact search on {check['sample']} faces (whole people; exact {check['exact_s']} s, "
        f"graph {check['approximate_s']} s): identities {check['identities']}, duplicates {check['duplicates']}",
        flush=True,
    )

    if skip_map:
        result["map_s"] = None
    else:
        started = time.perf_counter()
        xy = projection.projection_compute(vectors)
        projection_s = time.perf_counter() - started
        started = time.perf_counter()
        uniqueness.uniqueness_scores(vectors)
        uniqueness_s = time.perf_counter() - started
        result["map_s"] = round(projection_s + uniqueness_s, 1)
        assert xy.shape == (n, 2) and np.isfinite(xy).all()
        steps = ", ".join(f"{k} {v:.1f}" for k, v in projection.last_timings.items())
        print(
            f"3. map: {projection.method_for(n)} in {projection_s:.1f} s ({steps}), uniqueness scores in {uniqueness_s:.1f} s "
            f"(the map task computes both): {result['map_s']} s",
            flush=True,
        )
    return result


def measure_vectors(dataset_id: int) -> dict:
    """The figures of a dataset in the database (bench/million.py's): "more like this" through the
    app's selectors (the stored index built first, as the embed worker does), identity clusters
    and duplicate groups as the worker and the duplicates page compute them, and the map task's
    projection and uniqueness scores. {"knn_p50_ms", "knn_recall10", "dups_identities_s",
    "map_s", "knn_build_s"}. Needs Django set up on the bench's database."""
    from curator.models import Dataset, Face
    from embeddings import ann, projection, selectors, uniqueness
    from embeddings.identities import identity_clusters_compute

    dataset = Dataset.objects.get(pk=dataset_id)
    started = time.perf_counter()
    index = selectors.dataset_index(dataset_id)
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    ann.ann_update(dataset_id, index.ids, index.vectors, index.stamp)
    result = {"knn_build_s": round(time.perf_counter() - started, 1)}
    print(f"  {len(index)} descriptors read in {read_s:.1f} s; index built and stored in {result['knn_build_s']} s")

    def query(p: int):
        face = Face.objects.get(pk=int(index.ids[p]))
        return selectors.face_neighbours(face=face, k=20)

    result.update(knn_figures(index.ids, index.vectors, query))
    started = time.perf_counter()
    identity_clusters_compute(dataset_id=dataset_id)
    selectors.dataset_duplicates(dataset=dataset)
    result["dups_identities_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    projection.projection_compute(index.vectors)
    uniqueness.uniqueness_scores(index.vectors)
    result["map_s"] = round(time.perf_counter() - started, 1)
    print(f"  vectors: {result}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic", type=int, default=1_000_000)
    parser.add_argument("--base", type=int, default=1200, help="dev photos whose descriptors seed the set")
    parser.add_argument("--sample", type=int, default=50_000, help="faces checked against exact search")
    parser.add_argument("--skip-map", action="store_true")
    args = parser.parse_args()
    _django()
    result = measure_synthetic(args.synthetic, base_count=args.base, sample=args.sample, skip_map=args.skip_map)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
