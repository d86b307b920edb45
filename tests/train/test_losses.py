"""Reconstruction losses: zero on identical audio, larger for worse reconstructions, phase-aware."""

from __future__ import annotations

import torch

from speechkit.train.losses import CompressedComplexLoss, MultiResolutionMelLoss, MultiResolutionSTFTLoss


def _speech_like(n: int = 8000) -> torch.Tensor:
    t = torch.arange(n) / 16000
    return (0.3 * torch.sin(2 * torch.pi * 150 * t) + 0.1 * torch.sin(2 * torch.pi * 1200 * t))[None]


def test_losses_are_zero_for_identical_audio_and_grow_with_noise():
    x = _speech_like()
    for loss in (MultiResolutionMelLoss(16000), MultiResolutionSTFTLoss(), CompressedComplexLoss()):
        assert float(loss(x, x)) < 1e-5
        slight, heavy = x + 0.01 * torch.randn_like(x), x + 0.2 * torch.randn_like(x)
        assert float(loss(slight, x)) < float(loss(heavy, x))


def test_complex_loss_sees_phase_that_magnitude_losses_miss():
    x = _speech_like()
    inverted = -x  # identical magnitudes, every phase turned by pi
    assert float(MultiResolutionMelLoss(16000)(inverted, x)) < 1e-5
    assert float(MultiResolutionSTFTLoss()(inverted, x)) < 1e-5
    assert float(CompressedComplexLoss()(inverted, x)) > 0.01


def test_losses_stay_float32_under_autocast():
    x = _speech_like()
    y = x + 0.05 * torch.randn_like(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = MultiResolutionSTFTLoss()(y, x)
    assert value.dtype == torch.float32
