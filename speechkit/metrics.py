"""Objective audio quality metrics shared by training evaluation and the benchmarks.

PESQ (ITU-T P.862.2 wide-band, ``pesq`` package) and STOI (``pystoi``) come from the ``bench``
extra; they are imported when first used and a missing package is reported with the install line.

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    >>> log_mel_distance(x, x, 16000)
    0.0
"""

from __future__ import annotations

import numpy as np

from speechkit.errors import SpeechkitError
from speechkit_rt.features import log_mel_spectrogram


def _aligned(reference: np.ndarray, degraded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = min(len(reference), len(degraded))
    if n == 0:
        raise ValueError("cannot score empty audio")
    return np.asarray(reference[:n], dtype=np.float64), np.asarray(degraded[:n], dtype=np.float64)


def pesq_wb(reference: np.ndarray, degraded: np.ndarray, sample_rate: int = 16000) -> float:
    """Wide-band PESQ (MOS-LQO, 1.04-4.64) of 16 kHz audio; NaN when PESQ finds no utterance."""
    try:
        from pesq import NoUtterancesError, pesq
    except ImportError as err:
        raise SpeechkitError("PESQ needs the bench extra: pip install 'speechkit[bench]'") from err
    if sample_rate != 16000:
        raise ValueError("wide-band PESQ is defined at 16 kHz")
    ref, deg = _aligned(reference, degraded)
    try:
        return float(pesq(16000, ref, deg, "wb"))
    except NoUtterancesError:
        return float("nan")


def stoi(reference: np.ndarray, degraded: np.ndarray, sample_rate: int = 16000) -> float:
    """Short-time objective intelligibility (0-1), Taal et al. 2011."""
    try:
        from pystoi import stoi as _stoi
    except ImportError as err:
        raise SpeechkitError("STOI needs the bench extra: pip install 'speechkit[bench]'") from err
    ref, deg = _aligned(reference, degraded)
    return float(_stoi(ref, deg, sample_rate, extended=False))


def log_mel_distance(reference: np.ndarray, degraded: np.ndarray, sample_rate: int = 16000) -> float:
    """Mean absolute difference of natural-log 80-band mel magnitudes (n_fft 1024, hop 256)."""
    ref, deg = _aligned(reference, degraded)
    a = log_mel_spectrogram(ref, sample_rate, 1024, 256, 80, power=1.0)
    b = log_mel_spectrogram(deg, sample_rate, 1024, 256, 80, power=1.0)
    return round(float(np.abs(a - b).mean()), 6)
