"""Waveform augmentations the training recipes apply on the fly: additive noise and reverberation.

Example:
    >>> rng = np.random.default_rng(0)
    >>> speech, noise = rng.standard_normal(16000), rng.standard_normal(8000)
    >>> noisy = add_noise(speech, noise, snr_db=10.0)
    >>> round(measured_snr_db(speech, noisy), 3)
    10.0
"""

from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve

from speechkit.audio import check_waveform
from speechkit.errors import AudioError


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def fit_length(noise: np.ndarray, length: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Tile or crop ``noise`` [T'] to ``length`` samples, from a random offset when ``rng`` is given.

    Example:
        >>> fit_length(np.arange(3.0), 7).tolist()
        [0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0]
    """
    offset = int(rng.integers(len(noise))) if rng is not None else 0
    reps = -(-(offset + length) // len(noise))
    return np.tile(noise, reps)[offset : offset + length]


def add_noise(
    wav: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Mix ``noise`` into ``wav`` at exactly ``snr_db`` (power ratio over the whole signal).

    Args:
        wav: clean signal [T].
        noise: noise [T'], tiled or cropped to T (random offset when ``rng`` is given).
        snr_db: wanted 10 log10(P_wav / P_noise).
        rng: numpy Generator for the crop offset (None: start at 0).

    Returns:
        float32 [T] = wav + gain * noise. Not renormalised: low SNRs may exceed [-1, 1].

    Raises:
        AudioError: silent or non-finite ``wav`` or ``noise``.
    """
    wav = check_waveform(wav, allow_silence=False, name="speech")
    noise = check_waveform(noise, allow_silence=False, name="noise")
    if wav.ndim != 1 or noise.ndim != 1:
        raise AudioError("add_noise takes mono [T] arrays")
    noise = fit_length(noise, len(wav), rng).astype(np.float64)
    noise_power = _power(noise)
    if noise_power == 0.0:
        raise AudioError("the noise segment picked is silent")
    gain = np.sqrt(_power(wav) / (noise_power * 10 ** (snr_db / 10)))
    return (wav + gain * noise).astype(np.float32)


def measured_snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    """10 log10(P_clean / P_(noisy - clean)): the SNR a mixture actually has."""
    residual = np.asarray(noisy, dtype=np.float64) - np.asarray(clean, dtype=np.float64)
    return 10 * float(np.log10(_power(clean) / max(_power(residual), 1e-30)))


def apply_rir(wav: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Reverberate ``wav`` with a room impulse response, keeping its length, timing and level.

    The output is aligned on the RIR's direct path (its largest peak), so speech does not shift
    in time, cut to the input length, and scaled back to the input's RMS.

    Args:
        wav: dry signal [T].
        rir: impulse response [L].

    Returns:
        float32 [T].

    Example:
        >>> rir = np.zeros(100); rir[10] = 1.0
        >>> x = np.random.default_rng(0).standard_normal(50).astype(np.float32)
        >>> bool(np.allclose(apply_rir(x, rir), x, atol=1e-5))
        True
    """
    wav = check_waveform(wav, allow_silence=False, name="speech")
    rir = check_waveform(rir, allow_silence=False, name="room impulse response")
    if wav.ndim != 1 or rir.ndim != 1:
        raise AudioError("apply_rir takes mono [T] arrays")
    direct = int(np.argmax(np.abs(rir)))
    wet = fftconvolve(wav.astype(np.float64), rir.astype(np.float64))[direct : direct + len(wav)]
    wet_power = _power(wet)
    if wet_power == 0.0:
        return wav.copy()
    return (wet * np.sqrt(_power(wav) / wet_power)).astype(np.float32)
