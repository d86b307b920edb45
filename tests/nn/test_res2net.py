from __future__ import annotations

import pytest
import torch

from speechkit.errors import ConfigError
from speechkit.nn import (
    AttentiveStatisticsPooling,
    Res2NetConv,
    SERes2NetBlock,
    SqueezeExcitation,
    lengths_to_padding_mask,
)


@pytest.mark.parametrize("length", [1, 9])
def test_res2net_blocks_keep_time_length(length: int) -> None:
    x = torch.randn(2, 8, length)
    assert Res2NetConv(8, kernel_size=3, dilation=3, scale=4)(x).shape == x.shape
    assert SqueezeExcitation(8, bottleneck=2)(x).shape == x.shape
    assert SERes2NetBlock(8, 16, res2net_scale=4, se_channels=4, dilation=2)(x).shape == (2, 16, length)
    assert SERes2NetBlock(8, 8, res2net_scale=2, se_channels=4)(x).shape == x.shape


def test_res2net_first_group_passes_through() -> None:
    conv = Res2NetConv(8, scale=4)
    x = torch.randn(2, 8, 5)
    torch.testing.assert_close(conv(x)[:, :2], x[:, :2])
    with pytest.raises(ConfigError, match="divisible"):
        Res2NetConv(10, scale=4)


def test_squeeze_excitation_mask_ignores_padded_frames() -> None:
    se = SqueezeExcitation(4, bottleneck=2)
    x = torch.randn(1, 4, 6)
    mask = lengths_to_padding_mask(torch.tensor([4]), max_length=6)
    x2 = x.clone()
    x2[..., 4:] += 3.0
    torch.testing.assert_close(se(x, mask)[..., :4], se(x2, mask)[..., :4])
    torch.testing.assert_close(se(x, mask)[..., :4], se(x[..., :4]))


@pytest.mark.parametrize("global_context", [True, False])
def test_attentive_statistics_pooling(global_context: bool) -> None:
    pool = AttentiveStatisticsPooling(6, attention_channels=4, global_context=global_context).eval()
    x = torch.randn(2, 6, 10)
    out = pool(x)
    assert out.shape == (2, 12)
    assert (out[:, 6:] > 0).all()  # standard deviations
    mask = lengths_to_padding_mask(torch.tensor([10, 7]))
    x2 = x.clone()
    x2[1, :, 7:] = 100.0
    torch.testing.assert_close(pool(x, mask), pool(x2, mask))
    torch.testing.assert_close(pool(x, mask)[1], pool(x[1:, :, :7])[0])


def test_res2net_blocks_get_finite_gradients(assert_grads_finite) -> None:
    block = SERes2NetBlock(8, 8, res2net_scale=4, se_channels=4, dilation=2)
    pool = AttentiveStatisticsPooling(8, attention_channels=4)
    model = torch.nn.Sequential(block, pool)
    assert_grads_finite(model, model(torch.randn(3, 8, 7)))
