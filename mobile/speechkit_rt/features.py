"""Numpy STFT and log-mel features: the torch-free twin of ``speechkit.features``.

The on-device runtime computes model inputs with these functions, so they must equal the torch
modules that the models were trained with (tested to 1e-4 absolute on real speech). ``speechkit``
builds its torch filterbank and window from :func:`mel_filterbank` and :func:`padded_window`, so both
sides share one definition. Only numpy is imported here.

Conventions: ``padding="center"`` pads ``n_fft // 2`` samples on both sides (reflect or zeros), giving
``1 + T // hop_length`` frames; ``"same"`` pads ``(n_fft - hop_length) / 2`` (``T / hop_length`` frames
for T a multiple of the hop); ``"none"`` pads nothing; a periodic Hann window of ``win_length`` is zero-padded to ``n_fft``;
spectra are [F, N] with F = n_fft // 2 + 1 frequency bins and N frames.

Example:
    >>> import numpy as np
    >>> wav = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    >>> log_mel_spectrogram(wav, sample_rate=16000, n_fft=512, hop_length=160, n_mels=80).shape
    (80, 101)
"""

from __future__ import annotations

import numpy as np


def hz_to_mel(freq: np.ndarray | float) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above (as librosa's default)."""
    freq = np.asarray(freq, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    mels = freq / f_sp
    log_region = freq >= min_log_hz
    return np.where(
        log_region, min_log_hz / f_sp + np.log(np.maximum(freq, 1e-10) / min_log_hz) / logstep, mels
    )


def mel_to_hz(mels: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mels = np.asarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None
) -> np.ndarray:
    """Slaney-normalised triangular mel filterbank, float32 [n_mels, n_fft // 2 + 1].

    Each triangle has unit area (Slaney normalisation), so band energies do not depend on bandwidth.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2, got {f_min}, {f_max}, {sample_rate}")
    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_points = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    widths = np.diff(mel_points)
    ramps = mel_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_points[2:] - mel_points[:-2]))[:, None]
    return weights.astype(np.float32)


def padded_window(win_length: int, n_fft: int) -> np.ndarray:
    """Periodic Hann window of ``win_length`` zero-padded (centred) to ``n_fft``, float32 [n_fft]."""
    if not 0 < win_length <= n_fft:
        raise ValueError(f"need 0 < win_length <= n_fft, got {win_length}, {n_fft}")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_length) / win_length)
    left = (n_fft - win_length) // 2
    out = np.zeros(n_fft, dtype=np.float64)
    out[left : left + win_length] = window
    return out.astype(np.float32)


def dft_basis(n_fft: int, win_length: int | None = None, direction: str = "forward") -> np.ndarray:
    """Windowed real-DFT basis as a conv kernel, float32 [2F, 1, n_fft] (real rows, then imaginary rows).

    ``"forward"``: row f of the real half is ``cos(2 pi f n / n_fft) * w[n]``, of the imaginary half
    ``-sin(...) * w[n]`` (``conv1d`` with it is the STFT). ``"inverse"``: the inverse real DFT with
    Hermitian weights (DC and Nyquist once, other bins twice), divided by n_fft and windowed for the
    synthesis side of weighted overlap-add (``conv_transpose1d`` with it is the iSTFT before the
    envelope normalisation). ``w`` is :func:`padded_window` (float32 values).

    The angle is reduced exactly in integers (``f * n mod n_fft``), so only n_fft cosines and sines
    are evaluated; every later step is a correctly rounded float64 product or quotient. The result
    is therefore bit-identical wherever float64 cos/sin agree to the float32 rounding, which lets a
    bundle ship a recipe plus the sha256 of these bytes instead of the bytes (``speechkit_rt.derived``).

    Example:
        >>> dft_basis(8).shape, dft_basis(8, direction="inverse").dtype
        ((10, 1, 8), dtype('float32'))
    """
    if direction not in ("forward", "inverse"):
        raise ValueError(f"direction must be 'forward' or 'inverse', got {direction!r}")
    window = padded_window(win_length or n_fft, n_fft).astype(np.float64)
    num_bins = n_fft // 2 + 1
    phase = 2 * np.pi * np.arange(n_fft) / n_fft  # [n_fft]: the angle of each residue
    residue = (np.arange(num_bins)[:, None] * np.arange(n_fft)[None, :]) % n_fft  # [F, n_fft]
    cos, sin = np.cos(phase)[residue], np.sin(phase)[residue]
    if direction == "forward":
        real, imag = cos * window, -sin * window
    else:
        weights = np.full(num_bins, 2.0)
        weights[0] = 1.0
        if n_fft % 2 == 0:
            weights[-1] = 1.0
        real = weights[:, None] * cos / n_fft * window
        imag = -weights[:, None] * sin / n_fft * window
    return np.concatenate([real, imag], axis=0)[:, None, :].astype(np.float32)


def window_power(win_length: int, n_fft: int, power: int = 1) -> np.ndarray:
    """:func:`padded_window` raised to ``power`` (1 or 2) in float64, then float32 [n_fft].

    The squared window is the envelope of weighted overlap-add (the iSTFT's normaliser).
    """
    if power not in (1, 2):
        raise ValueError(f"power must be 1 or 2, got {power!r}")
    return (padded_window(win_length, n_fft).astype(np.float64) ** power).astype(np.float32)


def padding_amount(padding: str, n_fft: int, hop_length: int) -> int:
    """Samples padded on each side: "center" n_fft // 2, "same" (n_fft - hop) // 2, "none" 0."""
    if padding == "center":
        return n_fft // 2
    if padding == "same":
        if (n_fft - hop_length) % 2:
            raise ValueError(f"'same' padding needs n_fft - hop_length even, got {n_fft}, {hop_length}")
        return (n_fft - hop_length) // 2
    if padding == "none":
        return 0
    raise ValueError(f"padding must be 'center', 'same' or 'none', got {padding!r}")


def stft(
    wav: np.ndarray,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    padding: str = "center",
    pad_mode: str = "reflect",
) -> np.ndarray:
    """Short-time Fourier transform of [T] or [B, T] audio.

    Returns:
        complex128 spectrum [F, N] (or [B, F, N]), F = n_fft // 2 + 1, N = 1 + T // hop_length
        with "center" padding.
    """
    wav = np.asarray(wav, dtype=np.float64)
    squeeze = wav.ndim == 1
    wav = np.atleast_2d(wav)
    window = padded_window(win_length or n_fft, n_fft).astype(np.float64)
    pad = padding_amount(padding, n_fft, hop_length)
    if pad:
        if pad_mode == "reflect" and wav.shape[-1] <= pad:
            raise ValueError(f"reflect padding needs more than {pad} samples, got {wav.shape[-1]}")
        mode = "reflect" if pad_mode == "reflect" else "constant"
        wav = np.pad(wav, ((0, 0), (pad, pad)), mode=mode)
    if wav.shape[-1] < n_fft:
        raise ValueError(f"signal of {wav.shape[-1]} samples is shorter than n_fft={n_fft}")
    num_frames = 1 + (wav.shape[-1] - n_fft) // hop_length
    idx = np.arange(n_fft)[None, :] + hop_length * np.arange(num_frames)[:, None]
    frames = wav[:, idx] * window  # [B, N, n_fft]
    spec = np.fft.rfft(frames, axis=-1).transpose(0, 2, 1)  # [B, F, N]
    return spec[0] if squeeze else spec


def log_mel_spectrogram(
    wav: np.ndarray,
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
) -> np.ndarray:
    """Natural-log mel spectrogram, float32 [n_mels, N] (or [B, n_mels, N]).

    ``log(max(mel, log_floor))`` with mel = filterbank @ |STFT|**power.
    """
    spec = stft(wav, n_fft, hop_length, win_length, padding, pad_mode)
    magnitude = np.abs(spec) ** power
    mel = np.einsum(
        "mf,...fn->...mn",
        mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max).astype(np.float64),
        magnitude,
    )
    return np.log(np.maximum(mel, log_floor)).astype(np.float32)
