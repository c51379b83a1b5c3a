"""Which approximate nearest-neighbour library "more like this" uses (issue 21), by measurement:
hnswlib, faiss-cpu (HNSW and IVF-Flat) and usearch over N realistic descriptors (bench/
million_vectors.py's synthetic set around real dev descriptors), k=10.

    .venv/bin/python bench/ann_libraries.py [--n 1000000] [--queries 300] [--threads 2] [--only hnswlib,faiss-ivf]

faiss-cpu is a requirement (the app's index); hnswlib (0.8.0, built from source) and usearch
(2.26.6, pulls numkong) are installed by hand to compare them.

For each: build seconds (2 threads), resident memory the index added (MB), single-query p50 (ms,
one thread, as a web request asks), recall@10 against brute force on the same queries. Also brute
force's own p50 at 10k, 50k, 100k and N (where it stops being fast enough).

Last line: {"n", "<library>": {"build_s", "memory_mb", "p50_ms", "recall10"}, ..., "brute_p50_ms": {...}}.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from million_vectors import dev_descriptors, synthetic_faces


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def brute(vectors: np.ndarray, queries: np.ndarray, k: int, norms: np.ndarray | None = None) -> np.ndarray:
    """Exact k nearest by blocks of queries (as the truth) or one at a time (as timed)."""
    norms = np.einsum("ij,ij->i", vectors, vectors) if norms is None else norms
    out = []
    for start in range(0, len(queries), 64):
        d = norms[None, :] - 2 * queries[start : start + 64] @ vectors.T
        nearest = np.argpartition(d, k, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(d, nearest, axis=1), axis=1)
        out.append(np.take_along_axis(nearest, order, axis=1))
    return np.concatenate(out)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth, strict=True)]))


def timed_queries(query, queries: np.ndarray) -> tuple[float, np.ndarray]:
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        found.append(query(q))
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times)), np.array(found)


def hnswlib_run(vectors, queries, k, threads, ef):
    import hnswlib

    before = rss_mb()
    t = time.perf_counter()
    index = hnswlib.Index(space="l2", dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), M=16, ef_construction=100, random_seed=0)
    index.add_items(vectors, np.arange(len(vectors)), num_threads=threads)
    build = time.perf_counter() - t
    memory = rss_mb() - before
    index.set_num_threads(1)
    results = {}
    for e in ef:
        index.set_ef(max(e, k))
        p50, found = timed_queries(lambda q: index.knn_query(q, k=k)[0][0], queries)
        results[f"hnswlib ef={e}"] = (build, memory, p50, found)
    return results


def faiss_hnsw_run(vectors, queries, k, threads, ef):
    import faiss

    faiss.omp_set_num_threads(threads)
    before = rss_mb()
    t = time.perf_counter()
    index = faiss.IndexHNSWFlat(vectors.shape[1], 16)
    index.hnsw.efConstruction = 100
    index.add(vectors)
    build = time.perf_counter() - t
    memory = rss_mb() - before
    faiss.omp_set_num_threads(1)
    results = {}
    for e in ef:
        index.hnsw.efSearch = max(e, k)
        p50, found = timed_queries(lambda q: index.search(q[None, :], k)[1][0], queries)
        results[f"faiss HNSW ef={e}"] = (build, memory, p50, found)
    return results


def faiss_ivf_run(vectors, queries, k, threads, probes):
    import faiss

    faiss.omp_set_num_threads(threads)
    before = rss_mb()
    t = time.perf_counter()
    lists = int(4 * np.sqrt(len(vectors)))
    quantizer = faiss.IndexFlatL2(vectors.shape[1])
    index = faiss.IndexIVFFlat(quantizer, vectors.shape[1], lists)
    rng = np.random.default_rng(0)
    index.train(vectors[rng.choice(len(vectors), min(len(vectors), 50 * lists), replace=False)])
    index.add(vectors)
    build = time.perf_counter() - t
    memory = rss_mb() - before
    faiss.omp_set_num_threads(1)
    results = {}
    for p in probes:
        index.nprobe = p
        p50, found = timed_queries(lambda q: index.search(q[None, :], k)[1][0], queries)
        results[f"faiss IVF{lists} nprobe={p}"] = (build, memory, p50, found)
    return results


def usearch_run(vectors, queries, k, threads, ef):
    from usearch.index import Index

    before = rss_mb()
    t = time.perf_counter()
    index = Index(ndim=vectors.shape[1], metric="l2sq", dtype="f32", connectivity=16, expansion_add=100)
    index.add(np.arange(len(vectors)), vectors, threads=threads)
    build = time.perf_counter() - t
    memory = rss_mb() - before
    results = {}
    for e in ef:
        index.expansion_search = max(e, k)
        p50, found = timed_queries(lambda q: index.search(q, k, threads=1).keys, queries)
        results[f"usearch ef={e}"] = (build, memory, p50, found)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="hnswlib,faiss-hnsw,faiss-ivf,usearch")
    args = parser.parse_args()
    k = 10
    vectors = synthetic_faces(dev_descriptors(), args.n)["vectors"]
    rng = np.random.default_rng(1)
    queries = vectors[rng.choice(len(vectors), args.queries, replace=False)]
    truth = brute(vectors, queries, k)
    brute_p50 = {}
    for size in sorted({10_000, 50_000, 100_000, args.n}):
        if size <= args.n:
            part = np.ascontiguousarray(vectors[:size])
            norms = np.einsum("ij,ij->i", part, part)
            brute_p50[size] = round(
                timed_queries(lambda q, part=part, norms=norms: brute(part, q[None, :], k, norms)[0], queries[:50])[0],
                2,
            )
    print(f"{args.n} x {vectors.shape[1]} float32; brute force p50 ms by size: {brute_p50}", flush=True)
    runners = {
        "hnswlib": lambda: hnswlib_run(vectors, queries, k, args.threads, (32, 64, 128)),
        "faiss-hnsw": lambda: faiss_hnsw_run(vectors, queries, k, args.threads, (32, 64, 128)),
        "faiss-ivf": lambda: faiss_ivf_run(vectors, queries, k, args.threads, (16, 32, 64)),
        "usearch": lambda: usearch_run(vectors, queries, k, args.threads, (32, 64, 128)),
    }
    out = {"n": args.n, "brute_p50_ms": brute_p50}
    for name in args.only.split(","):
        try:
            measured = runners[name]()
        except ImportError as exc:  # hnswlib and usearch are not requirements: only this bench uses them
            print(f"  {name}: not installed ({exc}); pip install hnswlib==0.8.0 usearch==2.26.6 to compare")
            continue
        for label, (build, memory, p50, found) in measured.items():
            row = {
                "build_s": round(build, 1),
                "memory_mb": round(memory),
                "p50_ms": round(p50, 3),
                "recall10": round(recall(found, truth), 4),
            }
            out[label] = row
            print(f"  {label:28s} {row}", flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
