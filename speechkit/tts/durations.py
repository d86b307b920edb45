"""Durations: hard monotonic alignment, the beta-binomial alignment prior, length regulation.

Shared by the aligner (which produces per-phoneme durations in codec frames) and the TTS models
(which expand phoneme encodings to frames with them).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import betabinom
from torch import Tensor


def monotonic_alignment_search(log_prob: np.ndarray) -> np.ndarray:
    """Most likely monotonic hard alignment of T frames to N tokens (Glow-TTS, section 3.2).

    Every token gets at least one frame, frames are assigned in order, and the path maximises the
    summed ``log_prob[t, n]``.

    Args:
        log_prob: [T, N] frame-to-token log-likelihoods, T >= N.

    Returns:
        durations [N] int64, summing to T.

    Example:
        >>> lp = np.log(np.array([[.9, .1], [.8, .2], [.1, .9]]))
        >>> monotonic_alignment_search(lp).tolist()
        [2, 1]
    """
    num_frames, num_tokens = log_prob.shape
    if num_tokens == 0 or num_frames < num_tokens:
        raise ValueError(f"cannot align {num_tokens} tokens to {num_frames} frames (needs T >= N >= 1)")
    neg = -1e30
    value = np.full(num_tokens, neg)
    value[0] = log_prob[0, 0]
    came_from_previous = np.zeros((num_frames, num_tokens), dtype=bool)
    for t in range(1, num_frames):
        stay = value
        advance = np.concatenate([[neg], value[:-1]])
        came_from_previous[t] = advance > stay
        value = np.maximum(stay, advance) + log_prob[t]
        value[min(t + 1, num_tokens) :] = neg  # token n is reachable from frame n on
    durations = np.zeros(num_tokens, dtype=np.int64)
    token = num_tokens - 1
    for t in range(num_frames - 1, -1, -1):
        durations[token] += 1
        if t > 0 and came_from_previous[t, token]:
            token -= 1
    if token != 0:
        raise AssertionError("alignment back-trace did not end on the first token")
    return durations


def beta_binomial_prior(num_tokens: int, num_frames: int, scaling: float = 1.0) -> np.ndarray:
    """Log of the near-diagonal alignment prior [T, N] (One TTS Alignment To Rule Them All, sec. 2.2).

    Frame t of T puts a beta-binomial(N - 1, a = scaling * (t + 1), b = scaling * (T - t)) mass on
    the tokens, so early frames favour early tokens; it speeds up and stabilises aligner training.

    Example:
        >>> p = np.exp(beta_binomial_prior(3, 6))
        >>> np.allclose(p.sum(1), 1.0), int(p[0].argmax()), int(p[-1].argmax())
        (True, 0, 2)
    """
    t = np.arange(1, num_frames + 1)
    dist = betabinom(num_tokens - 1, scaling * t[:, None], scaling * (num_frames + 1 - t[:, None]))
    return np.log(np.maximum(dist.pmf(np.arange(num_tokens)[None, :]), 1e-8)).astype(np.float32)


def length_regulate(x: Tensor, durations: Tensor, max_frames: int | None = None) -> Tensor:
    """Repeat each token's vector for its duration (FastSpeech's length regulator).

    Args:
        x: [B, N, D] token encodings.
        durations: [B, N] non-negative integer frame counts (0 at padding).
        max_frames: output length (default: the largest total duration).

    Returns:
        [B, T, D], zero past each item's total duration.

    Example:
        >>> x = torch.arange(3.).view(1, 3, 1)
        >>> length_regulate(x, torch.tensor([[2, 0, 1]]))[0, :, 0].tolist()
        [0.0, 0.0, 2.0]
    """
    durations = durations.long().clamp_min(0)
    totals = durations.sum(1)
    frames = int(totals.max()) if max_frames is None else max_frames
    ends = durations.cumsum(1)  # [B, N]
    positions = torch.arange(frames, device=x.device)[None, :, None]  # [1, T, 1]
    # token index of frame t = number of tokens whose end is <= t
    index = (ends[:, None, :] <= positions).sum(-1).clamp_max(x.shape[1] - 1)  # [B, T]
    out = torch.gather(x, 1, index[..., None].expand(-1, -1, x.shape[2]))
    valid = positions[..., 0] < totals[:, None]
    return out * valid[..., None].to(out.dtype)

