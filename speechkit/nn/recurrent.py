"""Recurrent context modelling for conv codecs."""

from __future__ import annotations

from torch import Tensor, nn


class BLSTMContext(nn.Module):
    """Bidirectional LSTM over time, projected back to C and added residually, on [B, C, T].

    Single-Codec (Li et al. 2024, section 2.2) puts BLSTMs between the conv stacks of its encoder
    and decoder for sequence-level context; the residual keeps the conv path intact. The layout is
    [B, C, T] because the block sits between conv stacks. Not causal (the backward direction sees
    the future), and padded frames at the end influence valid frames through the backward direction,
    so batch equal-length crops.

    Args:
        dim: channel count C.
        num_layers: stacked BLSTM layers.
        hidden_size: hidden size per direction (default C).

    Shapes:
        x: [B, C, T] -> [B, C, T].

    Example:
        >>> import torch
        >>> BLSTMContext(8, hidden_size=4)(torch.randn(2, 8, 5)).shape
        torch.Size([2, 8, 5])
    """

    def __init__(self, dim: int, num_layers: int = 1, hidden_size: int | None = None) -> None:
        super().__init__()
        hidden = hidden_size or dim
        self.lstm = nn.LSTM(dim, hidden, num_layers, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        y, _ = self.lstm(x.transpose(1, 2))  # [B, T, 2 * hidden]
        return x + self.proj(y).transpose(1, 2)
