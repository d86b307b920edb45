"""Speaker clustering of segment embeddings: NME-SC spectral clustering and its helpers.

NME-SC (Park et al. 2019, "Auto-tuning spectral clustering for speaker diarization using normalized
maximum eigengap") needs neither a speaker count nor a tuned threshold. For each candidate ``p`` it
keeps the ``p`` largest affinities of every row (self included) as 1, the rest 0, and symmetrises,
``(A + A^T) / 2``; it takes the eigenvalues of the graph Laplacian ``L = D - A`` and the largest gap
between consecutive ones among the first ``max_speakers + 1``, divided by the largest eigenvalue
(the normalised maximum eigengap ``g_p``). The ``p`` with the smallest ``(p / N) / g_p`` wins: a
sparse graph whose clusters stand far apart. The position of its largest gap is the speaker count,
and k-means on the first ``k`` Laplacian eigenvectors gives the labels. Like NeMo, the ``p`` search
runs on a subsampled matrix for long sessions (``nme_mat_size``); the final eigenvectors do not.

Two departures from NeMo's defaults, both measured on gaussian blobs on the sphere (1-4 speakers of
4-200 segments): ``p`` is searched from 4 rather than 1 and at least up to 8 rather than only up to
0.15 N. With one or two neighbours per row one speaker's segments fall apart into chains, and each
fragment reads as a speaker (NeMo patches small sessions with synthetic "anchor" speakers instead).
And the spectral labels are refined by moving each segment to the cluster of highest mean affinity,
since the binarised graph can tie a segment to another speaker through that speaker's top-p lists.

Multi-scale diarization (NeMo's MSDD clustering) fuses the cosine affinities of several segment
scales at base-scale resolution, :func:`multiscale_affinity`, before clustering. Three or fewer
segments are too few for an eigengap; they are clustered agglomeratively by a cosine threshold.

Labels are renumbered in order of first appearance (segment 0 is speaker 0).

Example:
    >>> rng = np.random.default_rng(0)
    >>> centres = rng.standard_normal((2, 16))
    >>> embeddings = np.repeat(centres, 10, axis=0) + 0.3 * rng.standard_normal((20, 16))
    >>> result = cluster_embeddings(embeddings)
    >>> result.num_speakers, result.labels.tolist() == [0] * 10 + [1] * 10
    (2, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import scipy.linalg
from scipy.cluster.hierarchy import cut_tree, fcluster, linkage
from scipy.spatial.distance import squareform

from speechkit.errors import ConfigError

__all__ = [
    "ClusteringConfig",
    "ClusteringResult",
    "agglomerative_clustering",
    "cluster_affinity",
    "cluster_embeddings",
    "cosine_affinity",
    "kmeans",
    "multiscale_affinity",
    "nme_spectral_clustering",
]

# Up to this many segments, agglomerative clustering replaces NME-SC (no eigengap to read).
MAX_AGGLOMERATIVE_SEGMENTS = 3
# An affinity matrix this close to all ones is one speaker (identical embeddings have no eigengap).
_IDENTICAL = 1.0 - 1e-6


@dataclass(frozen=True, kw_only=True)
class ClusteringConfig:
    """Settings of :func:`cluster_affinity` and :func:`nme_spectral_clustering`.

    Args:
        max_rp_threshold, min_search_neighbors, min_p_neighbors: ``p`` (self included) is searched
            from ``min_p_neighbors`` to ``max(min_search_neighbors, floor(max_rp_threshold * N))``,
            capped at N - 1 (NeMo: 1 to ``max(2, floor(0.15 N))``). A speaker with fewer than
            ``min_p_neighbors`` segments hardly forms a cluster of its own.
        sparse_search_volume: at most this many ``p`` values are tried, evenly spread.
        nme_mat_size: the ``p`` search runs on every ``N // nme_mat_size``-th segment (NeMo).
        refine_iterations: passes of mean-affinity relabelling after k-means (0: pure NME-SC).
        min_cluster_size: smaller clusters join the cluster they are most similar to on average.
        threshold: cosine similarity at which the agglomerative fallback stops merging.
        seed: seeds k-means.
    """

    max_rp_threshold: float = 0.15
    min_search_neighbors: int = 8
    min_p_neighbors: int = 4
    sparse_search_volume: int = 30
    nme_mat_size: int = 512
    refine_iterations: int = 10
    min_cluster_size: int = 1
    threshold: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in ("threshold", "seed", "refine_iterations"):
                continue
            if not value > 0:
                raise ConfigError(f"ClusteringConfig.{item.name} must be positive, got {value}")
        if self.refine_iterations < 0:
            raise ConfigError(
                f"ClusteringConfig.refine_iterations must be >= 0, got {self.refine_iterations}"
            )
        if not -1.0 <= self.threshold <= 1.0:
            raise ConfigError(f"ClusteringConfig.threshold is a cosine in [-1, 1], got {self.threshold}")


@dataclass(frozen=True)
class ClusteringResult:
    """Speaker labels of N segments.

    Attributes:
        labels: int64 [N], 0 .. num_speakers - 1 in order of first appearance.
        num_speakers: number of distinct labels.
        method: "nme-sc", "agglomerative" or "single" (one segment or identical embeddings).
        p_neighbors: the number of neighbours NME-SC kept per row (None for other methods).
    """

    labels: np.ndarray
    num_speakers: int
    method: str
    p_neighbors: int | None = None


def _check_affinity(affinity: np.ndarray) -> np.ndarray:
    affinity = np.asarray(affinity, dtype=np.float64)
    if affinity.ndim != 2 or affinity.shape[0] != affinity.shape[1] or affinity.shape[0] == 0:
        raise ValueError(f"affinity must be a non-empty square matrix [N, N], got shape {affinity.shape}")
    if not np.all(np.isfinite(affinity)):
        raise ValueError("affinity contains NaN or Inf")
    return 0.5 * (affinity + affinity.T)


def _max_speakers(max_speakers: int) -> int:
    if isinstance(max_speakers, bool) or not isinstance(max_speakers, (int, np.integer)) or max_speakers < 1:
        raise ValueError(f"max_speakers must be a positive integer, got {max_speakers!r}")
    return int(max_speakers)


def _check_count(num_speakers: int | None, size: int) -> None:
    if num_speakers is not None and not 1 <= num_speakers <= size:
        raise ValueError(f"num_speakers must lie in [1, {size}] for {size} segments, got {num_speakers}")


def _result(labels: np.ndarray, method: str, p_neighbors: int | None = None) -> ClusteringResult:
    labels = _first_appearance(np.asarray(labels, dtype=np.int64))
    return ClusteringResult(labels, int(labels.max()) + 1, method, p_neighbors)


def _first_appearance(labels: np.ndarray) -> np.ndarray:
    names, first = np.unique(labels, return_index=True)
    remap = np.empty(int(names.max()) + 1, dtype=np.int64)
    remap[names[np.argsort(first)]] = np.arange(len(names))
    return remap[labels]


def cosine_affinity(embeddings: np.ndarray) -> np.ndarray:
    """Cosine similarities [N, N] of embeddings [N, D] (a zero vector scores 0 with everything).

    Example:
        >>> cosine_affinity(np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])).round(3).tolist()
        [[1.0, 0.707, 0.0], [0.707, 1.0, 0.707], [0.0, 0.707, 1.0]]
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"embeddings must have shape [N, D] with N >= 1, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("embeddings contain NaN or Inf")
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return np.clip(unit @ unit.T, -1.0, 1.0)


def kmeans(
    points: np.ndarray, num_clusters: int, seed: int = 0, n_init: int = 10, max_iter: int = 100
) -> np.ndarray:
    """Deterministic k-means: k-means++ seeding (Arthur & Vassilvitskii 2007), best of ``n_init`` runs.

    Args:
        points: [N, D].
        num_clusters: k (1 <= k <= N).
        seed: seeds the k-means++ draws.
        n_init: restarts; the lowest within-cluster sum of squares wins.
        max_iter: Lloyd iterations per run.

    Returns:
        int64 labels [N] in [0, k), in order of first appearance.

    Example:
        >>> kmeans(np.array([[0.0], [0.1], [5.0], [5.2]]), 2).tolist()
        [0, 0, 1, 1]
    """
    x = np.asarray(points, dtype=np.float64)
    _check_count(num_clusters, len(x))
    rng = np.random.default_rng(seed)
    best_labels, best_inertia = np.zeros(len(x), dtype=np.int64), np.inf
    for _ in range(n_init):
        centres = _kmeans_plus_plus(x, num_clusters, rng)
        for _ in range(max_iter):
            distance = ((x[:, None, :] - centres[None]) ** 2).sum(axis=-1)  # [N, k]
            labels = distance.argmin(axis=1)
            moved = centres.copy()
            for c in range(num_clusters):
                members = x[labels == c]
                # An emptied cluster restarts at the point farthest from its centre.
                moved[c] = members.mean(axis=0) if len(members) else x[distance.min(axis=1).argmax()]
            if np.allclose(moved, centres, rtol=0.0, atol=1e-12):
                break
            centres = moved
        distance = ((x[:, None, :] - centres[None]) ** 2).sum(axis=-1)
        labels, inertia = distance.argmin(axis=1), float(distance.min(axis=1).sum())
        if inertia < best_inertia - 1e-12:
            best_labels, best_inertia = labels, inertia
    return _first_appearance(best_labels)


def _kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        closest = np.min(((x[:, None, :] - np.array(centres)[None]) ** 2).sum(axis=-1), axis=1)
        total = closest.sum()
        centres.append(x[rng.choice(len(x), p=closest / total) if total > 0 else rng.integers(len(x))])
    return np.array(centres)


def _binarized_graph(affinity: np.ndarray, p_neighbors: int) -> np.ndarray:
    """Each row's ``p`` largest entries (self included) as 1, then symmetrised."""
    top = np.argsort(-affinity, axis=1, kind="stable")[:, :p_neighbors]
    binary = np.zeros_like(affinity)
    np.put_along_axis(binary, top, 1.0, axis=1)
    return 0.5 * (binary + binary.T)


def _laplacian(graph: np.ndarray) -> np.ndarray:
    return np.diag(graph.sum(axis=1)) - graph


def _search_p(affinity: np.ndarray, max_speakers: int, config: ClusteringConfig) -> tuple[int, int]:
    """NME analysis: the ``p`` of smallest (p / N) / g_p and the count at its largest gap."""
    size = len(affinity)
    max_speakers = min(max_speakers, size)
    max_p = max(1, min(size - 1, max(config.min_search_neighbors, int(size * config.max_rp_threshold))))
    min_p = min(config.min_p_neighbors, max_p)
    volume = min(max_p - min_p + 1, config.sparse_search_volume)
    best = (np.inf, min_p, 1)
    for p in np.unique(np.round(np.linspace(min_p, max_p, volume)).astype(int)):
        eigenvalues = np.linalg.eigvalsh(_laplacian(_binarized_graph(affinity, int(p))))  # ascending
        gaps = np.diff(eigenvalues[: max_speakers + 1])
        if gaps.size == 0:
            continue
        normalized_gap = gaps.max() / (eigenvalues[-1] + 1e-10)
        ratio = (p / size) / (normalized_gap + 1e-10)
        if ratio < best[0]:
            best = (ratio, int(p), int(np.argmax(gaps)) + 1)
    return best[1], best[2]


def nme_spectral_clustering(
    affinity: np.ndarray,
    num_speakers: int | None = None,
    max_speakers: int = 8,
    config: ClusteringConfig | None = None,
) -> ClusteringResult:
    """Cluster an affinity matrix by NME-SC, estimating the speaker count unless it is given.

    Args:
        affinity: symmetric similarities [N, N] (cosine, or fused multi-scale), N >= 2.
        num_speakers: the speaker count if known (``p`` is still tuned by the NME analysis).
        max_speakers: upper bound on the estimated count.
        config: search, refinement and k-means settings (defaults: :class:`ClusteringConfig`).

    Returns:
        :class:`ClusteringResult` with method "nme-sc" and the chosen ``p`` (full-matrix scale).

    Example:
        >>> block = np.kron(np.eye(2), np.ones((6, 6)))  # two speakers, 6 segments each
        >>> result = nme_spectral_clustering(0.8 * block + 0.1)
        >>> result.num_speakers, result.labels.tolist()
        (2, [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    """
    config = config or ClusteringConfig()
    affinity = _check_affinity(affinity)
    size = len(affinity)
    _check_count(num_speakers, size)
    max_speakers = _max_speakers(max_speakers)
    if size < 2:
        raise ValueError("NME-SC needs at least 2 segments")
    if num_speakers in (None, 1) and affinity.min() >= _IDENTICAL:
        return _result(np.zeros(size, dtype=np.int64), "single")
    step = max(1, size // config.nme_mat_size)  # NeMo's subsampling keeps the search O(512^3) per p
    p_sub, count = _search_p(affinity[::step, ::step], max_speakers, config)
    p_neighbors = min(size, p_sub * step)
    k = num_speakers or count
    if k == 1:
        labels = np.zeros(size, dtype=np.int64)
    else:
        laplacian = _laplacian(_binarized_graph(affinity, p_neighbors))
        _, vectors = scipy.linalg.eigh(laplacian, subset_by_index=[0, k - 1])  # [N, k] spectral embedding
        labels = kmeans(vectors, k, seed=config.seed)
        labels = _refine(labels, affinity, config.refine_iterations)
    labels = _absorb_small_clusters(labels, affinity, config.min_cluster_size)
    return _result(labels, "nme-sc", p_neighbors)


def _refine(labels: np.ndarray, affinity: np.ndarray, iterations: int) -> np.ndarray:
    """Move each segment to the cluster of highest mean affinity (itself left out), to a fixed point."""
    off_diagonal = affinity - np.diag(np.diag(affinity))
    for _ in range(iterations):
        names = np.unique(labels)
        members = labels[:, None] == names[None, :]  # [N, C]
        counts = members.sum(axis=0) - members  # cluster sizes without the segment itself
        mean = np.where(counts > 0, (off_diagonal @ members) / np.maximum(counts, 1), -np.inf)
        moved = names[np.argmax(mean, axis=1)]
        if np.array_equal(moved, labels) or len(np.unique(moved)) < len(names):
            break  # converged, or a cluster would empty: the spectral count stands
        labels = moved
    return labels


def _absorb_small_clusters(labels: np.ndarray, affinity: np.ndarray, min_cluster_size: int) -> np.ndarray:
    """Merge clusters under ``min_cluster_size`` (smallest first) into their most similar cluster."""
    labels = labels.copy()
    while True:
        names, sizes = np.unique(labels, return_counts=True)
        if len(names) < 2 or sizes.min() >= min_cluster_size:
            return labels
        small = names[np.argmin(sizes)]
        others = names[names != small]
        rows = labels == small
        mean_similarity = [affinity[np.ix_(rows, labels == name)].mean() for name in others]
        labels[rows] = others[int(np.argmax(mean_similarity))]


def agglomerative_clustering(
    affinity: np.ndarray, threshold: float = 0.5, num_speakers: int | None = None
) -> ClusteringResult:
    """Average-linkage clustering: merge while two clusters' mean similarity is >= ``threshold``.

    Args:
        affinity: similarities [N, N] (cosine in [-1, 1]).
        threshold: similarity at which merging stops (ignored when ``num_speakers`` is given).
        num_speakers: cut the tree into exactly this many clusters instead.

    Example:
        >>> affinity = np.array([[1.0, 0.9, 0.1], [0.9, 1.0, 0.2], [0.1, 0.2, 1.0]])
        >>> agglomerative_clustering(affinity).labels.tolist()
        [0, 0, 1]
    """
    affinity = _check_affinity(affinity)
    _check_count(num_speakers, len(affinity))
    if len(affinity) == 1:
        return _result(np.zeros(1, dtype=np.int64), "agglomerative")
    distance = np.clip(1.0 - affinity, 0.0, None)
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform(distance, checks=False), method="average")
    if num_speakers is not None:  # cut by merge count: exact even when merge heights tie
        return _result(cut_tree(tree, n_clusters=num_speakers)[:, 0], "agglomerative")
    return _result(fcluster(tree, t=1.0 - threshold, criterion="distance") - 1, "agglomerative")


def cluster_affinity(
    affinity: np.ndarray,
    num_speakers: int | None = None,
    max_speakers: int = 8,
    config: ClusteringConfig | None = None,
) -> ClusteringResult:
    """Cluster segments by their affinity: one speaker, agglomerative (<= 3 segments) or NME-SC.

    Args:
        affinity: similarities [N, N], e.g. :func:`cosine_affinity` or :func:`multiscale_affinity`.
        num_speakers: the speaker count if known.
        max_speakers: upper bound on the estimated count.
        config: settings (defaults: :class:`ClusteringConfig`).

    Returns:
        :class:`ClusteringResult`.
    """
    config = config or ClusteringConfig()
    affinity = _check_affinity(affinity)
    _check_count(num_speakers, len(affinity))
    _max_speakers(max_speakers)
    if num_speakers in (None, 1) and (len(affinity) == 1 or affinity.min() >= _IDENTICAL):
        return _result(np.zeros(len(affinity), dtype=np.int64), "single")
    if len(affinity) <= MAX_AGGLOMERATIVE_SEGMENTS:
        return agglomerative_clustering(affinity, config.threshold, num_speakers)
    return nme_spectral_clustering(affinity, num_speakers, max_speakers, config)


def cluster_embeddings(
    embeddings: np.ndarray,
    num_speakers: int | None = None,
    max_speakers: int = 8,
    config: ClusteringConfig | None = None,
) -> ClusteringResult:
    """:func:`cluster_affinity` of the cosine affinity of segment embeddings [N, D]."""
    return cluster_affinity(cosine_affinity(embeddings), num_speakers, max_speakers, config)


def multiscale_affinity(
    embeddings_per_scale: Sequence[np.ndarray], mapping: np.ndarray, weights: Sequence[float] | None = None
) -> np.ndarray:
    """Weighted sum of every scale's cosine affinity, read at base-scale resolution.

    ``fused[i, j] = sum_k w_k * cos(e_k[mapping[k, i]], e_k[mapping[k, j]])``, the weights scaled to
    sum to 1 so the result stays a cosine-like similarity (NeMo's multi-scale clustering; equal
    weights by default).

    Args:
        embeddings_per_scale: K arrays [S_k, D_k], base scale last.
        mapping: int [K, S_base] from :func:`~speechkit.speaker.segmentation.scale_mapping`.
        weights: K non-negative weights, not all zero (equal when None).

    Returns:
        float64 [S_base, S_base].

    Example:
        >>> coarse = np.array([[1.0, 0.0]])
        >>> fine = np.array([[1.0, 0.0], [0.0, 1.0]])
        >>> multiscale_affinity([coarse, fine], np.array([[0, 0], [0, 1]])).tolist()
        [[1.0, 0.5], [0.5, 1.0]]
    """
    mapping = np.asarray(mapping)
    if mapping.ndim != 2 or mapping.shape[0] != len(embeddings_per_scale):
        raise ValueError(
            f"mapping must have shape [K={len(embeddings_per_scale)}, S_base], got {mapping.shape}"
        )
    weights = np.ones(len(mapping)) if weights is None else np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(mapping),) or np.any(weights < 0) or not weights.sum() > 0:
        raise ValueError(f"weights must be {len(mapping)} non-negative numbers, not all zero, got {weights}")
    weights = weights / weights.sum()
    num_base = mapping.shape[1]
    fused = np.zeros((num_base, num_base))
    if num_base == 0:
        return fused
    for k, (embeddings, weight) in enumerate(zip(embeddings_per_scale, weights)):
        affinity = cosine_affinity(embeddings)  # [S_k, S_k], then read at the mapped segments
        index = mapping[k]
        if index.min() < 0 or index.max() >= len(affinity):
            raise ValueError(f"mapping row {k} indexes outside the {len(affinity)} segments of scale {k}")
        fused += weight * affinity[np.ix_(index, index)]
    return fused
