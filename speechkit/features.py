"""STFT, inverse STFT and log-mel features as torch modules that export to ONNX.

Training uses ``torch.stft`` / ``torch.istft`` (FFT, fast). Under ``torch.onnx.export`` (or when
``use_dft_matmul=True``) the same transforms run as convolutions with fixed DFT bases, which every
runtime supports (ONNX Runtime, Core ML, onnxruntime-web) and which the numpy twin in
``speechkit_rt.features`` reproduces to 1e-4. Window and mel filterbank come from that twin, so the
torch and numpy sides share one definition.

Shapes: audio [B, T]; spectra [B, F, N] with F = n_fft // 2 + 1 bins and N = 1 + T // hop_length
frames (``center=True``); log-mel [B, n_mels, N].

Example:
    >>> import torch
    >>> mel = LogMelSpectrogram(sample_rate=16000, n_fft=512, hop_length=160, n_mels=80)
    >>> mel(torch.randn(2, 16000)).shape
    torch.Size([2, 80, 101])
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from speechkit_rt.features import mel_filterbank, padded_window
from torch import nn


def _exporting() -> bool:
    return torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()


def _dft_basis(n_fft: int, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Windowed real-DFT bases [F, n_fft] (real part, imaginary part) in float64."""
    freqs = np.arange(n_fft // 2 + 1)[:, None]
    angle = 2 * np.pi * freqs * np.arange(n_fft)[None, :] / n_fft
    return np.cos(angle) * window, -np.sin(angle) * window


class STFT(nn.Module):
    """Short-time Fourier transform returning real and imaginary parts (ONNX has no complex type).

    Args:
        n_fft: FFT size.
        hop_length: frame shift in samples.
        win_length: periodic Hann window length (zero-padded to n_fft); defaults to n_fft.
        center: pad n_fft // 2 on both sides so frame n is centred on sample n * hop_length.
        pad_mode: "reflect" or "constant" (zeros) for the centre padding.
        use_dft_matmul: always use the convolution path (it is used automatically under export).

    Returns (forward):
        (real, imag), each [B, F, N].

    Example:
        >>> real, imag = STFT(n_fft=64, hop_length=16)(torch.randn(1, 160))
        >>> real.shape
        torch.Size([1, 33, 11])
    """

    def __init__(
        self,
        n_fft: int,
        hop_length: int,
        win_length: int | None = None,
        center: bool = True,
        pad_mode: str = "reflect",
        use_dft_matmul: bool = False,
    ) -> None:
        super().__init__()
        if pad_mode not in ("reflect", "constant"):
            raise ValueError(f"pad_mode must be 'reflect' or 'constant', got {pad_mode!r}")
        self.n_fft, self.hop_length = n_fft, hop_length
        self.win_length = win_length or n_fft
        self.center, self.pad_mode, self.use_dft_matmul = center, pad_mode, use_dft_matmul
        window = padded_window(self.win_length, n_fft)
        real, imag = _dft_basis(n_fft, window.astype(np.float64))
        self.register_buffer("window", torch.from_numpy(window), persistent=False)
        basis = np.concatenate([real, imag], axis=0)[:, None, :]  # [2F, 1, n_fft]
        self.register_buffer("basis", torch.from_numpy(basis.astype(np.float32)), persistent=False)

    @property
    def num_bins(self) -> int:
        return self.n_fft // 2 + 1

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` of audio."""
        if self.center:
            return 1 + num_samples // self.hop_length
        return 1 + (num_samples - self.n_fft) // self.hop_length

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if wav.dim() != 2:
            raise ValueError(f"STFT expects audio [B, T], got shape {tuple(wav.shape)}")
        if self.use_dft_matmul or _exporting():
            return self._dft_conv(wav)
        # float64 FFT: low-energy bins keep their relative precision next to loud ones, so log features
        # match the numpy twin to 1e-4 (float32 gives ~1.5e-4 on band-limited speech); costs ~1.7x a
        # float32 FFT, which is small next to any model.
        spec = torch.stft(
            wav.double(),
            self.n_fft,
            self.hop_length,
            win_length=self.n_fft,  # the window is already zero-padded to n_fft
            window=self.window.double(),
            center=self.center,
            pad_mode=self.pad_mode,
            return_complex=True,
        )
        return spec.real.float(), spec.imag.float()

    def _dft_conv(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = wav.float().unsqueeze(1)  # [B, 1, T]
        if self.center:
            pad = self.n_fft // 2
            x = F.pad(x, (pad, pad), mode=self.pad_mode)
        out = F.conv1d(x, self.basis, stride=self.hop_length)  # [B, 2F, N]
        return out[:, : self.num_bins], out[:, self.num_bins :]


class ISTFT(nn.Module):
    """Inverse STFT by weighted overlap-add, the inverse of :class:`STFT` with ``center=True``.

    Used by frame-rate codecs and vocoders as a cheap waveform head (Vocos, Siuzdak 2023): the
    network predicts magnitude and phase per frame and this module makes samples.

    Args:
        n_fft, hop_length, win_length: as in :class:`STFT`.
        use_dft_matmul: always use the transposed-convolution path (automatic under export).

    Returns (forward):
        audio [B, (N - 1) * hop_length] from real and imaginary parts [B, F, N].

    Example:
        >>> stft, istft = STFT(256, 64), ISTFT(256, 64)
        >>> wav = torch.randn(1, 64 * 50)
        >>> bool(torch.allclose(istft(*stft(wav)), wav, atol=1e-4))
        True
    """

    def __init__(
        self, n_fft: int, hop_length: int, win_length: int | None = None, use_dft_matmul: bool = False
    ) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.win_length = win_length or n_fft
        self.use_dft_matmul = use_dft_matmul
        window = padded_window(self.win_length, n_fft).astype(np.float64)
        self.register_buffer("window", torch.from_numpy(window.astype(np.float32)), persistent=False)
        # Inverse real DFT basis with Hermitian weights (DC and Nyquist once, others twice), windowed
        # for the synthesis side of weighted overlap-add.
        num_bins = n_fft // 2 + 1
        weights = np.full(num_bins, 2.0)
        weights[0] = 1.0
        if n_fft % 2 == 0:
            weights[-1] = 1.0
        angle = 2 * np.pi * np.arange(num_bins)[:, None] * np.arange(n_fft)[None, :] / n_fft
        inv_real = weights[:, None] * np.cos(angle) / n_fft * window
        inv_imag = -weights[:, None] * np.sin(angle) / n_fft * window
        basis = np.concatenate([inv_real, inv_imag], axis=0)[:, None, :]  # [2F, 1, n_fft]
        self.register_buffer("basis", torch.from_numpy(basis.astype(np.float32)), persistent=False)
        self.register_buffer("window_sq", torch.from_numpy((window**2).astype(np.float32))[None, :, None], persistent=False)

    def forward(self, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
        if self.use_dft_matmul or _exporting():
            return self._overlap_add(real, imag)
        num_frames = real.shape[-1]
        return torch.istft(
            torch.complex(real.float(), imag.float()),
            self.n_fft,
            self.hop_length,
            win_length=self.n_fft,
            window=self.window,
            center=True,
            length=(num_frames - 1) * self.hop_length,
        )

    def _overlap_add(self, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
        spec = torch.cat([real, imag], dim=1).float()  # [B, 2F, N]
        frames_out = F.conv_transpose1d(spec, self.basis, stride=self.hop_length)  # [B, 1, L]
        num_frames = spec.shape[-1]
        # Overlap-add of the squared window over N frames (the normaliser of weighted OLA).
        ones = torch.ones(1, 1, num_frames, dtype=spec.dtype, device=spec.device)
        envelope = F.conv_transpose1d(ones, self.window_sq.reshape(1, 1, -1), stride=self.hop_length)
        pad = self.n_fft // 2
        length = (num_frames - 1) * self.hop_length
        out = frames_out[:, 0, pad : pad + length]
        norm = envelope[:, 0, pad : pad + length]
        return out / torch.clamp(norm, min=1e-8)


class LogMelSpectrogram(nn.Module):
    """Natural-log mel spectrogram ``log(max(fb @ |STFT|**power, log_floor))``.

    Args:
        sample_rate: audio rate in Hz.
        n_fft, hop_length, win_length, center, pad_mode: STFT settings.
        n_mels: mel bands (Slaney scale and normalisation).
        f_min, f_max: band edges in Hz (f_max defaults to Nyquist).
        power: 2.0 for power, 1.0 for magnitude.
        log_floor: floor before the log.

    Returns (forward):
        [B, n_mels, N] from audio [B, T].

    Example:
        >>> LogMelSpectrogram(16000, 400, 160, 40)(torch.randn(1, 3200)).shape
        torch.Size([1, 40, 21])
    """

    def __init__(
        self,
        sample_rate: int,
        n_fft: int,
        hop_length: int,
        n_mels: int,
        win_length: int | None = None,
        f_min: float = 0.0,
        f_max: float | None = None,
        power: float = 2.0,
        log_floor: float = 1e-5,
        center: bool = True,
        pad_mode: str = "reflect",
    ) -> None:
        super().__init__()
        self.sample_rate, self.n_mels, self.power, self.log_floor = sample_rate, n_mels, power, log_floor
        self.stft = STFT(n_fft, hop_length, win_length, center, pad_mode)
        fb = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max)
        self.register_buffer("filterbank", torch.from_numpy(fb), persistent=False)

    @property
    def hop_length(self) -> int:
        return self.stft.hop_length

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        with torch.autocast(wav.device.type, enabled=False):  # features stay float32 under bf16 autocast
            return self._log_mel(wav.float())

    def _log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        real, imag = self.stft(wav)
        power_spec = real.pow(2) + imag.pow(2)
        magnitude = power_spec if self.power == 2.0 else power_spec.clamp_min(1e-12).pow(self.power / 2)
        mel = torch.matmul(self.filterbank, magnitude)
        return torch.log(torch.clamp(mel, min=self.log_floor))
