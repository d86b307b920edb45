"""Padding masks: [B, T] booleans with True = valid frame (the convention of every speechkit block)."""

from __future__ import annotations

import torch
from torch import Tensor


def lengths_to_padding_mask(lengths: Tensor, max_length: int | None = None) -> Tensor:
    """Boolean mask [B, T] that is True for the first ``lengths[b]`` frames of each item.

    Args:
        lengths: valid lengths [B] (integer tensor).
        max_length: T (default ``lengths.max()``).

    Returns:
        [B, T] bool, True = valid.

    Example:
        >>> lengths_to_padding_mask(torch.tensor([1, 3])).int().tolist()
        [[1, 0, 0], [1, 1, 1]]
    """
    if max_length is None:
        max_length = int(lengths.max())
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]


def zero_padded(x: Tensor, padding_mask: Tensor | None) -> Tensor:
    """Zero the padded frames of [B, T, D] before a conv over time, so padding cannot leak into
    valid frames.

    Args:
        x: [B, T, D].
        padding_mask: [B, T] bool (True = valid) or None (returns x).

    Example:
        >>> zero_padded(torch.ones(1, 3, 2), torch.tensor([[True, True, False]]))[0, :, 0].tolist()
        [1.0, 1.0, 0.0]
    """
    return x if padding_mask is None else x * padding_mask.unsqueeze(-1).to(x.dtype)


def chunk_attention_mask(
    num_frames: int, chunk_size: int, num_left_chunks: int | None = None, device: torch.device | None = None
) -> Tensor:
    """Block mask [T, T] for chunk-streaming attention (True = query t may attend key s).

    Frame t lies in chunk ``c = t // chunk_size`` and sees every frame of chunks
    ``c - num_left_chunks .. c``: at most ``chunk_size - 1`` frames of right context (the rest of its
    own chunk) and ``num_left_chunks * chunk_size`` frames of left context (None = all the past), as
    in dynamic chunk training (Yao et al. 2021, WeNet U2, section 2.3).

    Example:
        >>> chunk_attention_mask(5, chunk_size=2, num_left_chunks=1).int().tolist()
        [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 0], [0, 0, 1, 1, 1]]
    """
    chunk = torch.arange(num_frames, device=device) // max(1, chunk_size)
    delta = chunk[:, None] - chunk[None, :]  # query chunk - key chunk
    mask = delta >= 0
    if num_left_chunks is not None:
        mask = mask & (delta <= num_left_chunks)
    return mask
