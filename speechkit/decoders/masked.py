"""Masked parallel token decoding (MaskGIT, SoundStorm, MobileSpeech's SMD): the mask schedule for
training and the confidence-ordered iterative decoding loop for inference.

Training masks a ``cosine_schedule(u)`` share of a sequence's tokens with u ~ U(0, 1); decoding
starts fully masked and, over S steps, keeps the most confident predictions, leaving
``floor(N * cosine_schedule((s + 1) / S))`` masked after step s (none after the last).

Example:
    >>> [round(cosine_schedule(torch.tensor(u)).item(), 3) for u in (0.0, 0.5, 1.0)]
    [1.0, 0.707, 0.0]
    >>> logits_fn = lambda tokens, masked: torch.nn.functional.one_hot(torch.arange(6) % 3, 3)[None].float()
    >>> iterative_decode(logits_fn, torch.zeros(1, 6, dtype=torch.long), torch.ones(1, 6, dtype=torch.bool),
    ...                  num_steps=3, temperature=0.0)[0].tolist()
    [0, 1, 2, 0, 1, 2]
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from speechkit.decoders.sampling import sample_tokens


def cosine_schedule(u: Tensor) -> Tensor:
    """Share of tokens masked at progress u in [0, 1]: cos(pi / 2 * u)."""
    return torch.cos(u * math.pi / 2).clamp_min(0.0)


def random_mask(valid: Tensor, generator: torch.Generator | None = None, min_ratio: float = 0.0) -> Tensor:
    """Training mask [B, T] (True = masked) over the valid positions, at least one per item.

    Each item masks ``cosine_schedule(u)`` of its valid positions (u ~ U(0, 1)), at least
    ``min_ratio`` of them and never fewer than one.
    """
    batch, length = valid.shape
    u = torch.rand(batch, generator=generator, device=valid.device)
    ratio = cosine_schedule(u).clamp_min(min_ratio)
    counts = valid.sum(1)
    num_masked = (counts.float() * ratio).ceil().long().clamp(min=1)
    scores = torch.rand(batch, length, generator=generator, device=valid.device).masked_fill(~valid, 2.0)
    rank = scores.argsort(1).argsort(1)  # rank of each position among the item's random scores
    return (rank < num_masked[:, None]) & valid


LogitsFn = Callable[[Tensor, Tensor], Tensor]


@torch.no_grad()
def iterative_decode(
    logits_fn: LogitsFn,
    tokens: Tensor,
    masked: Tensor,
    num_steps: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Fill the masked positions of ``tokens`` [B, T] in ``num_steps`` confidence-ordered steps.

    Args:
        logits_fn: ``logits_fn(tokens, masked) -> logits [B, T, V]``; masked positions of ``tokens``
            hold anything (the model sees ``masked``).
        tokens: [B, T] int64 tokens, with known values where ``masked`` is False.
        masked: [B, T] bool, True = to generate (padding must be False).
        num_steps: decoding steps S >= 1; one step is plain parallel prediction.
        temperature: sampling temperature, annealed linearly to 0 over the steps (0 = greedy).
        top_k: optional top-k filter.

    Returns:
        tokens [B, T] with every masked position filled.
    """
    tokens, masked = tokens.clone(), masked.clone()
    total = masked.sum(1)  # [B]
    for step in range(num_steps):
        if not bool(masked.any()):
            break
        logits = logits_fn(tokens, masked).float()
        step_temperature = temperature * (1.0 - step / num_steps)
        sampled = sample_tokens(logits, step_temperature, top_k, generator=generator)
        confidence = torch.gather(logits.log_softmax(-1), -1, sampled[..., None])[..., 0]
        confidence = confidence.masked_fill(~masked, float("inf"))  # known tokens are never re-masked
        progress = torch.tensor((step + 1) / num_steps)
        keep_masked = (total.float() * cosine_schedule(progress)).floor().long()  # [B]
        if step == num_steps - 1:
            keep_masked.zero_()
        rank = confidence.argsort(1).argsort(1)
        still_masked = (rank < keep_masked[:, None]) & masked
        newly = masked & ~still_masked
        tokens = torch.where(newly, sampled, tokens)
        masked = still_masked
    return tokens
