"""The inverse-STFT waveform head shared by the frame-rate codecs (Vocos, Siuzdak 2023, section 3).

A network at the STFT frame rate predicts a log-magnitude and a phase per frequency bin and frame;
an inverse STFT turns them into samples. Nothing runs at the sample rate except the overlap-add,
which is why the codecs built on it decode far faster than real time on one CPU thread.

Example:
    >>> import torch
    >>> head = ISTFTHead(dim=16, n_fft=64, hop_length=16)
    >>> head(torch.randn(2, 16, 10)).shape  # 10 frames of hop 16
    torch.Size([2, 160])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from speechkit.features import ISTFT

LOG_MAGNITUDE_FLOOR = 1e-5
LOG_MAGNITUDE_CEILING = 7.0  # exp(7) ~ 1100: above any |X| of full-scale audio with n_fft <= 2048


def spectrum_to_audio(log_magnitude: Tensor, phase: Tensor, istft: ISTFT) -> Tensor:
    """Log-magnitude and phase [B, F, N] -> audio through ``istft`` (float32 even under autocast).

    The log-magnitude is clamped at :data:`LOG_MAGNITUDE_CEILING` so that an early, untrained
    network cannot overflow ``exp``; the phase is used as an angle, so it needs no wrapping.

    Example:
        >>> istft = ISTFT(64, 16, padding="same")
        >>> spectrum_to_audio(torch.zeros(1, 33, 5), torch.zeros(1, 33, 5), istft).shape
        torch.Size([1, 80])
    """
    magnitude = torch.exp(log_magnitude.float().clamp(max=LOG_MAGNITUDE_CEILING))
    phase = phase.float()
    return istft(magnitude * torch.cos(phase), magnitude * torch.sin(phase))


class ISTFTHead(nn.Module):
    """Features [B, C, N] at the STFT frame rate -> audio [B, N * hop_length].

    LayerNorm over C, one linear layer to ``2F`` values per frame (log-magnitude, then phase; F =
    n_fft // 2 + 1), then :func:`spectrum_to_audio` with a "same"-padded inverse STFT.

    Args:
        dim: channel count C of the features.
        n_fft: FFT size of the inverse STFT.
        hop_length: STFT hop in samples.
    """

    def __init__(self, dim: int, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.num_bins = n_fft // 2 + 1
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, 2 * self.num_bins)
        self.istft = ISTFT(n_fft, hop_length, padding="same")

    def spectrum(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(log-magnitude, phase), each [B, F, N], of features [B, C, N]."""
        out = self.proj(self.norm(x.transpose(1, 2))).transpose(1, 2)  # [B, 2F, N]
        return out[:, : self.num_bins], out[:, self.num_bins :]

    def forward(self, x: Tensor) -> Tensor:
        return spectrum_to_audio(*self.spectrum(x), self.istft)
