"""Audio I/O and conditioning: load, save, mono mixdown, resampling, normalisation, framing.

Every task API in speechkit takes float32 mono numpy audio with its sample rate stated; this module
turns whatever a user hands over (a path in any format libsndfile reads, stereo, 44.1 kHz, int16)
into that, and refuses audio that cannot be used with an :class:`~speechkit.errors.AudioError`
that names the problem.

Example:
    >>> import numpy as np
    >>> wav = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000).astype(np.float32)
    >>> out = resample(wav, 8000, 16000)
    >>> out.shape, out.dtype
    ((16000,), dtype('float32'))
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from speechkit.errors import AudioError

logger = logging.getLogger(__name__)

MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 384000
SUPPORTED_WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}


def check_sample_rate(sample_rate: int) -> int:
    """Return ``sample_rate`` as int, or raise AudioError if it is not a plausible audio rate."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer, float)):
        raise AudioError(f"sample rate must be a number, got {type(sample_rate).__name__}")
    if float(sample_rate) != int(sample_rate):
        raise AudioError(f"sample rate must be a whole number of Hz, got {sample_rate}")
    rate = int(sample_rate)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"sample rate {rate} Hz is outside the supported range {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
        )
    return rate


def check_waveform(wav: np.ndarray, *, allow_silence: bool = True, name: str = "audio") -> np.ndarray:
    """Validate a waveform and return it as contiguous float32.

    Args:
        wav: samples, shape [T] (mono) or [T, C] (channels last, as soundfile returns them).
        allow_silence: when False, an all-zero signal raises.
        name: how the error message refers to the input.

    Returns:
        float32 array of the same shape.

    Raises:
        AudioError: empty, wrong rank, NaN/Inf, or (if not allowed) digital silence.
    """
    arr = np.asarray(wav)
    if arr.dtype.kind not in "fiu":
        raise AudioError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if arr.ndim not in (1, 2):
        raise AudioError(f"{name} must have shape [T] or [T, channels], got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.size == 0:
        raise AudioError(f"{name} is empty (0 samples)")
    if arr.dtype.kind in "iu":
        arr = _integer_pcm_to_float(arr)
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise AudioError(f"{name} contains {bad} NaN or Inf samples")
    if not allow_silence and not np.any(arr):
        raise AudioError(f"{name} is digital silence (all samples are zero)")
    return arr


def _integer_pcm_to_float(arr: np.ndarray) -> np.ndarray:
    info = np.iinfo(arr.dtype)
    if info.min == 0:  # unsigned PCM is offset binary
        midpoint = (info.max + 1) / 2
        return ((arr.astype(np.float64) - midpoint) / midpoint).astype(np.float32)
    return (arr.astype(np.float64) / -float(info.min)).astype(np.float32)


def to_mono(wav: np.ndarray) -> np.ndarray:
    """Mix [T, C] audio down to [T] by averaging channels; [T] is returned unchanged.

    Example:
        >>> to_mono(np.array([[1.0, 0.0], [0.5, 0.5]], dtype=np.float32)).tolist()
        [0.5, 0.5]
    """
    wav = check_waveform(wav)
    return wav if wav.ndim == 1 else wav.mean(axis=1, dtype=np.float32)


def resample(wav: np.ndarray, orig_sample_rate: int, target_sample_rate: int) -> np.ndarray:
    """Resample with libsoxr's very-high-quality polyphase filter (soxr ``VHQ``).

    VHQ is a linear-phase band-limited resampler with a steep anti-aliasing filter (pass band to
    about 0.91 x Nyquist, stop band below -170 dB), the same engine as ``sox rate -v``.

    Args:
        wav: [T] or [T, C] samples.
        orig_sample_rate: rate of ``wav`` in Hz.
        target_sample_rate: wanted rate in Hz.

    Returns:
        float32 array with round(T * target / orig) samples (same channel layout).
    """
    src = check_sample_rate(orig_sample_rate)
    dst = check_sample_rate(target_sample_rate)
    wav = check_waveform(wav)
    if src == dst:
        return wav
    out = soxr.resample(wav, src, dst, quality="VHQ")
    return np.ascontiguousarray(out, dtype=np.float32)


def load_audio(
    path: str | Path, target_sample_rate: int | None = None, mono: bool = True
) -> tuple[np.ndarray, int]:
    """Read an audio file (any format libsndfile reads: wav, flac, ogg/vorbis, opus, mp3 ...).

    Args:
        path: file to read.
        target_sample_rate: resample to this rate (soxr VHQ) when given.
        mono: mix channels down to one.

    Returns:
        (wav, sample_rate): float32 [T] when mono, else [T, C]; the rate of the returned samples.

    Raises:
        AudioError: missing or unreadable file, empty audio, NaN/Inf samples, absurd sample rate.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"audio file not found: {path}")
    if path.is_dir():
        raise AudioError(f"expected an audio file but got a directory: {path}")
    try:
        wav, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise AudioError(f"cannot read audio file {path}: {err}") from err
    sample_rate = check_sample_rate(sample_rate)
    wav = check_waveform(wav, name=f"audio file {path}")
    if mono:
        if wav.shape[1] > 1:
            logger.info("mixing %d channels of %s down to mono", wav.shape[1], path)
        wav = wav.mean(axis=1, dtype=np.float32)
    if target_sample_rate is not None and int(target_sample_rate) != sample_rate:
        logger.info("resampling %s from %d Hz to %d Hz", path, sample_rate, target_sample_rate)
        wav = resample(wav, sample_rate, target_sample_rate)
        sample_rate = int(target_sample_rate)
    return wav, sample_rate


def save_audio(path: str | Path, wav: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write audio as wav, flac or ogg (chosen by the file extension).

    Samples are clipped to [-1, 1] for integer subtypes. The parent folder is created.

    Args:
        path: output file; its suffix picks the container.
        wav: [T] or [T, C] float samples.
        sample_rate: rate in Hz.
        subtype: libsndfile subtype for wav/flac ("PCM_16", "PCM_24", "FLOAT"); ogg uses VORBIS.

    Returns:
        The path written.
    """
    path = Path(path)
    container = SUPPORTED_WRITE_FORMATS.get(path.suffix.lower())
    if container is None:
        raise AudioError(
            f"cannot write {path.suffix or 'extension-less'} files; use one of {sorted(SUPPORTED_WRITE_FORMATS)}"
        )
    sample_rate = check_sample_rate(sample_rate)
    wav = check_waveform(wav)
    if container == "OGG":
        subtype = "VORBIS"
    if subtype.startswith("PCM"):
        wav = np.clip(wav, -1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wav, sample_rate, format=container, subtype=subtype)
    return path


def peak_normalize(wav: np.ndarray, peak: float = 0.95) -> np.ndarray:
    """Scale so the largest absolute sample equals ``peak``; silence is returned unchanged.

    Example:
        >>> peak_normalize(np.array([0.1, -0.2], dtype=np.float32), peak=1.0).tolist()
        [0.5, -1.0]
    """
    wav = check_waveform(wav)
    top = float(np.max(np.abs(wav)))
    if top == 0.0:
        return wav
    return (wav * (peak / top)).astype(np.float32)


def integrated_loudness(wav: np.ndarray, sample_rate: int) -> float:
    """Gated loudness in LUFS after ITU-R BS.1770-4 (K-weighting, 400 ms blocks, -70/-10 LU gates).

    Returns ``-inf`` for silence or audio shorter than one 400 ms block.
    """
    from scipy.signal import lfilter

    sample_rate = check_sample_rate(sample_rate)
    x = to_mono(wav).astype(np.float64)
    for b, a in _k_weighting_filters(sample_rate):
        x = lfilter(b, a, x)
    block, step = int(0.4 * sample_rate), int(0.1 * sample_rate)
    if len(x) < block:
        return float("-inf")
    starts = np.arange(0, len(x) - block + 1, step)
    power = np.array([np.mean(x[s : s + block] ** 2) for s in starts])
    loudness = -0.691 + 10 * np.log10(np.maximum(power, 1e-12))
    gated = power[loudness > -70.0]
    if gated.size == 0:
        return float("-inf")
    relative = -0.691 + 10 * np.log10(gated.mean()) - 10.0
    gated = power[(loudness > -70.0) & (loudness > relative)]
    return float(-0.691 + 10 * np.log10(gated.mean()))


def _k_weighting_filters(sample_rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """BS.1770 pre-filter (high shelf) and RLB high-pass, designed for any rate by bilinear transform."""
    # Shelf: f0 1681.97 Hz, gain 3.99984 dB, Q 0.7072; high-pass: f0 38.135 Hz, Q 0.5003 (pyloudnorm values).
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / sample_rate)
    vh = 10 ** (gain_db / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf_b = np.array(
        [(vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0]
    )
    shelf_a = np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / sample_rate)
    denom = 1 + k / q + k * k
    hp_b = np.array([1.0, -2.0, 1.0])
    hp_a = np.array([1.0, 2 * (k * k - 1) / denom, (1 - k / q + k * k) / denom])
    return [(shelf_b, shelf_a), (hp_b, hp_a)]


def loudness_normalize(
    wav: np.ndarray, sample_rate: int, target_lufs: float = -23.0, max_peak: float = 0.999
) -> np.ndarray:
    """Scale to ``target_lufs`` integrated loudness (BS.1770), limiting the peak to ``max_peak``.

    Audio too short or too quiet to measure is peak-normalised instead.
    """
    wav = check_waveform(wav)
    loudness = integrated_loudness(wav, sample_rate)
    if not math.isfinite(loudness):
        return peak_normalize(wav, max_peak) if np.any(wav) else wav
    gain = 10 ** ((target_lufs - loudness) / 20)
    top = float(np.max(np.abs(wav))) * gain
    if top > max_peak:
        gain *= max_peak / top
    return (wav * gain).astype(np.float32)


def frame_signal(wav: np.ndarray, frame_length: int, hop_length: int | None = None) -> np.ndarray:
    """Cut [T] audio into frames [N, frame_length] (zero-padding the last one) for block processing.

    Example:
        >>> frame_signal(np.arange(5, dtype=np.float32), 2).tolist()
        [[0.0, 1.0], [2.0, 3.0], [4.0, 0.0]]
    """
    hop_length = hop_length or frame_length
    if frame_length <= 0 or hop_length <= 0:
        raise AudioError("frame_length and hop_length must be positive")
    wav = to_mono(wav)
    num_frames = max(1, 1 + math.ceil(max(0, len(wav) - frame_length) / hop_length))
    padded = np.zeros((num_frames - 1) * hop_length + frame_length, dtype=np.float32)
    padded[: len(wav)] = wav
    idx = np.arange(frame_length)[None, :] + hop_length * np.arange(num_frames)[:, None]
    return padded[idx]


def iter_chunks(wav: np.ndarray, chunk_length: int) -> Iterator[np.ndarray]:
    """Yield consecutive chunks of [T] audio, as a live stream would deliver them (last may be short)."""
    if chunk_length <= 0:
        raise AudioError("chunk_length must be positive")
    wav = to_mono(wav)
    for start in range(0, len(wav), chunk_length):
        yield wav[start : start + chunk_length]


def prepare_input(
    wav: np.ndarray, sample_rate: int, target_sample_rate: int, name: str = "audio"
) -> np.ndarray:
    """Bring user audio to what a model expects: finite float32 mono at ``target_sample_rate``.

    Stereo is mixed down and other rates are resampled (each logged); silence and empties raise.
    """
    sample_rate = check_sample_rate(sample_rate)
    wav = check_waveform(wav, allow_silence=False, name=name)
    if wav.ndim == 2:
        if wav.shape[1] > 8 and wav.shape[0] <= 8:
            raise AudioError(f"{name} looks channels-first {wav.shape}; pass [T, channels]")
        logger.info("mixing %d channels of %s down to mono", wav.shape[1], name)
        wav = wav.mean(axis=1, dtype=np.float32)
    if sample_rate != target_sample_rate:
        logger.info("resampling %s from %d Hz to %d Hz", name, sample_rate, target_sample_rate)
        wav = resample(wav, sample_rate, target_sample_rate)
    return wav
