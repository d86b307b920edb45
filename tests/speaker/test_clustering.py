"""Speaker clustering: NME-SC count and labels on blobs, fallbacks, multi-scale affinity fusion."""

from __future__ import annotations

import numpy as np
import pytest

from speechkit.errors import ConfigError
from speechkit.speaker.clustering import (
    ClusteringConfig,
    agglomerative_clustering,
    cluster_affinity,
    cluster_embeddings,
    cosine_affinity,
    kmeans,
    multiscale_affinity,
    nme_spectral_clustering,
)
from speechkit.speaker.segmentation import multiscale_segments


def blobs(sizes, dim: int = 32, spread: float = 0.15, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit embeddings around random unit centres (within-cluster cosine ~0.58, between ~0)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(sizes), dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    x = centres[labels] + spread * rng.standard_normal((len(labels), dim))
    order = rng.permutation(len(labels))  # speakers interleaved, as turns are
    return x[order] / np.linalg.norm(x[order], axis=1, keepdims=True), labels[order]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("sizes", [(40, 20), (45, 30, 15), (50, 30, 20, 12)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nme_sc_recovers_blobs_of_different_sizes(sizes, seed):
    x, truth = blobs(sizes, seed=seed)
    result = cluster_embeddings(x)
    assert result.method == "nme-sc"
    assert result.num_speakers == len(sizes)
    assert same_partition(result.labels, truth)
    assert result.labels[0] == 0 and 4 <= result.p_neighbors < len(x)


@pytest.mark.parametrize("size", [15, 40, 200])
def test_one_blob_is_one_speaker(size):
    for seed in range(3):
        result = cluster_embeddings(blobs((size,), seed=seed)[0])
        assert result.num_speakers == 1 and not result.labels.any()


def test_fixed_count_and_max_speakers():
    x, truth = blobs((45, 30, 15), seed=4)
    assert same_partition(cluster_embeddings(x, num_speakers=3).labels, truth)
    assert cluster_embeddings(x, num_speakers=2).num_speakers == 2
    bounded = cluster_embeddings(blobs((30, 30, 30, 30), seed=0)[0], max_speakers=2)
    assert bounded.num_speakers <= 2
    with pytest.raises(ValueError, match="num_speakers"):
        cluster_embeddings(x, num_speakers=0)


def test_single_segment_and_identical_embeddings_are_one_speaker():
    single = cluster_embeddings(np.ones((1, 8)))
    assert single.num_speakers == 1 and single.labels.tolist() == [0] and single.method == "single"
    same = cluster_embeddings(np.tile(np.arange(1.0, 9.0), (25, 1)))
    assert same.num_speakers == 1 and same.method == "single"
    assert nme_spectral_clustering(np.ones((10, 10))).num_speakers == 1


def test_agglomerative_fallback_for_tiny_inputs():
    a, b = np.eye(4)[0], np.eye(4)[1]
    result = cluster_embeddings(np.stack([a, a + 0.1 * b, b]))
    assert result.method == "agglomerative" and result.labels.tolist() == [0, 0, 1]
    assert cluster_embeddings(np.eye(3)).labels.tolist() == [0, 1, 2]
    assert cluster_embeddings(np.stack([a, a + 0.2 * b])).num_speakers == 1
    assert cluster_embeddings(np.stack([a, b]), num_speakers=1).num_speakers == 1
    forced = agglomerative_clustering(cosine_affinity(np.eye(3)), num_speakers=2)
    assert forced.num_speakers == 2
    # The threshold decides: cosine 0.6 merges at 0.5, not at 0.7.
    pair = cosine_affinity(np.array([[1.0, 0.0], [0.6, 0.8]]))
    assert agglomerative_clustering(pair, threshold=0.5).num_speakers == 1
    assert agglomerative_clustering(pair, threshold=0.7).num_speakers == 2


def test_min_cluster_size_absorbs_tiny_clusters():
    x, _ = blobs((40, 30, 6), seed=1)
    free = cluster_embeddings(x)
    assert free.num_speakers == 3
    merged = cluster_embeddings(x, config=ClusteringConfig(min_cluster_size=10))
    assert merged.num_speakers == 2 and np.bincount(merged.labels).min() >= 10


def test_kmeans_is_deterministic_and_exact_on_separated_points():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(c, 0.1, (20, 3)) for c in (0.0, 3.0, 6.0)])
    first = kmeans(points, 3, seed=7)
    np.testing.assert_array_equal(first, kmeans(points, 3, seed=7))
    np.testing.assert_array_equal(first, np.repeat([0, 1, 2], 20))


def test_multiscale_affinity_is_the_weighted_mapped_sum():
    rng = np.random.default_rng(0)
    coarse, fine = rng.standard_normal((3, 5)), rng.standard_normal((6, 5))
    mapping = np.array([[0, 0, 1, 1, 2, 2], np.arange(6)])
    fused = multiscale_affinity([coarse, fine], mapping, weights=[3.0, 1.0])
    expected = 0.75 * cosine_affinity(coarse)[np.ix_(mapping[0], mapping[0])] + 0.25 * cosine_affinity(fine)
    np.testing.assert_allclose(fused, expected)
    np.testing.assert_allclose(
        multiscale_affinity([coarse, fine], mapping),
        0.5 * cosine_affinity(coarse[mapping[0]]) + 0.5 * cosine_affinity(fine),
    )
    with pytest.raises(ValueError):
        multiscale_affinity([coarse, fine], mapping, weights=[0.0, 0.0])
    with pytest.raises(ValueError):
        multiscale_affinity([coarse, fine], np.array([[0, 5, 0, 0, 0, 0], np.arange(6)]))


def test_multiscale_diarization_of_a_synthetic_conversation():
    # Three speakers take turns; a segment's embedding is its majority speaker's voice plus noise that
    # shrinks with segment length, so the long scales are cleaner and the fused affinity clusters well.
    rng = np.random.default_rng(0)
    turns = [(0.0, 4.0, 0), (4.3, 9.0, 1), (9.2, 12.0, 0), (12.5, 18.0, 2), (18.1, 22.0, 1), (22.4, 26.0, 2)]
    voices = rng.standard_normal((3, 32))
    voices /= np.linalg.norm(voices, axis=1, keepdims=True)
    ms = multiscale_segments([(start, end) for start, end, _ in turns])

    def speaker_at(t: float) -> int:
        return next(spk for start, end, spk in turns if start <= t <= end)

    embeddings = []
    for scale, segments in zip(ms.scales, ms.segments):
        speakers = [speaker_at(t) for t in segments.mean(axis=1)]
        noise = 0.25 / np.sqrt(scale.window) * rng.standard_normal((len(segments), 32))
        embeddings.append(voices[speakers] + noise)
    truth = np.array([speaker_at(t) for t in ms.base_segments.mean(axis=1)])
    result = cluster_affinity(multiscale_affinity(embeddings, ms.mapping))
    assert result.num_speakers == 3
    assert same_partition(result.labels, truth)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="NaN"):
        cosine_affinity(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="square"):
        cluster_affinity(np.ones((3, 4)))
    with pytest.raises(ValueError, match="max_speakers"):
        cluster_embeddings(np.eye(5), max_speakers=0)
    with pytest.raises(ConfigError):
        ClusteringConfig(min_p_neighbors=0)
    with pytest.raises(ConfigError):
        ClusteringConfig(threshold=2.0)
