"""Reconstruction losses for audio generators (codecs, vocoders, enhancement).

All take audio [B, T] (prediction, target) and return a scalar. They compute their spectra in float32
outside autocast (``LogMelSpectrogram`` and ``STFT`` disable it), so bf16 training keeps exact losses.

- :class:`MultiResolutionMelLoss`: L1 between log-mel spectrograms at several window sizes (DAC,
  Kumar et al. 2023, section 3.4; HiFi-GAN's mel loss at one size).
- :class:`MultiResolutionSTFTLoss`: spectral convergence + log-magnitude L1 (Parallel WaveGAN,
  Yamamoto et al. 2020, section 2.3).
- :class:`CompressedComplexLoss`: phase-aware: MSE between power-law compressed complex spectra
  ``|X|^c e^{j angle X}`` plus their magnitudes (Braun and Tashev 2021, "A consolidated view of loss
  functions for supervised deep learning-based speech enhancement", eq. 5), so the decoder's phase is
  trained directly, not only through the magnitude.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from speechkit.features import STFT, LogMelSpectrogram


class MultiResolutionMelLoss(nn.Module):
    """Mean over resolutions of L1(log-mel(pred), log-mel(target)).

    Example:
        >>> loss = MultiResolutionMelLoss(16000, n_ffts=(256, 512), n_mels=(32, 64))
        >>> x = torch.randn(2, 4000)
        >>> float(loss(x, x))
        0.0
    """

    def __init__(
        self,
        sample_rate: int,
        n_ffts: Sequence[int] = (512, 1024, 2048),
        n_mels: Sequence[int] = (40, 80, 128),
    ) -> None:
        super().__init__()
        if len(n_ffts) != len(n_mels):
            raise ValueError("n_ffts and n_mels need the same length")
        self.mels = nn.ModuleList(
            LogMelSpectrogram(sample_rate, n_fft, n_fft // 4, mels, power=1.0, double_precision=False)
            for n_fft, mels in zip(n_ffts, n_mels, strict=True)
        )

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        losses = [(mel(prediction) - mel(target)).abs().mean() for mel in self.mels]
        return torch.stack(losses).mean()


def _magnitude(stft: STFT, wav: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    real, imag = stft(wav.float())
    return real, imag, torch.sqrt(real**2 + imag**2 + 1e-9)


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence plus log-magnitude L1, averaged over resolutions (n_fft, hop = n_fft / 4)."""

    def __init__(self, n_ffts: Sequence[int] = (256, 512, 1024)) -> None:
        super().__init__()
        self.stfts = nn.ModuleList(STFT(n_fft, n_fft // 4, double_precision=False) for n_fft in n_ffts)

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        losses = []
        with torch.autocast(prediction.device.type, enabled=False):
            for stft in self.stfts:
                _, _, pred_mag = _magnitude(stft, prediction)
                _, _, target_mag = _magnitude(stft, target)
                convergence = torch.linalg.vector_norm(target_mag - pred_mag) / torch.linalg.vector_norm(
                    target_mag
                ).clamp_min(1e-7)
                log_l1 = (torch.log(pred_mag) - torch.log(target_mag)).abs().mean()
                losses.append(convergence + log_l1)
        return torch.stack(losses).mean()


class CompressedComplexLoss(nn.Module):
    """Phase-aware loss on power-law compressed complex spectra (exponent ``compression``).

    ``alpha * MSE(complex) + (1 - alpha) * MSE(magnitude)`` with both compressed by ``|X|^c``.
    """

    def __init__(self, n_fft: int = 512, compression: float = 0.3, alpha: float = 0.3) -> None:
        super().__init__()
        self.stft = STFT(n_fft, n_fft // 4, double_precision=False)
        self.compression, self.alpha = compression, alpha

    def _compressed(self, wav: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        real, imag, magnitude = _magnitude(self.stft, wav)
        scale = magnitude.pow(self.compression - 1.0)  # |X|^c / |X|
        return real * scale, imag * scale, magnitude.pow(self.compression)

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        with torch.autocast(prediction.device.type, enabled=False):
            pr, pi, pm = self._compressed(prediction)
            tr, ti, tm = self._compressed(target)
            complex_mse = ((pr - tr) ** 2 + (pi - ti) ** 2).mean()
            magnitude_mse = ((pm - tm) ** 2).mean()
        return self.alpha * complex_mse + (1 - self.alpha) * magnitude_mse
