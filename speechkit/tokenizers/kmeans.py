"""K-means in torch: codebook initialisation for the vector quantizers and k-means pseudo-tokens.

The same three functions serve a quantizer's first training batch (a few thousand vectors, one
call) and offline clustering of SSL features into pseudo-codes for ASR pre-training (millions of
vectors: the assignment step is chunked so memory stays at ``chunk_size x num_clusters``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def sample_vectors(samples: Tensor, num: int) -> Tensor:
    """Draw ``num`` rows of ``samples`` at random, from torch's default generator.

    Rows are drawn without replacement when there are enough of them, else with replacement
    (as audiocraft's ``sample_vectors``), so a small batch can still seed a large codebook.

    Args:
        samples: [N, D] vectors, N >= 1.
        num: how many rows to draw.

    Returns:
        [num, D] rows of ``samples``.

    Example:
        >>> sample_vectors(torch.randn(10, 3), 4).shape
        torch.Size([4, 3])
    """
    if samples.shape[0] == 0:
        raise ValueError("sample_vectors needs at least one sample, got an empty [0, D] tensor")
    n = samples.shape[0]
    if n >= num:
        index = torch.randperm(n, device=samples.device)[:num]
    else:
        index = torch.randint(0, n, (num,), device=samples.device)
    return samples[index]


def nearest_code(samples: Tensor, codebook: Tensor) -> Tensor:
    """Index of the nearest codebook row (squared Euclidean distance) for every sample.

    ``|x - c|^2 = |x|^2 - 2 x.c + |c|^2`` and ``|x|^2`` is the same for every code, so the argmin
    needs only ``|c|^2 - 2 x.c``: one fused ``addmm``, no [N, K, D] intermediate. Ties go to the
    lowest index. Plain tensor ops, so it traces to ONNX (MatMul + ArgMin).

    Args:
        samples: [N, D] vectors.
        codebook: [K, D] code vectors.

    Returns:
        [N] int64 code indices in [0, K).

    Example:
        >>> nearest_code(torch.tensor([[0.9, 0.0], [0.1, 2.0]]), torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        tensor([0, 1])
    """
    codebook_sq = codebook.pow(2).sum(dim=1)  # [K]
    scores = torch.addmm(codebook_sq.unsqueeze(0), samples, codebook.t(), alpha=-2.0)  # [N, K]
    return scores.argmin(dim=1)


def _assign(samples: Tensor, centroids: Tensor, chunk_size: int) -> Tensor:
    """``nearest_code`` over chunks of rows, so [N, K] scores never live in memory at once."""
    return torch.cat(
        [nearest_code(chunk, centroids) for chunk in samples.split(chunk_size)]
        or [samples.new_zeros(0, dtype=torch.long)]
    )


@torch.no_grad()
def kmeans_plusplus(samples: Tensor, num_clusters: int) -> Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): each new seed is a sample drawn with
    probability proportional to its squared distance to the nearest seed so far.

    Spreads the seeds over the data, so Lloyd rarely starts two seeds in one cluster; duplicates
    are impossible while there are at least ``num_clusters`` distinct samples. Costs K passes of
    O(N * D), about one Lloyd iteration.

    Args:
        samples: [N, D] float vectors, N >= 1.
        num_clusters: K, the number of seeds.

    Returns:
        [K, D] seeds, rows of ``samples``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> seeds = kmeans_plusplus(torch.tensor([[0.0], [0.1], [10.0], [10.1]]), 2)
        >>> sorted(round(v) for v in seeds.squeeze(1).tolist())
        [0, 10]
    """
    if samples.shape[0] == 0:
        raise ValueError("kmeans_plusplus needs at least one sample, got an empty [0, D] tensor")
    samples_sq = samples.pow(2).sum(dim=1)  # [N]

    def squared_distance(seed: Tensor) -> Tensor:  # [N]; one mat-vec, no [N, D] temporary
        return (samples_sq - 2.0 * (samples @ seed) + seed.dot(seed)).clamp(min=0.0)

    seeds = samples.new_empty(num_clusters, samples.shape[1])
    seeds[0] = samples[torch.randint(0, samples.shape[0], (), device=samples.device)]
    closest = squared_distance(seeds[0])  # [N] squared distance to the nearest seed so far
    for k in range(1, num_clusters):
        # All distances zero (fewer distinct samples than seeds): fall back to uniform, no host sync.
        weights = torch.where(closest.sum() > 0, closest, torch.ones_like(closest))
        seeds[k] = samples[torch.multinomial(weights, 1).squeeze(0)]
        closest = torch.minimum(closest, squared_distance(seeds[k]))
    return seeds


@torch.no_grad()
def kmeans(
    samples: Tensor,
    num_clusters: int,
    num_iters: int = 10,
    spherical: bool = False,
    chunk_size: int = 65536,
) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means with k-means++ seeding (deterministic given the torch seed).

    An empty cluster keeps its previous centroid (audiocraft ``core_vq.kmeans``); the quantizer's
    dead-code restart deals with it later. With ``spherical=True`` the centroids are l2-normalised
    after each update (spherical k-means, for l2-normalised codebooks; pass normalised samples).

    Args:
        samples: [N, D] float vectors, N >= 1.
        num_clusters: K, the number of centroids.
        num_iters: Lloyd iterations (0 returns the k-means++ seeds and their counts).
        spherical: keep the centroids on the unit sphere.
        chunk_size: rows per assignment chunk (bounds memory at ``chunk_size * K`` floats).

    Returns:
        ``(centroids, counts)``: [K, D] centroids and [K] float counts of samples assigned to each
        final centroid.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> points = torch.cat([torch.randn(50, 2) * 0.1 + 5, torch.randn(50, 2) * 0.1 - 5])
        >>> centroids, counts = kmeans(points, 2)
        >>> sorted(counts.tolist())
        [50.0, 50.0]
    """
    if samples.ndim != 2:
        raise ValueError(f"kmeans expects samples [N, D], got shape {tuple(samples.shape)}")
    samples = samples.float()
    centroids = kmeans_plusplus(samples, num_clusters)
    if spherical:
        centroids = F.normalize(centroids, dim=1)
    for _ in range(num_iters):
        codes = _assign(samples, centroids, chunk_size)
        counts = torch.bincount(codes, minlength=num_clusters)
        sums = torch.zeros_like(centroids).index_add_(0, codes, samples)
        means = sums / counts.clamp(min=1).unsqueeze(1).to(sums.dtype)
        if spherical:
            means = F.normalize(means, dim=1)
        centroids = torch.where((counts == 0).unsqueeze(1), centroids, means)
    # Counts of the final centroids (one more assignment), so they match what is returned.
    counts = torch.bincount(_assign(samples, centroids, chunk_size), minlength=num_clusters)
    return centroids, counts.to(samples.dtype)
