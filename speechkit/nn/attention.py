"""Attention on [B, T, D]: rotary positions, self-attention (causal / local window / padding masks),
cross-attention, and an explicit KV cache for incremental causal decoding.

All masks are built from tensor ops on position indices (no data-dependent Python control flow), so
the modules trace to ONNX with a dynamic time axis. Boolean masks follow
``scaled_dot_product_attention``: True = may attend.

Window attention is implemented with a [T, T] mask, so it costs the same O(T^2) time and memory as
full attention; it buys locality (and a bounded KV cache when decoding), not speed. A blocked
O(T * w) kernel can replace it later without changing the API.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.errors import ConfigError


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al. 2021, RoFormer section 3.4), half-split layout.

    Rotates pairs ``(x[i], x[i + Dh/2])`` by ``position * base^(-2i/Dh)``; dot products of rotated
    queries and keys then depend only on relative position. Angles are computed on the fly, so
    there is no maximum length.

    Args:
        head_dim: per-head width Dh (even).
        base: frequency base.

    Shapes:
        x: [B, H, T, Dh], positions: [T] -> [B, H, T, Dh].

    Example:
        >>> import torch
        >>> rope = RotaryEmbedding(4)
        >>> q = torch.randn(1, 2, 3, 4)
        >>> torch.allclose(rope(q, offset=5)[:, :, 1:2], rope(q[:, :, 1:2], offset=6))
        True
    """

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ConfigError(f"rotary head_dim must be even, got {head_dim}")
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: Tensor, offset: int | Tensor = 0) -> Tensor:
        """Rotate x at positions ``offset, offset + 1, ...`` (offset: int or 0-dim int tensor)."""
        positions = torch.arange(x.shape[-2], device=x.device) + offset
        return self.rotate(x, positions)

    def rotate(self, x: Tensor, positions: Tensor) -> Tensor:
        """Rotate x [..., T, Dh] at explicit absolute positions [T]."""
        angles = positions.to(torch.float32)[:, None] * self.inv_freq[None, :]  # [T, Dh/2]
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class KVCache(NamedTuple):
    """Keys/values of one attention layer seen so far, for incremental causal decoding.

    A NamedTuple (a plain tensor tuple for ``torch.jit.trace`` / ``torch.export``), so a step graph
    exports with the cache as explicit inputs and outputs.

    Fields:
        k: rotated keys [B, H, S, Dh] (S <= window_size when the layer has a window).
        v: values [B, H, S, Dh].
        offset: 0-dim int64 tensor, absolute position of the next token (tokens seen so far; differs
            from S once a window truncates the cache).

    Example:
        >>> cache = KVCache.empty(batch_size=2, num_heads=4, head_dim=8)
        >>> tuple(cache.k.shape), int(cache.offset)
        ((2, 4, 0, 8), 0)
    """

    k: Tensor
    v: Tensor
    offset: Tensor

    @classmethod
    def empty(
        cls,
        batch_size: int,
        num_heads: int,
        head_dim: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> KVCache:
        """A cache with no tokens (S = 0, offset = 0)."""
        kv = torch.zeros(batch_size, num_heads, 0, head_dim, device=device, dtype=dtype)
        return cls(kv, kv.clone(), torch.zeros((), dtype=torch.long, device=device))


def structure_mask(q_pos: Tensor, k_pos: Tensor, causal: bool, window_size: int | None) -> Tensor | None:
    """Boolean [Tq, Tk] mask from causality and a local window (None if both are off).

    Args:
        q_pos: absolute query positions [Tq].
        k_pos: absolute key positions [Tk].
        causal: keys must not be after the query.
        window_size: w; keys within w positions (causal: ``q - w <= k <= q``; else ``|q - k| <= w``).

    Example:
        >>> import torch
        >>> structure_mask(torch.arange(3), torch.arange(3), causal=True, window_size=1).int().tolist()
        [[1, 0, 0], [1, 1, 0], [0, 1, 1]]
    """
    delta = q_pos[:, None] - k_pos[None, :]
    mask = delta >= 0 if causal else None
    if window_size is not None:
        local = delta <= window_size if causal else delta.abs() <= window_size
        mask = local if mask is None else mask & local
    return mask


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention with optional RoPE, causality, local window and key padding mask.

    Args:
        dim: model width D (divisible by num_heads).
        num_heads: number of heads H.
        causal: query t sees keys <= t (and ``step`` decodes with a KV cache).
        window_size: w; restrict each query to keys within w positions (see :func:`structure_mask`).
        rope: rotate queries and keys with :class:`RotaryEmbedding`.
        dropout: attention-weight dropout in training.

    Shapes:
        x: [B, T, D], padding_mask: [B, T] bool (True = valid) -> [B, T, D].
        Outputs at padded positions are finite but meaningless.

    Example:
        >>> import torch
        >>> attn = MultiHeadAttention(8, num_heads=2, causal=True, window_size=4)
        >>> x = torch.randn(1, 6, 8)
        >>> full = attn(x)
        >>> y1, cache = attn.step(x[:, :4], attn.initial_cache(1))
        >>> y2, cache = attn.step(x[:, 4:], cache)
        >>> torch.allclose(torch.cat([y1, y2], 1), full, atol=1e-6), cache.k.shape[2], int(cache.offset)
        (True, 4, 6)
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        causal: bool = False,
        window_size: int | None = None,
        rope: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        if window_size is not None and window_size < 1:
            raise ConfigError(f"window_size must be >= 1 or None, got {window_size}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.causal = causal
        self.window_size = window_size
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.rope = RotaryEmbedding(self.head_dim) if rope else None

    def _project(self, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        qkv = self.qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim))  # [B, T, 3, H, Dh]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, T, Dh]
        if self.rope is not None:
            q, k = self.rope.rotate(q, positions), self.rope.rotate(k, positions)
        return q, k, v

    def _attend(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool = False
    ) -> Tensor:
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=is_causal)
        return self.out(y.transpose(1, 2).flatten(2))  # [B, T, D]

    def forward(self, x: Tensor, padding_mask: Tensor | None = None, attn_mask: Tensor | None = None) -> Tensor:
        """``attn_mask``: optional extra bool mask [T, T] or [B, T, T] (True = may attend), combined
        with causality, the window and padding (e.g. a chunk mask for streaming encoders)."""
        positions = torch.arange(x.shape[1], device=x.device)
        q, k, v = self._project(x, positions)
        if padding_mask is None and self.window_size is None and attn_mask is None:
            return self._attend(q, k, v, None, is_causal=self.causal)
        mask = structure_mask(positions, positions, self.causal, self.window_size)
        if attn_mask is not None:
            extra = attn_mask if attn_mask.dim() == 2 else attn_mask[:, None]  # [T, T] or [B, 1, T, T]
            mask = extra if mask is None else mask & extra
        if padding_mask is not None:
            keys_valid = padding_mask[:, None, None, :]  # [B, 1, 1, T]
            mask = keys_valid if mask is None else mask & keys_valid
        # Every query may attend itself, so a padded query whose window holds only padding gets
        # a finite output instead of NaN (which would leak into later layers as 0 * NaN).
        mask = mask | (positions[:, None] == positions[None, :])
        return self._attend(q, k, v, mask)

    def initial_cache(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> KVCache:
        """An empty :class:`KVCache` for this layer."""
        weight = self.qkv.weight
        return KVCache.empty(
            batch_size, self.num_heads, self.head_dim, device or weight.device, dtype or weight.dtype
        )

    def step(self, x: Tensor, cache: KVCache) -> tuple[Tensor, KVCache]:
        """Attend n new tokens [B, n, D] to the cache and themselves; returns ([B, n, D], new cache).

        With a window, the returned cache keeps only the last ``window_size`` keys (all a future
        query can see), so memory stays bounded.
        """
        if not self.causal:
            raise ConfigError("step() needs a causal MultiHeadAttention (built with causal=True)")
        q_pos = torch.arange(x.shape[1], device=x.device) + cache.offset
        q, k, v = self._project(x, q_pos)
        k = torch.cat([cache.k, k], dim=2)
        v = torch.cat([cache.v, v], dim=2)
        # Keys are the last S positions ending at the newest token.
        k_pos = torch.arange(k.shape[2], device=x.device) + (cache.offset + x.shape[1] - k.shape[2])
        y = self._attend(q, k, v, structure_mask(q_pos, k_pos, True, self.window_size))
        if self.window_size is not None:
            k, v = k[:, :, -self.window_size :], v[:, :, -self.window_size :]
        return y, KVCache(k, v, cache.offset + x.shape[1])


class CrossAttention(nn.Module):
    """Multi-head attention from queries [B, T, D] to a context [B, S, Dc] (no positions added).

    Args:
        dim: query/model width D (divisible by num_heads).
        num_heads: number of heads H.
        context_dim: context width Dc (default D).
        dropout: attention-weight dropout in training.

    Shapes:
        x: [B, T, D], context: [B, S, Dc], context_mask: [B, S] bool (True = valid) -> [B, T, D].
        A batch item whose context is entirely padding attends to all of it (finite output).

    Example:
        >>> import torch
        >>> xattn = CrossAttention(8, num_heads=2, context_dim=6)
        >>> xattn(torch.randn(2, 5, 8), torch.randn(2, 3, 6), torch.ones(2, 3, dtype=torch.bool)).shape
        torch.Size([2, 5, 8])
    """

    def __init__(
        self, dim: int, num_heads: int, context_dim: int | None = None, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.dropout = dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim or dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor, context_mask: Tensor | None = None) -> Tensor:
        q = self.q(x).unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)  # [B, H, T, Dh]
        kv = self.kv(context).unflatten(-1, (2, self.num_heads, self.head_dim))  # [B, S, 2, H, Dh]
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, S, Dh]
        mask = None
        if context_mask is not None:
            mask = context_mask | ~context_mask.any(dim=-1, keepdim=True)
            mask = mask[:, None, None, :]  # [B, 1, 1, S]
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out(y.transpose(1, 2).flatten(2))
