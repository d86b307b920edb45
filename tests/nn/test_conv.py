from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from speechkit.errors import ConfigError, SpeechkitError
from speechkit.nn import (
    ChannelLayerNorm,
    ConvDecoderStack,
    ConvEncoderStack,
    ConvNeXtBlock,
    PaddedConv1d,
    PaddedConvTranspose1d,
    ResidualUnit,
    Snake1d,
    make_activation,
)


def _stream(module, x: torch.Tensor, chunk_sizes: list[int]) -> torch.Tensor:
    """Run module.step over consecutive chunks of x [B, C, T] and concatenate the outputs."""
    state = module.initial_state(x.shape[0])
    outputs, start = [], 0
    for size in chunk_sizes:
        y, state = module.step(x[..., start : start + size], state)
        outputs.append(y)
        start += size
    assert start == x.shape[-1]
    return torch.cat(outputs, dim=-1)


@pytest.mark.parametrize("causal", [False, True])
def test_padded_conv_length_is_ceil_t_over_stride(causal: bool) -> None:
    for kernel_size in (1, 2, 4, 7):
        for stride in (1, 2, 3, 5):
            for dilation in (1, 2):
                conv = PaddedConv1d(2, 3, kernel_size, stride, dilation, causal=causal)
                for length in (1, 7, 10):
                    y = conv(torch.randn(1, 2, length))
                    assert y.shape == (1, 3, math.ceil(length / stride)), (
                        kernel_size,
                        stride,
                        dilation,
                        length,
                    )


def test_noncausal_stride1_conv_is_centred_zero_padding() -> None:
    conv = PaddedConv1d(2, 3, kernel_size=5, dilation=2)
    reference = nn.Conv1d(2, 3, 5, dilation=2, padding=4)
    reference.load_state_dict(conv.conv.state_dict())
    x = torch.randn(2, 2, 11)
    torch.testing.assert_close(conv(x), reference(x))


@pytest.mark.parametrize(("kernel_size", "stride", "dilation"), [(3, 1, 1), (3, 1, 3), (4, 2, 1), (7, 3, 1)])
def test_causal_conv_depends_only_on_its_block_and_the_past(
    kernel_size: int, stride: int, dilation: int, assert_causal
) -> None:
    conv = PaddedConv1d(2, 3, kernel_size, stride, dilation, causal=True)
    # Perturbing from input 6 on leaves frames whose stride block ends before 6 unchanged.
    assert_causal(conv, torch.randn(1, 2, 12), cut_in=6, cut_out=6 // stride)


@pytest.mark.parametrize(
    ("kernel_size", "stride", "dilation", "chunks"),
    [
        (3, 1, 1, [1, 1, 3, 2, 5]),
        (5, 1, 2, [4, 1, 7]),
        (4, 2, 1, [2, 4, 2, 6]),
        (7, 3, 1, [3, 9, 3]),
        (1, 2, 1, [2, 6, 4]),  # kernel < stride: no history at all
    ],
)
def test_causal_conv_step_equals_offline(
    kernel_size: int, stride: int, dilation: int, chunks: list[int]
) -> None:
    conv = PaddedConv1d(3, 4, kernel_size, stride, dilation, causal=True)
    x = torch.randn(2, 3, sum(chunks))
    torch.testing.assert_close(_stream(conv, x, chunks), conv(x), rtol=0, atol=1e-6)
    state = conv.initial_state(2)
    assert state.shape == (2, 3, max((kernel_size - 1) * dilation + 1 - stride, 0))


def test_conv_step_rejects_bad_chunk_and_noncausal() -> None:
    conv = PaddedConv1d(1, 1, 4, stride=2, causal=True)
    with pytest.raises(SpeechkitError, match="multiple"):
        conv.step(torch.randn(1, 1, 3), conv.initial_state(1))
    with pytest.raises(ConfigError):
        PaddedConv1d(1, 1, 3).initial_state(1)
    with pytest.raises(ConfigError):
        PaddedConv1d(1, 1, 0)


@pytest.mark.parametrize("causal", [False, True])
def test_conv_transpose_length_is_t_times_stride(causal: bool) -> None:
    for stride in (1, 2, 3, 4):
        for kernel_size in (stride, 2 * stride, 2 * stride + 1):
            up = PaddedConvTranspose1d(3, 2, kernel_size, stride, causal=causal)
            for length in (1, 4, 7):
                assert up(torch.randn(1, 3, length)).shape == (1, 2, length * stride)


def test_conv_transpose_rejects_kernel_below_stride() -> None:
    with pytest.raises(ConfigError, match="kernel_size"):
        PaddedConvTranspose1d(1, 1, kernel_size=2, stride=3)


def test_causal_conv_transpose_is_causal(assert_causal) -> None:
    up = PaddedConvTranspose1d(2, 3, kernel_size=6, stride=3, causal=True)
    # Input frames >= 4 only reach output samples >= 4 * 3.
    assert_causal(up, torch.randn(1, 2, 8), cut_in=4, cut_out=12)


@pytest.mark.parametrize(("kernel_size", "stride"), [(4, 2), (7, 3), (2, 2)])
def test_causal_conv_transpose_step_equals_offline(kernel_size: int, stride: int) -> None:
    up = PaddedConvTranspose1d(3, 2, kernel_size, stride, causal=True)
    x = torch.randn(2, 3, 9)
    torch.testing.assert_close(_stream(up, x, [1, 3, 2, 3]), up(x), rtol=0, atol=1e-6)


def test_residual_unit_shapes_causality_and_streaming(assert_causal) -> None:
    unit = ResidualUnit(4, kernel_size=3, dilation=3, causal=True, activation="snake")
    x = torch.randn(2, 4, 15)
    assert unit(x).shape == x.shape
    assert_causal(unit, x, cut_in=9, cut_out=9)
    assert unit.num_states == len(unit.initial_state(2)) == 1
    torch.testing.assert_close(_stream(unit, x, [1, 5, 9]), unit(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("length", [1, 13, 24, 25])
def test_encoder_stack_downsamples_by_hop_length(length: int) -> None:
    enc = ConvEncoderStack(1, 2, strides=(2, 3), out_channels=5, kernel_size=3, dilations=(1, 3))
    assert enc.hop_length == 6
    assert enc(torch.randn(2, 1, length)).shape == (2, 5, math.ceil(length / 6))


@pytest.mark.parametrize("length", [1, 5])
def test_decoder_stack_upsamples_by_hop_length(length: int) -> None:
    dec = ConvDecoderStack(5, 2, strides=(3, 2), out_channels=1, kernel_size=3, dilations=(1, 3))
    assert dec(torch.randn(2, 5, length)).shape == (2, 1, length * 6)


def test_causal_encoder_stack_is_causal_and_streams(assert_causal) -> None:
    enc = ConvEncoderStack(
        1, 2, strides=(2, 2), causal=True, kernel_size=3, dilations=(1,), activation="snake"
    )
    x = torch.randn(1, 1, 32)
    # Samples >= 12 can only reach frames whose 4-sample block ends after 12, i.e. frames >= 3.
    assert_causal(enc, x, cut_in=12, cut_out=3)
    torch.testing.assert_close(_stream(enc, x, [4, 8, 4, 16]), enc(x), rtol=0, atol=1e-5)
    with pytest.raises(SpeechkitError, match="multiple"):
        enc.step(torch.randn(1, 1, 6), enc.initial_state(1))


def test_causal_decoder_stack_is_causal_and_streams(assert_causal) -> None:
    dec = ConvDecoderStack(4, 2, strides=(2, 3), causal=True, kernel_size=3, dilations=(1, 2))
    x = torch.randn(2, 4, 7)
    assert_causal(dec, x, cut_in=4, cut_out=4 * 6)
    torch.testing.assert_close(_stream(dec, x, [1, 2, 1, 3]), dec(x), rtol=0, atol=1e-5)
    assert dec.num_states == len(dec.initial_state(2))


def test_convnext_block_shapes_causality_and_streaming(assert_causal) -> None:
    block = ConvNeXtBlock(8, kernel_size=7, mlp_ratio=2.0, causal=True, layer_scale_init=0.5)
    x = torch.randn(2, 8, 11)
    assert block(x).shape == x.shape
    assert_causal(block, x, cut_in=5, cut_out=5)
    torch.testing.assert_close(_stream(block, x, [3, 1, 7]), block(x), rtol=0, atol=1e-6)


def test_noncausal_convnext_sees_the_future() -> None:
    block = ConvNeXtBlock(4, kernel_size=5, layer_scale_init=1.0)
    x = torch.randn(1, 4, 9)
    x2 = x.clone()
    x2[..., 6] += 1.0
    # Frame 4 sees frames 2..6 through the centred kernel.
    assert not torch.allclose(block(x)[..., 4], block(x2)[..., 4])


def test_channel_layer_norm_matches_layer_norm_over_channels() -> None:
    norm = ChannelLayerNorm(5)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
    reference = nn.LayerNorm(5)
    reference.load_state_dict(norm.state_dict())
    x = torch.randn(2, 5, 7)
    torch.testing.assert_close(norm(x), reference(x.transpose(1, 2)).transpose(1, 2))


def test_activations_and_weight_norm() -> None:
    snake = Snake1d(3)
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(snake(x), x + torch.sin(x) ** 2, atol=1e-6, rtol=0)
    with pytest.raises(ConfigError, match="unknown activation"):
        make_activation("relu6", 3)
    conv = PaddedConv1d(2, 3, 3, weight_norm=True)
    assert any("parametrizations" in name for name, _ in conv.named_parameters())
    assert conv(torch.randn(1, 2, 5)).shape == (1, 3, 5)


def test_conv_blocks_get_finite_gradients(assert_grads_finite) -> None:
    x = torch.randn(2, 1, 24)
    enc = ConvEncoderStack(1, 2, strides=(2, 3), causal=True, kernel_size=3, dilations=(1,), weight_norm=True)
    z = enc(x)
    assert_grads_finite(enc, z)
    dec = ConvDecoderStack(
        enc.out_channels, 2, strides=(3, 2), kernel_size=3, dilations=(1,), activation="snake"
    )
    assert_grads_finite(dec, dec(z.detach()))
    block = ConvNeXtBlock(4, kernel_size=3)
    assert_grads_finite(block, block(torch.randn(2, 4, 6)))
