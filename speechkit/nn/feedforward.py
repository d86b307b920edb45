"""Position-wise feed-forward network shared by transformer, conformer and E-Branchformer blocks."""

from __future__ import annotations

from torch import Tensor, nn

from speechkit.errors import ConfigError


class FeedForward(nn.Module):
    """Linear, activation, dropout, linear, dropout (no norm: the enclosing block owns pre-norms).

    Args:
        dim: model width D.
        mult: hidden width as a multiple of D.
        dropout: dropout after the activation and after the output projection.
        activation: ``"gelu"`` (transformer) or ``"silu"`` (Swish, the conformer FFN, Gulati et al.
            2020 section 2.3).

    Shapes:
        x: [B, T, D] -> [B, T, D].

    Example:
        >>> import torch
        >>> FeedForward(8, mult=2)(torch.randn(2, 5, 8)).shape
        torch.Size([2, 5, 8])
    """

    def __init__(self, dim: int, mult: float = 4.0, dropout: float = 0.0, activation: str = "gelu") -> None:
        super().__init__()
        if activation not in ("gelu", "silu"):
            raise ConfigError(f"FeedForward activation must be 'gelu' or 'silu', got {activation!r}")
        hidden = int(round(mult * dim))
        self.net = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU() if activation == "gelu" else nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
