"""A 2-D map of a dataset's face descriptors: t-SNE (scikit-learn, Barnes-Hut) of the descriptors
reduced to 30 dimensions by PCA.

Why t-SNE and not UMAP or PCA (measured on real dev-set descriptors, README "Face embeddings"):
PCA takes a second but keeps little of the neighbourhoods (people of one gender and race are
smeared over each other); t-SNE and UMAP keep them about equally well, and t-SNE needs nothing
new: umap-learn brings numba and llvmlite, compiles for tens of seconds on each worker's first
map and imports TensorFlow on import. PCA to 30 dimensions first keeps the neighbourhoods of
dlib's 128-D descriptors and makes the neighbour search several times cheaper.

Above FULL_TSNE_MAX faces (issue 21: a million), t-SNE of every face would take hours: PCA is
fitted on all of them (seconds), openTSNE (FFT-accelerated, scales linearly) embeds a random
sample of SAMPLE_SIZE faces, and every other face is placed where openTSNE's transform starts
new points: at the median map position of its nearest sampled faces (_placed; exact search in PCA
space, in batches, memory bounded). Measured in bench/million_vectors.py (README "A million faces").

    xy = projection_compute(vectors)        # float32 [n, 2], scaled into [0, 1]
"""

from __future__ import annotations

import time

import numpy as np

METHOD = "pca30-tsne"
# Measured on 1,500 real dev-set descriptors and 10,000 drawn around them (README "Face
# embeddings"): 30 PCA dimensions, 400 iterations (250 of them early exaggeration; scikit-learn's
# default is 1000) and a coarser Barnes-Hut angle keep neighbourhoods as well as 50/500/0.5
# (trustworthiness 0.956 vs 0.952) for 30% less CPU.
TSNE_ITERATIONS = 400
TSNE_ANGLE = 0.6
PCA_DIMENSIONS = 30
PERPLEXITY = 30.0
# Up to this many faces, exact (Barnes-Hut) t-SNE of all of them: 20,000 take about a minute.
FULL_TSNE_MAX = 20_000
SAMPLE_METHOD = "pca30-tsne-sample"
SAMPLE_SIZE = 20_000
TRANSFORM_BATCH = 50_000
PLACE_NEIGHBOURS = 10
# Seconds of each step of the last sampled projection in this process (the bench prints them).
last_timings: dict[str, float] = {}


def method_for(n: int) -> str:
    """What projection_compute does for n faces (stored with the map, shown on its page)."""
    return METHOD if n <= FULL_TSNE_MAX else SAMPLE_METHOD


def projection_compute(vectors: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """2-D coordinates (float32 [n, 2], each axis scaled into [0, 1]) of `vectors` (float [n, d]),
    so that faces with near descriptors land near each other. Deterministic for a given seed."""
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"Expected a matrix of vectors, got an array of shape {x.shape}.")
    n = len(x)
    if n == 0:
        return np.zeros((0, 2), dtype=np.float32)
    if n < 4:
        # Too few points for a neighbourhood: a line in the order given is as honest as anything.
        return _scaled(np.column_stack([np.arange(n, dtype=np.float32), np.zeros(n, dtype=np.float32)]))
    if n > FULL_TSNE_MAX:
        return _sampled(x, seed=seed)
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    dims = min(PCA_DIMENSIONS, n - 1, x.shape[1])
    reduced = PCA(n_components=dims, random_state=seed).fit_transform(x) if dims < x.shape[1] else x
    # Perplexity must stay below the number of points; small datasets get a smaller one.
    perplexity = min(PERPLEXITY, max(1.0, (n - 1) / 3))
    xy = TSNE(
        n_components=2,
        perplexity=perplexity,
        init="pca",
        learning_rate="auto",
        max_iter=max(TSNE_ITERATIONS, 250),
        angle=TSNE_ANGLE,
        random_state=seed,
        n_jobs=-1,
    ).fit_transform(reduced.astype(np.float32))
    return _scaled(xy)


def _sampled(
    x: np.ndarray,
    *,
    seed: int,
    sample_size: int = SAMPLE_SIZE,
    batch: int = TRANSFORM_BATCH,
    progress=None,
) -> np.ndarray:
    """t-SNE of a sample, the rest placed among their nearest sampled faces (module docstring)."""
    from openTSNE import TSNE
    from sklearn.decomposition import PCA

    n = len(x)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    reduced = PCA(n_components=PCA_DIMENSIONS, random_state=seed).fit_transform(x).astype(np.float32)
    sample = np.sort(rng.choice(n, size=min(sample_size, n), replace=False))
    timings["pca_s"] = time.perf_counter() - started
    started = time.perf_counter()
    embedding = TSNE(
        perplexity=PERPLEXITY,
        n_iter=TSNE_ITERATIONS,
        initialization="pca",
        # One thread: measured here, openTSNE's threads wait on each other when the cores are
        # shared (200 points: 0.9 s on one thread, 32.7 s on all at load 9).
        n_jobs=1,
        random_state=seed,
    ).fit(reduced[sample])
    timings["tsne_sample_s"] = time.perf_counter() - started
    started = time.perf_counter()
    xy = np.empty((n, 2), dtype=np.float64)
    xy[sample] = np.asarray(embedding)
    rest = np.setdiff1d(np.arange(n), sample, assume_unique=True)
    xy[rest] = _placed(reduced[sample], xy[sample], reduced[rest], batch=batch, progress=progress)
    timings["placed_s"] = time.perf_counter() - started
    last_timings.clear()
    last_timings.update(timings)
    return _scaled(xy)


def _placed(known: np.ndarray, known_xy: np.ndarray, points: np.ndarray, *, batch: int, progress=None) -> np.ndarray:
    """Each point at the median map position of its PLACE_NEIGHBOURS nearest sampled faces (in
    PCA space, exact search): how openTSNE's transform starts placing new points. Its optimisation
    pass that follows is left out: measured at 60,000 faces on this 2-core machine it took minutes
    per 50,000 faces (a million would take over an hour), and the median of the nearest sampled
    neighbours already puts each face in its neighbours' cluster (tests/embeddings/test_projection.py)."""
    import faiss

    index = faiss.IndexFlatL2(known.shape[1])
    index.add(np.ascontiguousarray(known, dtype=np.float32))
    out = np.empty((len(points), 2), dtype=np.float64)
    for start in range(0, len(points), batch):
        part = np.ascontiguousarray(points[start : start + batch], dtype=np.float32)
        _, nearest = index.search(part, min(PLACE_NEIGHBOURS, len(known)))
        out[start : start + len(part)] = np.median(known_xy[nearest], axis=1)
        if progress:
            progress(min(start + batch, len(points)), len(points))
    return out


def _scaled(xy: np.ndarray) -> np.ndarray:
    xy = np.asarray(xy, dtype=np.float64)
    low, high = xy.min(axis=0), xy.max(axis=0)
    span = np.where(high - low > 0, high - low, 1.0)
    return ((xy - low) / span).astype(np.float32)
