"""Pointwise activations for conv blocks, chosen by name so configs stay plain JSON."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from speechkit.errors import ConfigError

ACTIVATIONS = ("elu", "silu", "gelu", "snake")


class Snake1d(nn.Module):
    """Snake activation ``x + sin^2(alpha x) / alpha`` with a learned alpha per channel.

    Periodic inductive bias for waveform decoders (Ziyin et al. 2020; used by BigVGAN and DAC,
    Kumar et al. 2023 section 3.1). Pointwise in time, so it keeps causality and streaming.

    Args:
        channels: number of channels C (one alpha each).

    Shapes:
        x: [B, C, T] -> [B, C, T].

    Example:
        >>> act = Snake1d(4)
        >>> act(torch.zeros(2, 4, 5)).abs().max().item()
        0.0
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        # The 1e-9 keeps 1/alpha finite if training drives alpha to zero.
        return x + torch.sin(self.alpha * x).pow(2) / (self.alpha + 1e-9)


def make_activation(name: str, channels: int) -> nn.Module:
    """Build a pointwise activation for [B, C, T] tensors by name.

    Args:
        name: one of ``"elu"``, ``"silu"``, ``"gelu"``, ``"snake"``.
        channels: channel count C (only Snake uses it).

    Returns:
        The activation module.

    Example:
        >>> make_activation("elu", 8)
        ELU(alpha=1.0)
    """
    if name == "elu":
        return nn.ELU()
    if name == "silu":
        return nn.SiLU()
    if name == "gelu":
        return nn.GELU()
    if name == "snake":
        return Snake1d(channels)
    raise ConfigError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")
