"""Monotonic alignment search, the alignment prior and the length regulator."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from speechkit.tts.durations import beta_binomial_prior, length_regulate, monotonic_alignment_search


def _brute_force_best(log_prob: np.ndarray) -> float:
    """Best monotonic path score by enumerating every composition of T into N positive parts."""
    t, n = log_prob.shape
    best = -np.inf
    for cuts in itertools.combinations(range(1, t), n - 1):
        bounds = (0, *cuts, t)
        score = sum(log_prob[bounds[i] : bounds[i + 1], i].sum() for i in range(n))
        best = max(best, score)
    return best


@pytest.mark.parametrize("seed", range(5))
def test_mas_finds_the_optimal_monotonic_path(seed):
    rng = np.random.default_rng(seed)
    log_prob = np.log(rng.dirichlet(np.ones(4), size=9))  # [T=9, N=4]
    durations = monotonic_alignment_search(log_prob)
    assert durations.sum() == 9 and (durations >= 1).all()
    bounds = np.concatenate([[0], np.cumsum(durations)])
    score = sum(log_prob[bounds[i] : bounds[i + 1], i].sum() for i in range(4))
    assert score == pytest.approx(_brute_force_best(log_prob))


def test_mas_recovers_a_planted_alignment():
    planted = np.array([3, 1, 5, 2])
    owner = np.repeat(np.arange(4), planted)
    log_prob = np.where(owner[:, None] == np.arange(4)[None], 0.0, -5.0)
    assert monotonic_alignment_search(log_prob).tolist() == planted.tolist()


def test_mas_refuses_more_tokens_than_frames():
    with pytest.raises(ValueError, match="cannot align 5 tokens to 3 frames"):
        monotonic_alignment_search(np.zeros((3, 5)))


def test_prior_is_a_distribution_along_the_diagonal():
    prior = np.exp(beta_binomial_prior(10, 40))
    assert prior.shape == (40, 10)
    np.testing.assert_allclose(prior.sum(1), 1.0, atol=1e-5)
    peaks = prior.argmax(1)
    assert (np.diff(peaks) >= 0).all() and peaks[0] == 0 and peaks[-1] == 9


def test_length_regulate_repeats_and_pads():
    x = torch.arange(6.0).view(2, 3, 1)
    out = length_regulate(x, torch.tensor([[1, 2, 0], [0, 1, 1]]))
    assert out.shape == (2, 3, 1)
    assert out[0, :, 0].tolist() == [0.0, 1.0, 1.0]
    assert out[1, :, 0].tolist() == [4.0, 5.0, 0.0]  # item 2 lasts 2 frames: zero after
