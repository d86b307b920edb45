"""k-means and nearest-code search used by the quantizers."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from speechkit.tokenizers import kmeans, nearest_code, sample_vectors
from speechkit.tokenizers.kmeans import _assign


def test_nearest_code_matches_brute_force():
    samples, codebook = torch.randn(300, 6), torch.randn(40, 6)
    expected = torch.cdist(samples, codebook).argmin(dim=1)
    assert torch.equal(nearest_code(samples, codebook), expected)


def test_chunked_assignment_equals_one_shot():
    samples, codebook = torch.randn(1000, 4), torch.randn(16, 4)
    assert torch.equal(_assign(samples, codebook, chunk_size=97), nearest_code(samples, codebook))


def test_kmeans_recovers_separated_clusters():
    centers = torch.randn(8, 3) * 20
    points = (centers.repeat_interleave(50, dim=0) + torch.randn(400, 3) * 0.1)[torch.randperm(400)]
    centroids, counts = kmeans(points, 8, num_iters=20)
    assert counts.sum() == 400
    # every true center has a centroid right on it
    assert torch.cdist(centers, centroids).min(dim=1).values.max() < 1.0


def test_spherical_kmeans_gives_unit_centroids():
    points = F.normalize(torch.randn(200, 5), dim=1)
    centroids, counts = kmeans(points, 10, spherical=True)
    assert torch.allclose(centroids.norm(dim=1), torch.ones(10), atol=1e-5)
    assert counts.sum() == 200


def test_sample_vectors_with_and_without_replacement():
    samples = torch.arange(10.0).unsqueeze(1)
    distinct = sample_vectors(samples, 10)
    assert sorted(distinct.squeeze(1).tolist()) == list(range(10))
    assert sample_vectors(samples, 25).shape == (25, 1)
