"""E-Branchformer blocks on [B, T, D] (Kim et al. 2022): parallel global attention and local cgMLP
branches merged by a depthwise conv, between macaron FFNs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.errors import ConfigError
from speechkit.nn.attention import MultiHeadAttention
from speechkit.nn.conv import PaddedConv1d
from speechkit.nn.feedforward import FeedForward
from speechkit.nn.masks import zero_padded


class ConvolutionalGatingMLP(nn.Module):
    """cgMLP (Sakuma et al. 2021; Branchformer, Peng et al. 2022 section 3.2).

    Project up to ``hidden_dim`` with GELU, split in halves, gate one half with a depthwise conv over
    time of the LayerNormed other half (convolutional spatial gating unit), project down.

    Args:
        dim: model width D.
        hidden_dim: up-projection width (even).
        kernel_size: depthwise gating conv width.
        dropout: dropout before the down-projection.
        causal: left-only padding of the gating conv.

    Shapes:
        x: [B, T, D], padding_mask: [B, T] bool (True = valid) or None -> [B, T, D].

    Example:
        >>> ConvolutionalGatingMLP(8, hidden_dim=16, kernel_size=5)(torch.randn(2, 7, 8)).shape
        torch.Size([2, 7, 8])
    """

    def __init__(
        self, dim: int, hidden_dim: int, kernel_size: int = 31, dropout: float = 0.0, causal: bool = False
    ) -> None:
        super().__init__()
        if hidden_dim % 2:
            raise ConfigError(f"cgMLP hidden_dim must be even (it is split in halves), got {hidden_dim}")
        half = hidden_dim // 2
        self.proj_in = nn.Linear(dim, hidden_dim)
        self.gate_norm = nn.LayerNorm(half)
        self.gate_conv = PaddedConv1d(half, half, kernel_size, groups=half, causal=causal)
        # Gate starts near 1 (weights ~0, bias 1) so the unit begins close to a plain MLP, as in the
        # ESPnet reference implementation of the CSGU.
        nn.init.normal_(self.gate_conv.conv.weight, std=1e-6)
        nn.init.ones_(self.gate_conv.conv.bias)
        self.dropout = nn.Dropout(dropout)
        self.proj_out = nn.Linear(half, dim)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        x_r, x_g = F.gelu(self.proj_in(x)).chunk(2, dim=-1)  # each [B, T, hidden/2]
        x_g = zero_padded(self.gate_norm(x_g), padding_mask)
        x_g = self.gate_conv(x_g.transpose(1, 2)).transpose(1, 2)
        return self.proj_out(self.dropout(x_r * x_g))


class EBranchformerBlock(nn.Module):
    """E-Branchformer block (Kim et al. 2022, section 3).

    ``x += FFN/2``; global branch = MHSA(LN(x)), local branch = cgMLP(LN(x)); merge = concat,
    plus a depthwise conv of the concat (section 3.1), then a linear back to D, added to x;
    ``x += FFN/2``; final LayerNorm. Attention uses RoPE.

    Args:
        dim: model width D.
        num_heads: attention heads H.
        cgmlp_hidden_dim: cgMLP up-projection width (even).
        kernel_size: cgMLP gating conv width.
        merge_kernel_size: depthwise merge conv width.
        ff_mult: FFN hidden width as a multiple of D.
        dropout: dropout in all sublayers.
        causal: causal attention and convs.
        window_size: local attention window w (None = global).
        causal_convs: left-only convs with full (or caller-masked) attention, for chunk-streaming
            encoders whose attention is bounded by an ``attn_mask`` (default: follows ``causal``).

    Shapes:
        x: [B, T, D], padding_mask: [B, T] bool (True = valid) or None, attn_mask: bool [T, T] or
        [B, T, T] (True = may attend) or None -> [B, T, D].

    Example:
        >>> block = EBranchformerBlock(8, num_heads=2, cgmlp_hidden_dim=16, kernel_size=5)
        >>> block(torch.randn(2, 7, 8)).shape
        torch.Size([2, 7, 8])
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        cgmlp_hidden_dim: int,
        kernel_size: int = 31,
        merge_kernel_size: int = 3,
        ff_mult: float = 4,
        dropout: float = 0.0,
        causal: bool = False,
        window_size: int | None = None,
        causal_convs: bool | None = None,
    ) -> None:
        super().__init__()
        causal_convs = causal if causal_convs is None else causal_convs
        self.ff1_norm = nn.LayerNorm(dim)
        self.ff1 = FeedForward(dim, ff_mult, dropout, activation="silu")
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, num_heads, causal, window_size, rope=True, dropout=dropout)
        self.cgmlp_norm = nn.LayerNorm(dim)
        self.cgmlp = ConvolutionalGatingMLP(dim, cgmlp_hidden_dim, kernel_size, dropout, causal_convs)
        self.merge_conv = PaddedConv1d(2 * dim, 2 * dim, merge_kernel_size, groups=2 * dim, causal=causal_convs)
        self.merge_proj = nn.Linear(2 * dim, dim)
        self.ff2_norm = nn.LayerNorm(dim)
        self.ff2 = FeedForward(dim, ff_mult, dropout, activation="silu")
        self.final_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None, attn_mask: Tensor | None = None) -> Tensor:
        x = x + 0.5 * self.ff1(self.ff1_norm(x))
        global_branch = self.dropout(self.attn(self.attn_norm(x), padding_mask, attn_mask))
        local_branch = self.dropout(self.cgmlp(self.cgmlp_norm(x), padding_mask))
        merged = torch.cat([global_branch, local_branch], dim=-1)  # [B, T, 2D]
        conv_in = zero_padded(merged, padding_mask).transpose(1, 2)  # [B, 2D, T]
        merged = merged + self.merge_conv(conv_in).transpose(1, 2)
        x = x + self.dropout(self.merge_proj(merged))
        x = x + 0.5 * self.ff2(self.ff2_norm(x))
        return self.final_norm(x)
