from __future__ import annotations

import pytest
import torch

from speechkit.nn import ConformerBlock, ConvolutionModule, FeedForward, lengths_to_padding_mask
from speechkit.nn.conformer import FeedForward as ConformerFeedForward


def test_conformer_reuses_the_shared_feedforward() -> None:
    assert ConformerFeedForward is FeedForward
    block = ConformerBlock(8, num_heads=2, conv_kernel_size=3)
    assert isinstance(block.ff1.net[1], torch.nn.SiLU)


@pytest.mark.parametrize("length", [1, 6, 9])
def test_conformer_block_shapes(length: int) -> None:
    block = ConformerBlock(8, num_heads=2, conv_kernel_size=5, ff_mult=2)
    assert block(torch.randn(2, length, 8)).shape == (2, length, 8)
    assert ConvolutionModule(8, kernel_size=5)(torch.randn(2, length, 8)).shape == (2, length, 8)


def test_causal_convolution_module_and_block_are_causal(assert_causal) -> None:
    module = ConvolutionModule(8, kernel_size=5, causal=True).eval()
    assert_causal(module, torch.randn(2, 10, 8), cut_in=6, cut_out=6, time_dim=1)
    block = ConformerBlock(8, num_heads=2, conv_kernel_size=5, causal=True, window_size=3).eval()
    assert_causal(block, torch.randn(2, 10, 8), cut_in=4, cut_out=4, time_dim=1)


@pytest.mark.parametrize("causal", [False, True])
def test_conformer_padding_mask_hides_padded_frames(causal: bool) -> None:
    block = ConformerBlock(8, num_heads=2, conv_kernel_size=5, causal=causal).eval()
    mask = lengths_to_padding_mask(torch.tensor([8, 5]))
    x = torch.randn(2, 8, 8)
    x2 = x.clone()
    x2[1, 5:] = torch.randn(3, 8) * 10
    y = block(x, mask)
    torch.testing.assert_close(y[1, :5], block(x2, mask)[1, :5], rtol=0, atol=1e-5)
    torch.testing.assert_close(y[1, :5], block(x[1:, :5])[0], rtol=0, atol=1e-5)


def test_conformer_gets_finite_gradients(assert_grads_finite) -> None:
    block = ConformerBlock(8, num_heads=2, conv_kernel_size=3, dropout=0.1)
    mask = lengths_to_padding_mask(torch.tensor([6, 4]))
    assert_grads_finite(block, block(torch.randn(2, 6, 8), mask))
