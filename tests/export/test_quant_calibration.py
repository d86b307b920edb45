"""Layer-input Hessians: Conv1d unfolding (padding, stride, dilation, groups) and hook bookkeeping."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from speechkit.errors import ConfigError
from speechkit_export.quant import collect_hessians, conv1d_columns, relative_output_error

CONV_CASES = [
    dict(in_channels=4, out_channels=6, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=4, padding="same", dilation=2),
    dict(in_channels=4, out_channels=6, kernel_size=3, padding=2, stride=2, padding_mode="reflect"),
    dict(in_channels=4, out_channels=6, kernel_size=3, padding=1, groups=2),
    dict(in_channels=4, out_channels=8, kernel_size=5, padding=2, groups=4),  # depthwise, multiplier 2
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv1d_columns_reproduce_the_convolution(case: dict) -> None:
    conv = nn.Conv1d(**case, bias=False).double()
    x = torch.randn(2, 4, 11, dtype=torch.float64)
    columns = conv1d_columns(conv, x)  # [groups, D, B * T_out]
    groups, out = conv.groups, conv.out_channels
    weight = conv.weight.reshape(groups, out // groups, -1)
    y = (weight @ columns).reshape(out, 2, -1).transpose(0, 1)
    torch.testing.assert_close(y, conv(x))


def test_hessian_shapes_and_counts() -> None:
    model = nn.Sequential(
        nn.Conv1d(4, 6, 3),  # D = 4 * 3
        nn.Conv1d(6, 6, 3, padding=1, groups=2),  # per group D = 3 * 3
        nn.Conv1d(6, 6, 5, padding=2, groups=6),  # depthwise: per channel D = 5
    )
    stats = collect_hessians(model, [torch.randn(2, 4, 10), torch.randn(1, 4, 7)])
    assert stats["0"].sum_outer.shape == (12, 12)
    assert stats["1"].sum_outer.shape == (2, 9, 9)
    assert stats["2"].sum_outer.shape == (6, 5, 5)
    assert stats["0"].num_samples == 2 * 8 + 5  # valid conv: T_out = T - 2
    assert stats["1"].per_row(6).shape == (6, 9, 9)
    h = stats["0"].sum_outer
    torch.testing.assert_close(h, h.T)
    assert torch.linalg.eigvalsh(h).min() > -1e-9


@pytest.mark.parametrize("kind", ["linear", "grouped_conv"])
def test_relative_error_from_hessian_matches_measured_output_error(kind: str) -> None:
    if kind == "linear":
        layer, x = nn.Linear(5, 3, bias=False), torch.randn(3, 7, 5)  # [B, T, D] inputs
    else:
        layer, x = nn.Conv1d(6, 4, 3, padding=1, groups=2, bias=False), torch.randn(3, 6, 9)
    layer, x = layer.double(), x.double()
    stats = collect_hessians(layer, [x])[""]
    with torch.no_grad():
        reference = layer(x)
        original = layer.weight.clone()
        layer.weight.add_(0.1 * torch.randn_like(original))
        moved = layer(x)
    measured = float((moved - reference).square().sum() / reference.square().sum())
    predicted = relative_output_error(original, layer.weight.detach(), stats.per_row(original.shape[0]))
    assert predicted == pytest.approx(measured, rel=1e-9)


def test_collection_restores_modes_removes_hooks_and_takes_callables() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    model.train()
    model[2].eval()
    seen = []

    def run(m: nn.Module) -> None:
        seen.append(m.training)
        m(torch.randn(6, 3))

    stats = collect_hessians(model, run)
    assert seen == [False]  # calibration runs in eval mode
    assert model.training and model[0].training and not model[2].training
    assert all(not m._forward_hooks for m in model.modules())
    assert stats["2"].num_samples == 6
    stats = collect_hessians(model, [{"input": torch.randn(2, 3)}, (torch.randn(1, 3),)])
    assert stats["0"].num_samples == 3


def test_bad_calibration_inputs_raise() -> None:
    model = nn.Sequential(nn.Linear(3, 4))
    with pytest.raises(ConfigError):
        collect_hessians(model, torch.randn(2, 3))
    with pytest.raises(ConfigError):
        collect_hessians(model, [torch.randn(2, 3)], modules={"t": nn.ConvTranspose1d(2, 2, 3, stride=2)})
    stats = collect_hessians(model, [], modules={"0": model[0]})
    assert stats == {}
