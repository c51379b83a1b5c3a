"""The map's projection: a (n, 128) float32 matrix of descriptors -> (n, 2) in [0, 1], keeping
neighbourhoods (faces of one person/cluster stay together), for any n, deterministic."""

import numpy as np
import pytest

from embeddings.projection import METHOD, projection_compute


def clusters(n_clusters: int, per: int, *, spread: float = 0.05, seed: int = 0):
    """Points around n_clusters centres about 1.4 apart (different people), `spread` around each
    centre (photos of one person are ~0.3-0.5 apart in dlib's space)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, 128))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(n_clusters), per)
    x = centres[labels] + rng.normal(scale=spread, size=(len(labels), 128))
    return x.astype(np.float32), labels


def test_clusters_stay_together_on_the_map():
    x, labels = clusters(5, 40)
    xy = projection_compute(x)
    assert xy.shape == (200, 2) and xy.dtype == np.float32
    assert xy.min() >= 0 and xy.max() <= 1 and np.isclose(xy.max(axis=0), 1).all()
    # Every point's nearest point on the map is of its own cluster.
    d = np.linalg.norm(xy[:, None, :] - xy[None, :, :], axis=2)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(axis=1)] == labels).mean() == 1.0
    # And the clusters are apart: each cluster's spread is small next to the distance between centres.
    centres = np.stack([xy[labels == c].mean(axis=0) for c in range(5)])
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=2)[np.triu_indices(5, 1)]
    spread = max(np.linalg.norm(xy[labels == c] - centres[c], axis=1).mean() for c in range(5))
    assert gaps.min() > 2 * spread
    assert METHOD == "pca30-tsne"


def test_the_same_vectors_give_the_same_map():
    x, _ = clusters(3, 20, seed=1)
    assert np.array_equal(projection_compute(x), projection_compute(x))


@pytest.mark.parametrize("n", [0, 2, 5])
def test_tiny_datasets_get_a_map(n):
    x, _ = clusters(1, n, seed=2) if n else (np.zeros((0, 128), dtype=np.float32), None)
    xy = projection_compute(x)
    assert xy.shape == (n, 2)
    assert np.isfinite(xy).all()
    if n:
        assert xy.min() >= 0 and xy.max() <= 1


def test_a_vector_instead_of_a_matrix_is_refused():
    with pytest.raises(ValueError, match="matrix"):
        projection_compute(np.zeros(128, dtype=np.float32))


def test_a_large_set_is_mapped_from_a_sample_and_the_rest_placed_among_their_neighbours(monkeypatch):
    from embeddings import projection

    monkeypatch.setattr(projection, "FULL_TSNE_MAX", 300)
    monkeypatch.setattr(projection, "SAMPLE_SIZE", 200)
    monkeypatch.setattr(projection, "TRANSFORM_BATCH", 128)  # several batches
    x, labels = clusters(5, 120, seed=3)
    xy = projection_compute(x)
    assert projection.method_for(len(x)) == projection.SAMPLE_METHOD and projection.method_for(300) == METHOD
    assert xy.shape == (600, 2) and xy.dtype == np.float32 and np.isfinite(xy).all()
    assert xy.min() >= 0 and xy.max() <= 1
    # Faces placed by transform land in their own cluster: every point's nearest point on the map.
    d = np.linalg.norm(xy[:, None, :] - xy[None, :, :], axis=2)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(axis=1)] == labels).mean() >= 0.98
