"""The ASR encoder: a stack of E-Branchformer blocks with optional chunk-streaming attention.

With ``causal_convs`` the blocks' convolutions look only left, so in chunk mode (attention limited by
:func:`~speechkit.nn.masks.chunk_attention_mask`) an output frame depends on nothing after the end of
its own chunk: the same frames computed on a prefix of the input equal those of the whole input.

Example:
    >>> enc = EBranchformerEncoder(16, depth=2, num_heads=2, cgmlp_mult=2, kernel_size=5, causal_convs=True).eval()
    >>> x, lengths = torch.randn(1, 12, 16), torch.tensor([12])
    >>> full = enc(x, lengths, chunk_size=4)
    >>> torch.allclose(enc(x[:, :8], torch.tensor([8]), chunk_size=4), full[:, :8], atol=1e-5)
    True
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from speechkit.nn.ebranchformer import EBranchformerBlock
from speechkit.nn.masks import chunk_attention_mask, lengths_to_padding_mask


class EBranchformerEncoder(nn.Module):
    """E-Branchformer stack on [B, T, D] with padding and chunk masks.

    Args:
        dim: width D; depth: blocks; num_heads: attention heads.
        cgmlp_mult: cgMLP hidden width as a multiple of D; kernel_size: its gating conv width.
        ff_mult: macaron FFN width as a multiple of D; dropout: in every sublayer.
        causal_convs: left-only convs (needed for exact chunk streaming).

    Shapes:
        x [B, T, D], lengths [B] -> [B, T, D]. ``chunk_size`` (frames) and ``num_left_chunks`` bound
        the attention (None = full context).
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        cgmlp_mult: float = 4.0,
        kernel_size: int = 31,
        ff_mult: float = 4.0,
        dropout: float = 0.1,
        causal_convs: bool = False,
    ) -> None:
        super().__init__()
        hidden = 2 * int(round(cgmlp_mult * dim / 2))
        self.blocks = nn.ModuleList(
            EBranchformerBlock(
                dim, num_heads, hidden, kernel_size, ff_mult=ff_mult, dropout=dropout, causal_convs=causal_convs
            )
            for _ in range(depth)
        )

    def forward(
        self,
        x: Tensor,
        lengths: Tensor,
        chunk_size: int | None = None,
        num_left_chunks: int | None = None,
    ) -> Tensor:
        padding_mask = lengths_to_padding_mask(lengths, x.shape[1])
        attn_mask = None
        if chunk_size is not None:
            attn_mask = chunk_attention_mask(x.shape[1], chunk_size, num_left_chunks, x.device)
        for block in self.blocks:
            x = block(x, padding_mask, attn_mask)
        return x * padding_mask[..., None].to(x.dtype)


def sample_training_chunk(
    max_frames: int, max_chunk: int, full_context_prob: float, generator: torch.Generator | None = None
) -> tuple[int | None, int | None]:
    """Dynamic chunk training (WeNet U2, section 2.3): full context with ``full_context_prob``, else a
    chunk of 1..``max_chunk`` frames and a random number of left chunks (None = all).

    Example:
        >>> sample_training_chunk(100, 16, full_context_prob=1.0)
        (None, None)
    """
    if torch.rand((), generator=generator).item() < full_context_prob:
        return None, None
    chunk = int(torch.randint(1, max_chunk + 1, (), generator=generator))
    max_left = max(1, max_frames // chunk)
    left = int(torch.randint(0, max_left + 1, (), generator=generator))
    return chunk, (None if left == max_left else left)
