from __future__ import annotations

import pytest
import torch

from speechkit.errors import ConfigError
from speechkit.nn import (
    ConvolutionalGatingMLP,
    EBranchformerBlock,
    FeedForward,
    MultiHeadAttention,
    lengths_to_padding_mask,
)


def _block(causal: bool = False, window_size: int | None = None) -> EBranchformerBlock:
    return EBranchformerBlock(
        8, num_heads=2, cgmlp_hidden_dim=16, kernel_size=5, ff_mult=2, causal=causal, window_size=window_size
    )


def test_ebranchformer_reuses_shared_attention_and_ffn() -> None:
    block = _block()
    assert isinstance(block.attn, MultiHeadAttention)
    assert isinstance(block.ff1, FeedForward) and isinstance(block.ff2, FeedForward)


@pytest.mark.parametrize("length", [1, 7])
def test_ebranchformer_shapes(length: int) -> None:
    assert _block()(torch.randn(2, length, 8)).shape == (2, length, 8)
    cgmlp = ConvolutionalGatingMLP(8, hidden_dim=12, kernel_size=3)
    assert cgmlp(torch.randn(2, length, 8)).shape == (2, length, 8)
    with pytest.raises(ConfigError, match="even"):
        ConvolutionalGatingMLP(8, hidden_dim=7)


def test_causal_cgmlp_and_block_are_causal(assert_causal) -> None:
    cgmlp = ConvolutionalGatingMLP(8, hidden_dim=12, kernel_size=5, causal=True).eval()
    with torch.no_grad():  # the near-identity gate init would make the conv's effect tiny
        cgmlp.gate_conv.conv.weight.normal_()
    assert_causal(cgmlp, torch.randn(2, 9, 8), cut_in=5, cut_out=5, time_dim=1)
    assert_causal(
        _block(causal=True, window_size=4).eval(), torch.randn(2, 9, 8), cut_in=3, cut_out=3, time_dim=1
    )


@pytest.mark.parametrize("causal", [False, True])
def test_ebranchformer_padding_mask_hides_padded_frames(causal: bool) -> None:
    block = _block(causal=causal).eval()
    with torch.no_grad():
        block.cgmlp.gate_conv.conv.weight.normal_()
    mask = lengths_to_padding_mask(torch.tensor([8, 5]))
    x = torch.randn(2, 8, 8)
    x2 = x.clone()
    x2[1, 5:] = torch.randn(3, 8) * 10
    y = block(x, mask)
    torch.testing.assert_close(y[1, :5], block(x2, mask)[1, :5], rtol=0, atol=1e-5)
    torch.testing.assert_close(y[1, :5], block(x[1:, :5])[0], rtol=0, atol=1e-5)


def test_ebranchformer_gets_finite_gradients(assert_grads_finite) -> None:
    block = _block(causal=True)
    assert_grads_finite(block, block(torch.randn(2, 6, 8)))
