"""Conditioning on a global vector (speaker embedding, style): FiLM for convs, adaptive LayerNorm.

Both start as the identity: their projections are zero-initialised, so adding conditioning to a
pretrained or freshly initialised decoder does not disturb it at step 0 (the adaLN-Zero idea of
Peebles & Xie 2023, section 3.2).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class FiLM(nn.Module):
    """Feature-wise linear modulation ``x * (1 + scale(c)) + shift(c)`` (Perez et al. 2018).

    Args:
        cond_dim: width of the conditioning vector.
        channels: channel count C of the modulated features.

    Shapes:
        x: [B, C, T], cond: [B, cond_dim] -> [B, C, T].

    Example:
        >>> import torch
        >>> film = FiLM(cond_dim=3, channels=4)
        >>> x = torch.randn(2, 4, 5)
        >>> torch.equal(film(x, torch.randn(2, 3)), x)  # identity at initialisation
        True
    """

    def __init__(self, cond_dim: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        scale, shift = self.proj(cond).unsqueeze(-1).chunk(2, dim=1)  # each [B, C, 1]
        return x * (1 + scale) + shift


class AdaptiveLayerNorm(nn.Module):
    """LayerNorm over D whose scale and shift are predicted from a global vector.

    ``LN(x) * (1 + scale(c)) + shift(c)`` with a non-affine LayerNorm; at initialisation it equals a
    plain LayerNorm.

    Args:
        dim: model width D.
        cond_dim: width of the conditioning vector.
        eps: variance floor.

    Shapes:
        x: [B, T, D], cond: [B, cond_dim] -> [B, T, D].

    Example:
        >>> import torch
        >>> norm = AdaptiveLayerNorm(dim=8, cond_dim=3)
        >>> norm(torch.randn(2, 5, 8), torch.randn(2, 3)).shape
        torch.Size([2, 5, 8])
    """

    def __init__(self, dim: int, cond_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.proj = nn.Linear(cond_dim, 2 * dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        scale, shift = self.proj(cond).unsqueeze(1).chunk(2, dim=-1)  # each [B, 1, D]
        return F.layer_norm(x, (self.dim,), eps=self.eps) * (1 + scale) + shift
