"""STFT, inverse STFT and log-mel features as torch modules that export to ONNX.

Training uses ``torch.stft`` / ``torch.istft`` (FFT, fast). Under ``torch.onnx.export`` (or when
``use_dft_matmul=True``) the same transforms run as convolutions with fixed DFT bases, which every
runtime supports (ONNX Runtime, Core ML, onnxruntime-web) and which the numpy twin in
``speechkit_rt.features`` reproduces to 1e-4. Window and mel filterbank come from that twin, so the
torch and numpy sides share one definition.

Shapes: audio [B, T]; spectra [B, F, N] with F = n_fft // 2 + 1 bins and N = 1 + T // hop_length
frames (``padding="center"``); log-mel [B, n_mels, N].

Example:
    >>> import torch
    >>> mel = LogMelSpectrogram(sample_rate=16000, n_fft=512, hop_length=160, n_mels=80)
    >>> mel(torch.randn(2, 16000)).shape
    torch.Size([2, 80, 101])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from speechkit_rt.features import dft_basis, mel_filterbank, padded_window, padding_amount, window_power


def _exporting() -> bool:
    return torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()


class STFT(nn.Module):
    """Short-time Fourier transform returning real and imaginary parts (ONNX has no complex type).

    Args:
        n_fft: FFT size.
        hop_length: frame shift in samples.
        win_length: periodic Hann window length (zero-padded to n_fft); defaults to n_fft.
        padding: "center" pads n_fft // 2 per side (frame n centred on sample n * hop_length,
            N = 1 + T // hop_length); "same" pads (n_fft - hop_length) / 2 per side (N = T / hop_length
            for T a multiple of the hop, as Vocos); "none" pads nothing.
        pad_mode: "reflect" or "constant" (zeros) for the padding.
        use_dft_matmul: always use the convolution path (it is used automatically under export).
        double_precision: run the FFT in float64 (features that must match the numpy twin to 1e-4);
            training losses turn it off for speed.

    Returns (forward):
        (real, imag), each [B, F, N].

    Example:
        >>> real, imag = STFT(n_fft=64, hop_length=16)(torch.randn(1, 160))
        >>> real.shape, STFT(64, 16, padding="same")(torch.randn(1, 160))[0].shape
        (torch.Size([1, 33, 11]), torch.Size([1, 33, 10]))
    """

    def __init__(
        self,
        n_fft: int,
        hop_length: int,
        win_length: int | None = None,
        padding: str = "center",
        pad_mode: str = "reflect",
        use_dft_matmul: bool = False,
        double_precision: bool = True,
    ) -> None:
        super().__init__()
        self.double_precision = double_precision
        if pad_mode not in ("reflect", "constant"):
            raise ValueError(f"pad_mode must be 'reflect' or 'constant', got {pad_mode!r}")
        self.n_fft, self.hop_length = n_fft, hop_length
        self.win_length = win_length or n_fft
        self.padding, self.pad_mode, self.use_dft_matmul = padding, pad_mode, use_dft_matmul
        self.pad = padding_amount(padding, n_fft, hop_length)
        window = padded_window(self.win_length, n_fft)
        self.register_buffer("window", torch.from_numpy(window), persistent=False)
        # [2F, 1, n_fft]; the runtime rebuilds these exact bytes from a recipe (speechkit_rt.derived).
        basis = dft_basis(n_fft, self.win_length, "forward")
        self.register_buffer("basis", torch.from_numpy(basis), persistent=False)

    @property
    def num_bins(self) -> int:
        return self.n_fft // 2 + 1

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` of audio."""
        return 1 + (num_samples + 2 * self.pad - self.n_fft) // self.hop_length

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if wav.dim() != 2:
            raise ValueError(f"STFT expects audio [B, T], got shape {tuple(wav.shape)}")
        x = wav.float()
        if self.pad:
            x = F.pad(x.unsqueeze(1), (self.pad, self.pad), mode=self.pad_mode).squeeze(1)
        if self.use_dft_matmul or _exporting():
            out = F.conv1d(x.unsqueeze(1), self.basis, stride=self.hop_length)  # [B, 2F, N]
            return out[:, : self.num_bins], out[:, self.num_bins :]
        # float64 FFT: low-energy bins keep their relative precision next to loud ones, so log features
        # match the numpy twin to 1e-4 (float32 gives ~1.5e-4 on band-limited speech); costs ~1.7x a
        # float32 FFT, which is small next to any model.
        dtype = torch.float64 if self.double_precision else torch.float32
        spec = torch.stft(
            x.to(dtype),
            self.n_fft,
            self.hop_length,
            win_length=self.n_fft,  # the window is already zero-padded to n_fft
            window=self.window.to(dtype),
            center=False,
            return_complex=True,
        )
        return spec.real.float(), spec.imag.float()


class ISTFT(nn.Module):
    """Inverse STFT by weighted overlap-add: the inverse of :class:`STFT` with the same padding.

    Used by frame-rate codecs and vocoders as a cheap waveform head (Vocos, Siuzdak 2023): the
    network predicts magnitude and phase per frame and this module makes samples. With "same"
    padding N frames give exactly N * hop_length samples.

    Args:
        n_fft, hop_length, win_length, padding: as in :class:`STFT` ("center" or "same").
        use_dft_matmul: always use the transposed-convolution path (automatic under export).

    Returns (forward):
        audio [B, (N - 1) * hop_length] ("center") or [B, N * hop_length] ("same") from real and
        imaginary parts [B, F, N].

    Example:
        >>> stft, istft = STFT(256, 64), ISTFT(256, 64)
        >>> wav = torch.randn(1, 64 * 50)
        >>> bool(torch.allclose(istft(*stft(wav)), wav, atol=1e-4))
        True
    """

    def __init__(
        self,
        n_fft: int,
        hop_length: int,
        win_length: int | None = None,
        padding: str = "center",
        use_dft_matmul: bool = False,
    ) -> None:
        super().__init__()
        if padding not in ("center", "same"):
            raise ValueError(f"ISTFT padding must be 'center' or 'same', got {padding!r}")
        self.n_fft, self.hop_length = n_fft, hop_length
        self.win_length = win_length or n_fft
        self.padding, self.use_dft_matmul = padding, use_dft_matmul
        self.pad = padding_amount(padding, n_fft, hop_length)
        window = padded_window(self.win_length, n_fft)
        self.register_buffer("window", torch.from_numpy(window), persistent=False)
        # Inverse real DFT basis [2F, 1, n_fft] (Hermitian weights, windowed for the synthesis side of
        # weighted overlap-add) and the squared window (its envelope); the runtime rebuilds both.
        basis = dft_basis(n_fft, self.win_length, "inverse")
        self.register_buffer("basis", torch.from_numpy(basis), persistent=False)
        window_sq = window_power(self.win_length, n_fft, power=2)
        self.register_buffer("window_sq", torch.from_numpy(window_sq), persistent=False)

    def output_length(self, num_frames: int) -> int:
        return (
            (num_frames - 1) * self.hop_length if self.padding == "center" else num_frames * self.hop_length
        )

    def forward(self, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
        real, imag = real.float(), imag.float()
        num_frames = real.shape[-1]
        if self.use_dft_matmul or _exporting():
            frames_out = F.conv_transpose1d(
                torch.cat([real, imag], dim=1), self.basis, stride=self.hop_length
            )
        else:
            # irfft + fold: an FFT per frame instead of a dense [2F x n_fft] product.
            frames = torch.fft.irfft(torch.complex(real, imag), n=self.n_fft, dim=1) * self.window[:, None]
            frames_out = F.fold(
                frames,
                output_size=(1, (num_frames - 1) * self.hop_length + self.n_fft),
                kernel_size=(1, self.n_fft),
                stride=(1, self.hop_length),
            )[:, 0]  # [B, 1, L]
        # Overlap-add of the squared window over N frames: the normaliser of weighted OLA.
        ones = torch.ones(1, 1, num_frames, dtype=real.dtype, device=real.device)
        envelope = F.conv_transpose1d(ones, self.window_sq.reshape(1, 1, -1), stride=self.hop_length)
        length = self.output_length(num_frames)
        out = frames_out[:, 0, self.pad : self.pad + length]
        norm = envelope[:, 0, self.pad : self.pad + length]
        return out / torch.clamp(norm, min=1e-8)


class LogMelSpectrogram(nn.Module):
    """Natural-log mel spectrogram ``log(max(fb @ |STFT|**power, log_floor))``.

    Args:
        sample_rate: audio rate in Hz.
        n_fft, hop_length, win_length, padding, pad_mode, double_precision: STFT settings.
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
        padding: str = "center",
        pad_mode: str = "reflect",
        double_precision: bool = True,
    ) -> None:
        super().__init__()
        self.sample_rate, self.n_mels, self.power, self.log_floor = sample_rate, n_mels, power, log_floor
        self.stft = STFT(n_fft, hop_length, win_length, padding, pad_mode, double_precision=double_precision)
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


def griffin_lim(
    magnitude: torch.Tensor,
    stft: STFT,
    istft: ISTFT,
    num_iters: int = 32,
    momentum: float = 0.99,
    seed: int = 0,
) -> torch.Tensor:
    """Phase reconstruction from a magnitude spectrogram (fast Griffin-Lim, Perraudin et al. 2013).

    Args:
        magnitude: [B, F, N] linear magnitudes.
        stft, istft: the analysis/synthesis pair that defines the spectrogram.
        num_iters: projections; momentum: the "fast" acceleration (0 gives classic Griffin-Lim).
        seed: the random initial phase is drawn from this seed, so output is deterministic.

    Returns:
        audio [B, (N - 1) * hop_length].
    """
    generator = torch.Generator().manual_seed(seed)
    angle = torch.rand(magnitude.shape, generator=generator) * 2 * torch.pi
    real, imag = magnitude * torch.cos(angle), magnitude * torch.sin(angle)
    prev_real, prev_imag = torch.zeros_like(real), torch.zeros_like(imag)
    for _ in range(num_iters):
        wav = istft(real, imag)
        est_real, est_imag = stft(wav)
        acc_real = est_real + momentum * (est_real - prev_real)
        acc_imag = est_imag + momentum * (est_imag - prev_imag)
        prev_real, prev_imag = est_real, est_imag
        norm = torch.sqrt(acc_real**2 + acc_imag**2).clamp_min(1e-8)
        real, imag = magnitude * acc_real / norm, magnitude * acc_imag / norm
    return istft(real, imag)
