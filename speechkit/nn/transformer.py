"""Pre-norm transformer blocks and stacks on [B, T, D], with KV-cached incremental decoding.

Attention pieces (RoPE, masks, KV cache) live in :mod:`speechkit.nn.attention` and are re-exported
here. Optional global conditioning (``cond_dim``) swaps every LayerNorm for an
:class:`~speechkit.nn.conditioning.AdaptiveLayerNorm` driven by a vector [B, cond_dim].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from speechkit.errors import ConfigError
from speechkit.nn.attention import (
    CrossAttention,
    KVCache,
    MultiHeadAttention,
    RotaryEmbedding,
    structure_mask,
)
from speechkit.nn.conditioning import AdaptiveLayerNorm
from speechkit.nn.feedforward import FeedForward

__all__ = [
    "CrossAttention",
    "KVCache",
    "MultiHeadAttention",
    "RotaryEmbedding",
    "Transformer",
    "TransformerBlock",
    "structure_mask",
]


def _make_norm(dim: int, cond_dim: int | None) -> nn.Module:
    return nn.LayerNorm(dim) if cond_dim is None else AdaptiveLayerNorm(dim, cond_dim)


def _apply_norm(norm: nn.Module, x: Tensor, cond: Tensor | None) -> Tensor:
    if isinstance(norm, AdaptiveLayerNorm):
        if cond is None:
            raise ConfigError("this block was built with cond_dim and needs a cond vector [B, cond_dim]")
        return norm(x, cond)
    return norm(x)


class TransformerBlock(nn.Module):
    """Pre-norm block: self-attention, optional cross-attention, GELU MLP, each with a residual.

    Args:
        dim: model width D.
        num_heads: attention heads H.
        mlp_ratio: MLP hidden width as a multiple of D.
        causal: causal self-attention (enables ``step``).
        window_size: local self-attention window w (None = global).
        cross_attention: add a cross-attention sublayer over a context sequence.
        context_dim: context width (default D).
        dropout: dropout on attention weights and sublayer outputs.
        cond_dim: if set, norms are adaptive on a global vector [B, cond_dim].
        rope: rotary positions in self-attention.

    Shapes:
        x: [B, T, D] -> [B, T, D]; padding_mask [B, T], context [B, S, Dc], context_mask [B, S].

    Example:
        >>> import torch
        >>> block = TransformerBlock(8, num_heads=2, cross_attention=True, context_dim=4)
        >>> block(torch.randn(2, 5, 8), context=torch.randn(2, 3, 4)).shape
        torch.Size([2, 5, 8])
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        causal: bool = False,
        window_size: int | None = None,
        cross_attention: bool = False,
        context_dim: int | None = None,
        dropout: float = 0.0,
        cond_dim: int | None = None,
        rope: bool = True,
    ) -> None:
        super().__init__()
        self.attn_norm = _make_norm(dim, cond_dim)
        self.attn = MultiHeadAttention(dim, num_heads, causal, window_size, rope, dropout)
        self.cross_norm = _make_norm(dim, cond_dim) if cross_attention else None
        self.cross = CrossAttention(dim, num_heads, context_dim, dropout) if cross_attention else None
        self.mlp_norm = _make_norm(dim, cond_dim)
        self.mlp = FeedForward(dim, mlp_ratio, dropout, activation="gelu")
        self.dropout = nn.Dropout(dropout)

    def _cross_and_mlp(
        self, x: Tensor, context: Tensor | None, context_mask: Tensor | None, cond: Tensor | None
    ) -> Tensor:
        if self.cross is not None:
            if context is None:
                raise ConfigError("this block has cross-attention and needs a context [B, S, Dc]")
            x = x + self.dropout(self.cross(_apply_norm(self.cross_norm, x, cond), context, context_mask))
        return x + self.mlp(_apply_norm(self.mlp_norm, x, cond))

    def forward(
        self,
        x: Tensor,
        padding_mask: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        cond: Tensor | None = None,
    ) -> Tensor:
        x = x + self.dropout(self.attn(_apply_norm(self.attn_norm, x, cond), padding_mask))
        return self._cross_and_mlp(x, context, context_mask, cond)

    def step(
        self,
        x: Tensor,
        cache: KVCache,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        cond: Tensor | None = None,
    ) -> tuple[Tensor, KVCache]:
        """Process n new tokens [B, n, D] against the cache; returns ([B, n, D], new cache)."""
        y, cache = self.attn.step(_apply_norm(self.attn_norm, x, cond), cache)
        x = x + self.dropout(y)
        return self._cross_and_mlp(x, context, context_mask, cond), cache


class Transformer(nn.Module):
    """A stack of :class:`TransformerBlock` with a final norm; causal stacks decode incrementally.

    Args:
        dim: model width D.
        depth: number of blocks.
        num_heads: attention heads H.
        mlp_ratio: MLP hidden width as a multiple of D.
        causal: causal self-attention (enables ``step`` / ``initial_cache``).
        window_size: local self-attention window w (None = global); also bounds the KV cache.
        cross_attention: every block cross-attends to a context.
        context_dim: context width (default D).
        dropout: dropout on attention weights and sublayer outputs.
        cond_dim: if set, every norm is adaptive on a global vector [B, cond_dim].
        rope: rotary positions in self-attention.

    Shapes:
        x: [B, T, D] -> [B, T, D]; padding_mask [B, T] (True = valid), context [B, S, Dc],
        context_mask [B, S], cond [B, cond_dim].

    Example:
        >>> import torch
        >>> lm = Transformer(8, depth=2, num_heads=2, causal=True)
        >>> x = torch.randn(1, 5, 8)
        >>> y, cache = lm.step(x[:, :3], lm.initial_cache(1))  # prefill 3 tokens
        >>> y2, cache = lm.step(x[:, 3:4], cache)  # then one at a time
        >>> torch.allclose(y2, lm(x)[:, 3:4], atol=1e-5)
        True
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        causal: bool = False,
        window_size: int | None = None,
        cross_attention: bool = False,
        context_dim: int | None = None,
        dropout: float = 0.0,
        cond_dim: int | None = None,
        rope: bool = True,
    ) -> None:
        super().__init__()
        self.causal = causal
        self.blocks = nn.ModuleList(
            TransformerBlock(
                dim,
                num_heads,
                mlp_ratio,
                causal,
                window_size,
                cross_attention,
                context_dim,
                dropout,
                cond_dim,
                rope,
            )
            for _ in range(depth)
        )
        self.norm = _make_norm(dim, cond_dim)

    def forward(
        self,
        x: Tensor,
        padding_mask: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        cond: Tensor | None = None,
    ) -> Tensor:
        for block in self.blocks:
            x = block(x, padding_mask, context, context_mask, cond)
        return _apply_norm(self.norm, x, cond)

    def initial_cache(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> list[KVCache]:
        """One empty :class:`KVCache` per block."""
        if not self.causal:
            raise ConfigError("initial_cache() needs a causal Transformer (built with causal=True)")
        return [block.attn.initial_cache(batch_size, device, dtype) for block in self.blocks]

    def step(
        self,
        x: Tensor,
        cache: list[KVCache],
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        cond: Tensor | None = None,
    ) -> tuple[Tensor, list[KVCache]]:
        """Decode n new tokens [B, n, D] (n = 1, or a prompt prefill); returns ([B, n, D], new cache).

        Equals the matching slice of the full causal ``forward`` (no padding mask in step mode).
        """
        new_cache = []
        for block, layer_cache in zip(self.blocks, cache, strict=True):
            x, layer_cache = block.step(x, layer_cache, context, context_mask, cond)
            new_cache.append(layer_cache)
        return _apply_norm(self.norm, x, cond), new_cache
