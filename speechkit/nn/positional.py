"""Absolute sinusoidal positions (Vaswani et al. 2017, section 3.5).

Rotary embeddings give self-attention relative positions; cross-attention between two sequences
(an autoregressive decoder reading its text) needs absolute ones on both sides to learn a
monotonic alignment, as Transformer-TTS adds them with a learned scale.

Example:
    >>> pe = sinusoidal_positions(torch.arange(4), 6)
    >>> pe.shape, float(pe[0, 0]), float(pe[0, 3])
    (torch.Size([4, 6]), 0.0, 1.0)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sinusoidal_positions(positions: Tensor, dim: int, base: float = 10000.0) -> Tensor:
    """[T] integer positions -> [T, dim] (sin on the first half, cos on the second)."""
    half = dim // 2
    freqs = torch.exp(-math.log(base) * torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    angles = positions.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)
