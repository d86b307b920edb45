"""WAV files, input checks and resampling in numpy: the torch-free twin of ``speechkit.audio``.

The runtime cannot use libsndfile or libsoxr, so this module holds a small RIFF/WAVE reader and
writer (PCM 8/16/24/32-bit and IEEE float 32/64-bit, any channel count, plain or
``WAVE_FORMAT_EXTENSIBLE`` headers) and a windowed-sinc polyphase resampler. :func:`check_waveform`
and :func:`prepare_input` repeat ``speechkit.audio``'s checks with the same messages, so an app sees
the same refusal on device as in the SDK.

Sample scaling follows libsndfile (and so ``speechkit.audio.load_audio``): an n-bit PCM sample ``s``
reads as ``s / 2**(n - 1)``; writing rounds ``x * 2**(n - 1)`` and clips to the integer range, so
reading a file and writing it back gives the same bytes.

Example:
    >>> import tempfile
    >>> wav = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000).astype(np.float32)
    >>> path = write_wav(tempfile.mkdtemp() + "/tone.wav", wav, 8000)
    >>> back, rate = read_wav(path)
    >>> back.shape, rate, float(np.max(np.abs(back - wav))) < 1e-4
    ((8000,), 8000, True)
    >>> resample(wav, 8000, 16000).shape
    (16000,)
"""

from __future__ import annotations

import logging
import math
import os
import struct
from pathlib import Path

import numpy as np

from speechkit_rt.errors import AudioError

logger = logging.getLogger(__name__)

MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 384000
SUBTYPES = {"PCM_16": (1, 16), "PCM_24": (1, 24), "PCM_32": (1, 32), "FLOAT": (3, 32)}

_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
_FORMAT_NAMES = {0x0002: "MS ADPCM", 0x0006: "A-law", 0x0007: "mu-law", 0x0011: "IMA ADPCM", 0x0055: "MP3"}
# KSDATAFORMAT_SUBTYPE_* GUIDs are the format tag followed by these 14 bytes.
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_MAX_DATA_BYTES = 0xFFFFFFFF - 72  # RIFF sizes are 32-bit


def check_sample_rate(sample_rate: int) -> int:
    """Return ``sample_rate`` as int, or raise AudioError if it is not a plausible audio rate.

    Example:
        >>> check_sample_rate(16000.0)
        16000
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer, float)):
        raise AudioError(f"sample rate must be a number, got {type(sample_rate).__name__}")
    if not math.isfinite(float(sample_rate)) or float(sample_rate) != int(sample_rate):
        raise AudioError(f"sample rate must be a whole number of Hz, got {sample_rate}")
    rate = int(sample_rate)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"sample rate {rate} Hz is outside the supported range {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
        )
    return rate


def check_waveform(wav: np.ndarray, *, allow_silence: bool = True, name: str = "audio") -> np.ndarray:
    """Validate a waveform and return it as contiguous float32 (integer PCM scaled to [-1, 1)).

    Args:
        wav: samples [T] (mono) or [T, C] (channels last).
        allow_silence: when False, an all-zero signal raises.
        name: how the error message refers to the input.

    Returns:
        float32 array of the same shape.

    Raises:
        AudioError: not numbers, wrong rank, empty, NaN/Inf, or (if not allowed) digital silence.

    Example:
        >>> check_waveform(np.array([0, 16384], dtype=np.int16)).tolist()
        [0.0, 0.5]
    """
    arr = np.asarray(wav)
    if arr.dtype.kind not in "fiu":
        raise AudioError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if arr.ndim not in (1, 2):
        raise AudioError(f"{name} must have shape [T] or [T, channels], got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.size == 0:
        raise AudioError(f"{name} is empty (0 samples)")
    if arr.dtype.kind in "iu":
        info = np.iinfo(arr.dtype)
        if info.min == 0:  # unsigned PCM is offset binary
            midpoint = (info.max + 1) / 2
            arr = (arr.astype(np.float64) - midpoint) / midpoint
        else:
            arr = arr.astype(np.float64) / -float(info.min)
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise AudioError(f"{name} contains {bad} NaN or Inf samples")
    if not allow_silence and not np.any(arr):
        raise AudioError(f"{name} is digital silence (all samples are zero)")
    return arr


def prepare_input(
    wav: np.ndarray, sample_rate: int, target_sample_rate: int, name: str = "audio"
) -> np.ndarray:
    """Bring user audio to what a model expects: finite float32 mono [T] at ``target_sample_rate``.

    As ``speechkit.audio.prepare_input``: channels are averaged and other rates resampled (each
    logged at INFO); empty, NaN/Inf and all-zero audio raise :class:`AudioError`.

    Example:
        >>> prepare_input(np.ones((4, 2), dtype=np.float32), 16000, 16000).shape
        (4,)
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


# ---- resampling ------------------------------------------------------------------------------------

MAX_TABLE_PHASES = 4096  # above this many filter phases the taps are computed per output instead


def resample(
    wav: np.ndarray,
    orig_sample_rate: int,
    target_sample_rate: int,
    *,
    passband: float = 0.9,
    stopband_db: float = 100.0,
) -> np.ndarray:
    """Band-limited rate conversion with a Kaiser-windowed sinc, evaluated polyphase.

    For ``target / orig = up / down`` (reduced), output sample n lies at input time ``n * down / up``
    and is the dot product of the input around it with the filter phase ``(n * down) % up``. The
    low-pass keeps ``passband`` of the lower Nyquist frequency flat and is ``stopband_db`` down from
    that Nyquist frequency on (Kaiser's design formulas, Oppenheim & Schafer 3rd ed. sec. 7.6), so
    nothing aliases into the output band. The filter is linear phase and centred: no delay.

    Args:
        wav: [T] or [T, C] samples.
        orig_sample_rate: rate of ``wav`` in Hz.
        target_sample_rate: wanted rate in Hz.
        passband: flat band as a fraction of the lower Nyquist frequency, in (0, 1).
        stopband_db: attenuation at and above the lower Nyquist frequency.

    Returns:
        float32 [round(T * target / orig)] or [..., C] (the length soxr gives).

    Example:
        >>> resample(np.ones(441, dtype=np.float32), 44100, 16000).shape
        (160,)
    """
    src, dst = check_sample_rate(orig_sample_rate), check_sample_rate(target_sample_rate)
    wav = check_waveform(wav)
    if src == dst:
        return wav
    if not 0 < passband < 1 or stopband_db < 21:
        raise AudioError(f"need 0 < passband < 1 and stopband_db >= 21, got {passband}, {stopband_db}")
    g = math.gcd(src, dst)
    up, down = dst // g, src // g
    num_out = (2 * len(wav) * up + down) // (2 * down)  # round half up, as soxr
    ratio = min(1.0, up / down)
    cutoff = 0.25 * ratio * (1 + passband)  # cycles per input sample, mid-transition
    width = 0.5 * ratio * (1 - passband)  # transition width, cycles per input sample
    half = (stopband_db - 7.95) / (2.285 * 2 * math.pi * width) / 2  # Kaiser length / 2
    beta = _kaiser_beta(stopband_db)
    taps = 2 * math.ceil(half)
    x = wav if wav.ndim == 2 else wav[:, None]
    padded = np.pad(x, ((taps, taps + 1), (0, 0)))
    table = None
    if up <= MAX_TABLE_PHASES:
        table = _sinc_taps(np.arange(up)[:, None] / up, taps, cutoff, half, beta)  # [up, taps]
    out = np.empty((num_out, x.shape[1]), dtype=np.float32)
    block = max(1, (1 << 22) // (taps * x.shape[1]))  # bounds the gathered [block, taps, C] array
    offsets = np.arange(taps) - taps // 2 + 1 + taps
    for start in range(0, num_out, block):
        n = np.arange(start, min(start + block, num_out), dtype=np.int64)
        position, phase = np.divmod(n * down, up)
        weights = (
            table[phase] if table is not None else _sinc_taps(phase[:, None] / up, taps, cutoff, half, beta)
        )
        window = padded[position[:, None] + offsets]  # [block, taps, C]
        out[start : start + len(n)] = np.einsum("nj,njc->nc", weights, window)
    return out if wav.ndim == 2 else out[:, 0]


def _kaiser_beta(attenuation_db: float) -> float:
    if attenuation_db > 50:
        return 0.1102 * (attenuation_db - 8.7)
    return 0.5842 * (attenuation_db - 21) ** 0.4 + 0.07886 * (attenuation_db - 21)


def _sinc_taps(fraction: np.ndarray, taps: int, cutoff: float, half: float, beta: float) -> np.ndarray:
    """Filter taps [P, taps] for output positions ``fraction`` [P, 1] of an input sample past a tap."""
    t = np.arange(taps)[None, :] - taps // 2 + 1 - fraction  # tap time minus output time, in samples
    u = np.clip(t / half, -1.0, 1.0)
    window = np.where(np.abs(t) <= half, np.i0(beta * np.sqrt(1 - u * u)) / np.i0(beta), 0.0)
    return (2 * cutoff * np.sinc(2 * cutoff * t) * window).astype(np.float32)


# ---- WAV files -------------------------------------------------------------------------------------


def read_wav(
    path: str | os.PathLike, *, mono: bool = True, target_sample_rate: int | None = None
) -> tuple[np.ndarray, int]:
    """Read a WAV file (PCM 8/16/24/32-bit or float 32/64-bit, plain or extensible header).

    Args:
        path: the .wav file.
        mono: average the channels into one.
        target_sample_rate: resample to this rate when given.

    Returns:
        (wav, sample_rate): float32 [T] when ``mono``, else [T, C]; the rate of the returned samples.

    Raises:
        AudioError: missing file, not RIFF/WAVE, an encoding other than PCM/float, a malformed
            header, no samples, NaN/Inf samples, an absurd sample rate.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"audio file not found: {path}")
    if path.is_dir():
        raise AudioError(f"expected an audio file but got a directory: {path}")
    try:
        with open(path, "rb") as handle:
            fmt, data = _read_chunks(handle, path)
    except OSError as err:
        raise AudioError(f"cannot read audio file {path}: {err}") from err
    tag, channels, sample_rate, bits = fmt
    wav = _decode_samples(data, tag, channels, bits).reshape(-1, channels)
    sample_rate = check_sample_rate(sample_rate)
    wav = check_waveform(wav, name=f"audio file {path}")
    if mono:
        if channels > 1:
            logger.info("mixing %d channels of %s down to mono", channels, path)
        wav = wav.mean(axis=1, dtype=np.float32)
    if target_sample_rate is not None and int(target_sample_rate) != sample_rate:
        logger.info("resampling %s from %d Hz to %d Hz", path, sample_rate, target_sample_rate)
        wav = resample(wav, sample_rate, target_sample_rate)
        sample_rate = int(target_sample_rate)
    return wav, sample_rate


def _read_chunks(handle, path: Path) -> tuple[tuple[int, int, int, int], bytes]:
    """Walk the RIFF chunks; returns ((format tag, channels, sample rate, bits), data bytes)."""
    head = handle.read(12)
    if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RF64"):
        raise AudioError(
            f"cannot read audio file {path}: not a RIFF/WAVE file (this runtime reads .wav only)"
        )
    if head[:4] == b"RF64":
        raise AudioError(f"cannot read audio file {path}: RF64 (over 4 GiB) WAV is not supported")
    fmt = None
    while True:
        chunk = handle.read(8)
        if len(chunk) < 8:
            raise AudioError(f"cannot read audio file {path}: no {'fmt ' if fmt is None else 'data'} chunk")
        chunk_id, size = struct.unpack("<4sI", chunk)
        if chunk_id == b"data":
            if fmt is None:
                raise AudioError(f"cannot read audio file {path}: data chunk before the fmt chunk")
            data = handle.read(size)  # a streaming writer may leave size 0xFFFFFFFF: take what is there
            if len(data) < size and size != 0xFFFFFFFF:
                logger.warning("%s: data chunk truncated (%d of %d bytes)", path, len(data), size)
            block = fmt[1] * fmt[3] // 8
            if len(data) % block:
                logger.warning("%s: dropping a partial sample frame at the end", path)
                data = data[: len(data) - len(data) % block]
            return fmt, data
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(handle.read(size), path)
            handle.seek(size & 1, os.SEEK_CUR)  # chunks are padded to an even size
        else:
            handle.seek(size + (size & 1), os.SEEK_CUR)


def _parse_fmt(body: bytes, path: Path) -> tuple[int, int, int, int]:
    if len(body) < 16:
        raise AudioError(f"cannot read audio file {path}: fmt chunk of {len(body)} bytes is too short")
    tag, channels, sample_rate, _, block_align, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == _EXTENSIBLE:
        if len(body) < 40 or body[26:40] != _GUID_TAIL:
            raise AudioError(f"cannot read audio file {path}: malformed WAVE_FORMAT_EXTENSIBLE header")
        tag = struct.unpack("<H", body[24:26])[0]
    supported = (tag == _PCM and bits in (8, 16, 24, 32)) or (tag == _FLOAT and bits in (32, 64))
    if not supported:
        encoding = _FORMAT_NAMES.get(tag, f"format tag 0x{tag:04x}")
        raise AudioError(
            f"cannot read audio file {path}: {encoding} with {bits} bits per sample is not supported; "
            "convert it to PCM 16/24/32-bit or float WAV"
        )
    if channels < 1 or block_align != channels * bits // 8:
        raise AudioError(
            f"cannot read audio file {path}: inconsistent header ({channels} channels, {bits} bits, "
            f"block align {block_align})"
        )
    return tag, channels, sample_rate, bits


def _decode_samples(data: bytes, tag: int, channels: int, bits: int) -> np.ndarray:
    """Raw little-endian samples -> float32 (or the integer dtype that check_waveform scales)."""
    if tag == _FLOAT:
        return np.frombuffer(data, dtype="<f4" if bits == 32 else "<f8").astype(np.float32)
    if bits == 8:
        return np.frombuffer(data, dtype=np.uint8)  # offset binary
    if bits == 24:
        raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        # Little-endian bytes into the top 24 bits, then an arithmetic shift sign-extends.
        values = ((raw[:, 0] << 8) | (raw[:, 1] << 16) | (raw[:, 2] << 24)) >> 8
    else:
        values = np.frombuffer(data, dtype="<i2" if bits == 16 else "<i4")
    return (values.astype(np.float64) / 2.0 ** (bits - 1)).astype(np.float32)


def write_wav(path: str | os.PathLike, wav: np.ndarray, sample_rate: int, *, subtype: str = "PCM_16") -> Path:
    """Write a WAV file; the parent folder is created.

    Args:
        path: output file.
        wav: [T] or [T, C] float samples (clipped to [-1, 1) for PCM subtypes).
        sample_rate: rate in Hz.
        subtype: "PCM_16", "PCM_24", "PCM_32" or "FLOAT" (32-bit IEEE).

    Returns:
        The path written.

    Raises:
        AudioError: a bad waveform, rate or subtype, or more than 4 GiB of samples.
    """
    if subtype not in SUBTYPES:
        raise AudioError(f"cannot write WAV subtype {subtype!r}; use one of {sorted(SUBTYPES)}")
    sample_rate = check_sample_rate(sample_rate)
    wav = check_waveform(wav)
    frames = wav if wav.ndim == 2 else wav[:, None]
    tag, bits = SUBTYPES[subtype]
    data = _encode_samples(frames, tag, bits)
    if len(data) > _MAX_DATA_BYTES:
        raise AudioError(f"{len(data)} bytes of samples do not fit a WAV file (4 GiB limit)")
    channels, block = frames.shape[1], frames.shape[1] * bits // 8
    # More than 2 channels need WAVE_FORMAT_EXTENSIBLE (channel mask 0: no speaker positions).
    extensible = channels > 2
    fmt = struct.pack(
        "<HHIIHH", _EXTENSIBLE if extensible else tag, channels, sample_rate, sample_rate * block, block, bits
    )
    if extensible:
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + _GUID_TAIL
    elif tag == _FLOAT:
        fmt += struct.pack("<H", 0)  # cbSize: non-PCM formats carry it
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if tag == _FLOAT:  # non-PCM files carry a fact chunk with the frame count
        chunks += b"fact" + struct.pack("<II", 4, len(frames))
    chunks += b"data" + struct.pack("<I", len(data)) + data + b"\x00" * (len(data) & 1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)
    return path


def _encode_samples(frames: np.ndarray, tag: int, bits: int) -> bytes:
    if tag == _FLOAT:
        return frames.astype("<f4").tobytes()
    scale = 2.0 ** (bits - 1)
    ints = np.clip(np.round(frames.astype(np.float64) * scale), -scale, scale - 1).astype(np.int64)
    if bits == 24:
        raw = ints.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]  # drop the top byte of each
        return np.ascontiguousarray(raw).tobytes()
    return ints.astype("<i2" if bits == 16 else "<i4").tobytes()
