"""Conformer blocks on [B, T, D] (Gulati et al. 2020): macaron FFNs around attention and a conv module.

Deviation from the paper: the conv module normalises with LayerNorm over channels instead of
BatchNorm (as in streaming conformers), so it is causal when asked, independent of the batch, and
padded frames cannot shift its statistics.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.nn.attention import MultiHeadAttention
from speechkit.nn.conv import PaddedConv1d
from speechkit.nn.feedforward import FeedForward
from speechkit.nn.masks import zero_padded

__all__ = ["ConformerBlock", "ConvolutionModule", "FeedForward"]


class ConvolutionModule(nn.Module):
    """Conformer conv module (section 2.2): pointwise conv + GLU, depthwise conv, LayerNorm, SiLU,
    pointwise conv, dropout. No input norm: the enclosing block applies its pre-norm.

    Args:
        dim: model width D.
        kernel_size: depthwise kernel width.
        causal: left-only padding of the depthwise conv.
        dropout: output dropout.

    Shapes:
        x: [B, T, D], padding_mask: [B, T] bool (True = valid) or None -> [B, T, D].

    Example:
        >>> import torch
        >>> ConvolutionModule(8, kernel_size=5, causal=True)(torch.randn(2, 7, 8)).shape
        torch.Size([2, 7, 8])
    """

    def __init__(self, dim: int, kernel_size: int = 15, causal: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.pointwise_in = nn.Linear(dim, 2 * dim)
        self.depthwise = PaddedConv1d(dim, dim, kernel_size, groups=dim, causal=causal)
        self.norm = nn.LayerNorm(dim)
        self.pointwise_out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        x = zero_padded(F.glu(self.pointwise_in(x), dim=-1), padding_mask)
        x = self.depthwise(x.transpose(1, 2)).transpose(1, 2)
        return self.dropout(self.pointwise_out(F.silu(self.norm(x))))


class ConformerBlock(nn.Module):
    """Conformer block: half FFN, self-attention (RoPE), conv module, half FFN, final LayerNorm.

    Each sublayer is pre-normed and residual; the two FFNs contribute with weight 1/2 (macaron,
    Gulati et al. 2020 section 2.4). RoPE replaces the paper's relative positional encoding.

    Args:
        dim: model width D.
        num_heads: attention heads H.
        conv_kernel_size: depthwise kernel of the conv module.
        ff_mult: FFN hidden width as a multiple of D.
        dropout: dropout in FFNs, attention and conv module.
        causal: causal attention and conv (strictly causal: every norm is per frame).
        window_size: local attention window w (None = global).

    Shapes:
        x: [B, T, D], padding_mask: [B, T] bool (True = valid) or None -> [B, T, D].

    Example:
        >>> import torch
        >>> block = ConformerBlock(8, num_heads=2, conv_kernel_size=5)
        >>> block(torch.randn(2, 7, 8), torch.ones(2, 7, dtype=torch.bool)).shape
        torch.Size([2, 7, 8])
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        conv_kernel_size: int = 15,
        ff_mult: float = 4,
        dropout: float = 0.0,
        causal: bool = False,
        window_size: int | None = None,
    ) -> None:
        super().__init__()
        self.ff1_norm = nn.LayerNorm(dim)
        self.ff1 = FeedForward(dim, ff_mult, dropout, activation="silu")
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, num_heads, causal, window_size, rope=True, dropout=dropout)
        self.conv_norm = nn.LayerNorm(dim)
        self.conv = ConvolutionModule(dim, conv_kernel_size, causal, dropout)
        self.ff2_norm = nn.LayerNorm(dim)
        self.ff2 = FeedForward(dim, ff_mult, dropout, activation="silu")
        self.final_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        x = x + 0.5 * self.ff1(self.ff1_norm(x))
        x = x + self.dropout(self.attn(self.attn_norm(x), padding_mask))
        x = x + self.conv(self.conv_norm(x), padding_mask)
        x = x + 0.5 * self.ff2(self.ff2_norm(x))
        return self.final_norm(x)
