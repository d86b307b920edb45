"""ModelEMA: averages parameters, copies buffers, round-trips its state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from speechkit.errors import CheckpointError, ConfigError
from speechkit.train import ModelEMA


class WithBuffer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.register_buffer("codebook", torch.zeros(4, 2))


def test_ema_lags_behind_and_moves_toward_the_weights():
    model = WithBuffer()
    ema = ModelEMA(model, decay=0.9)
    target = torch.ones_like(model.linear.weight)
    with torch.no_grad():
        model.linear.weight.copy_(target)
        model.codebook.fill_(5.0)
    distances = []
    for _ in range(5):
        ema.update(model)
        distances.append(float((ema.state_dict()["linear.weight"] - target).abs().max()))
    assert distances[-1] > 1e-3  # differs from the raw weights ...
    assert all(b < a for a, b in zip(distances, distances[1:], strict=False))  # ... and approaches them
    assert torch.equal(ema.state_dict()["codebook"], model.codebook)  # buffers are copied, not averaged
    assert ema.num_updates == 5


def test_copy_to_and_applied_to():
    model = WithBuffer()
    ema = ModelEMA(model, decay=0.5)
    start = model.linear.weight.detach().clone()
    with torch.no_grad():
        model.linear.weight.add_(2.0)
    ema.update(model)
    with ema.applied_to(model):
        assert torch.allclose(model.linear.weight, start + 1.0)
    assert torch.allclose(model.linear.weight, start + 2.0)
    other = WithBuffer()
    ema.copy_to(other)
    assert torch.allclose(other.linear.weight, start + 1.0)


def test_state_round_trip_and_mismatch():
    model = WithBuffer()
    ema = ModelEMA(model, decay=0.9)
    fresh = ModelEMA(WithBuffer(), decay=0.9)
    fresh.load_state_dict(ema.state_dict())
    assert all(torch.equal(fresh.shadow[k], ema.shadow[k]) for k in ema.shadow)
    with pytest.raises(CheckpointError, match="missing"):
        fresh.load_state_dict({"linear.weight": torch.zeros(2, 3)})
    with pytest.raises(ConfigError):
        ModelEMA(model, decay=1.5)
