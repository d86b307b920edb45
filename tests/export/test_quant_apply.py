"""quantize_model on a tiny Linear + Conv1d model: grids, output closeness, skips, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from speechkit.errors import ConfigError
from speechkit_export.quant import quantize_model


class _Tiny(nn.Module):
    """[B, T, 16] -> [B, T, 8]: Linear, weight-normed Conv1d, depthwise Conv1d, ConvTranspose1d, Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(16, 24)
        self.conv = nn.utils.parametrizations.weight_norm(nn.Conv1d(24, 24, 3, padding=1))
        self.depthwise = nn.Conv1d(24, 24, 5, padding=2, groups=24)
        self.up = nn.ConvTranspose1d(24, 24, 1)  # quantised as its polyphase matrix (stride 1: W^T)
        self.out = nn.Linear(24, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.inp(x)).transpose(1, 2)
        h = self.up(self.depthwise(F.gelu(self.conv(h))))
        return self.out(F.gelu(h).transpose(1, 2))


def _setup(seed: int = 0) -> tuple[_Tiny, list[torch.Tensor], torch.Tensor]:
    torch.manual_seed(seed)
    model = _Tiny()
    mixing = torch.randn(16, 16)  # correlated input features
    calibration = [torch.randn(2, 20, 16) @ mixing for _ in range(3)]
    return model, calibration, torch.randn(4, 20, 16) @ mixing


def _relative_output_error(model: nn.Module, reference: torch.Tensor, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x) - reference).norm() / reference.norm())


def test_quantize_model_puts_every_weight_on_a_small_grid_and_keeps_the_output() -> None:
    model, calibration, x = _setup()
    with torch.no_grad():
        reference = model(x)
    modules = dict(model.named_modules())
    kinds = (nn.Linear, nn.Conv1d, nn.ConvTranspose1d)
    before = {name: m.weight.detach().clone() for name, m in modules.items() if isinstance(m, kinds)}
    report = quantize_model(model, "decoupleq", bits=4, group_size=8, calibration=calibration)
    assert sorted(report) == ["conv", "depthwise", "inp", "out", "up"]
    for name in report:
        weight = modules[name].weight.detach()
        torch.testing.assert_close(weight, report[name].quantized.layer_weight(), rtol=0, atol=0)
        assert not torch.equal(weight, before[name])
        matrix = report[name].quantized.dequantize_matrix()
        for start in range(0, matrix.shape[1], 8):
            for row in matrix[:, start : start + 8]:
                assert row.unique().numel() <= 16
        assert 0 < report[name].relative_error < 0.01  # measured 0.0004-0.0007
    # Measured 0.030 for this model and seed (RTN 0.063, GPTQ 0.045).
    assert _relative_output_error(model, reference, x) < 0.06


def test_decoupleq_keeps_the_model_output_closer_than_rtn_at_3_bits() -> None:
    errors = {}
    for method in ("rtn", "decoupleq"):
        model, calibration, x = _setup()
        with torch.no_grad():
            reference = model(x)
        quantize_model(model, method, bits=3, group_size=8, calibration=calibration)
        errors[method] = _relative_output_error(model, reference, x)
    assert errors["decoupleq"] < 0.8 * errors["rtn"]  # measured 0.065 vs 0.109


def test_skip_and_calibration_free_rtn() -> None:
    model, _, _ = _setup()
    out_weight = model.out.weight.detach().clone()
    report = quantize_model(model, "rtn", bits=2, skip=lambda name, module: name == "out")
    assert "out" not in report and torch.equal(model.out.weight, out_weight)
    assert report["inp"].relative_error is None
    assert all(row.unique().numel() <= 4 for row in model.inp.weight.detach())


def test_quantize_model_rejects_bad_requests() -> None:
    model, calibration, _ = _setup()
    with pytest.raises(ConfigError):
        quantize_model(model, "gptq", bits=4)  # no calibration
    with pytest.raises(ConfigError):
        quantize_model(model, "awq", bits=4, calibration=calibration)
    with pytest.raises(ConfigError):
        quantize_model(model, "rtn", bits=1)
