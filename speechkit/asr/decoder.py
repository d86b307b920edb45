"""The attention decoder of the ASR models, with DeCRED's intermediate classifiers.

A causal transformer over tokens that cross-attends to the encoder output. Both sides get absolute
sinusoidal positions with learned scales (self-attention also has RoPE): cross-attention between two
sequences learns a monotonic alignment more easily with absolute positions on both.

DeCRED (Polok et al. 2024, "Improving ASR with Decoder-Centric Regularisation in Encoder-Decoder
Models", section 2): auxiliary classifiers read the hidden states of intermediate decoder layers
(1-based indices in ``intermediate_layers``); each has its own LayerNorm and shares the final output
projection, so all heads speak in one logit space. Their losses are added in training and their
next-token distributions can be combined with the final one at decoding
(:func:`speechkit.asr.decred.combine_layer_log_probs`).

Shapes: tokens [B, L]; memory (encoder output) [B, S, D]; each head's log-probs [B, L, V].

Example:
    >>> dec = AttentionDecoder(16, depth=2, num_heads=2, vocab_size=7, intermediate_layers=(1,)).eval()
    >>> memory, tokens = torch.randn(1, 5, 16), torch.tensor([[2, 4, 5]])
    >>> heads = dec(tokens, torch.ones(1, 3, dtype=torch.bool), memory, torch.ones(1, 5, dtype=torch.bool))
    >>> len(heads), tuple(heads[-1].shape)
    (2, (1, 3, 7))
    >>> state = dec.initial_state(1)
    >>> for t in range(3):
    ...     step_heads, state = dec.step(tokens[:, t], state, memory, None)
    >>> torch.allclose(step_heads[-1], heads[-1][:, 2], atol=1e-5)
    True
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from speechkit.errors import ConfigError
from speechkit.nn.attention import KVCache
from speechkit.nn.positional import sinusoidal_positions
from speechkit.nn.transformer import Transformer


class DecoderState(NamedTuple):
    """Incremental decoding state: one KV cache per layer and the position of the next token."""

    caches: list[KVCache]
    offset: int

    def select(self, index: Tensor) -> DecoderState:
        """Reorder / duplicate the batch (beam search) by ``index`` [N']."""
        return DecoderState(
            [KVCache(c.k.index_select(0, index), c.v.index_select(0, index), c.offset) for c in self.caches],
            self.offset,
        )


class AttentionDecoder(nn.Module):
    """Token embedding, causal cross-attending transformer, final and intermediate classifiers.

    Args:
        dim: width D; depth: layers; num_heads: heads; mlp_ratio: MLP width multiple.
        vocab_size: V (embedding rows and output classes).
        intermediate_layers: 1-based layer indices with an auxiliary classifier (DeCRED); () = none.
        dropout: in every sublayer.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        vocab_size: int,
        intermediate_layers: tuple[int, ...] = (),
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        bad = [i for i in intermediate_layers if not 1 <= i < depth]
        if bad:
            raise ConfigError(f"intermediate decoder layers must lie in 1..{depth - 1}, got {bad}")
        self.intermediate_layers = tuple(sorted(set(intermediate_layers)))
        self.embedding = nn.Embedding(vocab_size, dim)
        self.position_scale = nn.Parameter(torch.ones(2))  # memory, tokens
        self.transformer = Transformer(
            dim, depth, num_heads, mlp_ratio, causal=True, cross_attention=True, dropout=dropout
        )
        self.intermediate_norms = nn.ModuleList(nn.LayerNorm(dim) for _ in self.intermediate_layers)
        self.output = nn.Linear(dim, vocab_size)

    @property
    def num_heads_out(self) -> int:
        """Classifiers: intermediate ones then the final one."""
        return len(self.intermediate_layers) + 1

    def add_memory_positions(self, memory: Tensor) -> Tensor:
        positions = torch.arange(memory.shape[1], device=memory.device)
        return memory + self.position_scale[0] * sinusoidal_positions(positions, memory.shape[2]).to(memory.dtype)

    def _embed(self, tokens: Tensor, offset: int) -> Tensor:
        x = self.embedding(tokens)
        positions = torch.arange(offset, offset + tokens.shape[1], device=tokens.device)
        return x + self.position_scale[1] * sinusoidal_positions(positions, x.shape[2]).to(x.dtype)

    def _heads(self, hidden: list[Tensor], final: Tensor) -> list[Tensor]:
        outs = [self.output(norm(h)) for norm, h in zip(self.intermediate_norms, hidden)]
        return [logits.float().log_softmax(-1) for logits in [*outs, self.output(final)]]

    def forward(
        self, tokens: Tensor, token_valid: Tensor, memory: Tensor, memory_valid: Tensor | None
    ) -> list[Tensor]:
        """Teacher-forced log-probs of every head, intermediate first: list of [B, L, V]."""
        memory = self.add_memory_positions(memory)
        x, hidden = self._embed(tokens, 0), []
        for index, block in enumerate(self.transformer.blocks, start=1):
            x = block(x, token_valid, memory, memory_valid)
            if index in self.intermediate_layers:
                hidden.append(x)
        return self._heads(hidden, self.transformer.norm(x))

    def initial_state(self, batch_size: int) -> DecoderState:
        return DecoderState(self.transformer.initial_cache(batch_size), 0)

    def step(
        self, tokens: Tensor, state: DecoderState, memory: Tensor, memory_valid: Tensor | None
    ) -> tuple[list[Tensor], DecoderState]:
        """One token per item [N] -> each head's next-token log-probs [N, V] and the new state.

        ``memory`` [N, S, D] is the raw encoder output (positions are added here).
        """
        memory = self.add_memory_positions(memory)
        x, hidden, caches = self._embed(tokens[:, None], state.offset), [], []
        for index, (block, cache) in enumerate(zip(self.transformer.blocks, state.caches), start=1):
            x, cache = block.step(x, cache, memory, memory_valid)
            caches.append(cache)
            if index in self.intermediate_layers:
                hidden.append(x[:, 0])
        heads = self._heads(hidden, self.transformer.norm(x[:, 0]))
        return heads, DecoderState(caches, state.offset + 1)
