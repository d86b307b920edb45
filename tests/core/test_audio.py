"""speechkit.audio: I/O round trips, conversions, and clear errors for bad audio."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from speechkit.audio import (
    check_sample_rate,
    frame_signal,
    integrated_loudness,
    iter_chunks,
    load_audio,
    loudness_normalize,
    peak_normalize,
    prepare_input,
    resample,
    save_audio,
    to_mono,
)
from speechkit.errors import AudioError


def _tone(freq: float, sample_rate: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
def test_save_load_round_trip(tmp_path, suffix):
    wav = _tone(440, 16000)
    path = save_audio(tmp_path / f"a{suffix}", wav, 16000)
    back, sr = load_audio(path)
    assert sr == 16000 and back.dtype == np.float32 and back.ndim == 1
    assert abs(len(back) - len(wav)) <= 0 if suffix != ".ogg" else abs(len(back) - len(wav)) < 2000
    tolerance = 1e-3 if suffix != ".ogg" else 0.1  # PCM_16 vs lossy vorbis
    n = min(len(back), len(wav))
    assert np.sqrt(np.mean((back[:n] - wav[:n]) ** 2)) < tolerance


def test_stereo_file_is_mixed_down_and_resampled(tmp_path):
    left, right = _tone(300, 44100), _tone(300, 44100, amp=0.1)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 44100)
    wav, sr = load_audio(tmp_path / "s.wav", target_sample_rate=16000)
    assert sr == 16000 and wav.ndim == 1 and len(wav) == 16000
    assert np.max(np.abs(wav)) == pytest.approx(0.3, abs=0.01)
    stereo, _ = load_audio(tmp_path / "s.wav", mono=False)
    assert stereo.shape == (44100, 2)


def test_resample_keeps_tone_and_removes_alias():
    wav = _tone(1000, 48000) + _tone(11000, 48000)  # 11 kHz must vanish at 16 kHz (Nyquist 8 kHz)
    out = resample(wav, 48000, 16000)
    assert len(out) == 16000
    spectrum = np.abs(np.fft.rfft(out[2000:-2000] * np.hanning(12000)))
    freqs = np.fft.rfftfreq(12000, 1 / 16000)
    peak = freqs[np.argmax(spectrum)]
    assert peak == pytest.approx(1000, abs=5)
    alias = spectrum[np.abs(freqs - 5000) < 50].max()  # 11 kHz would fold to 5 kHz
    assert alias < 1e-3 * spectrum.max()


def test_missing_and_unreadable_files_raise(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "nope.wav")
    (tmp_path / "junk.wav").write_bytes(b"this is not audio at all")
    with pytest.raises(AudioError, match="cannot read"):
        load_audio(tmp_path / "junk.wav")
    with pytest.raises(AudioError, match="directory"):
        load_audio(tmp_path)


def test_empty_nan_and_rates_raise(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="empty"):
        load_audio(tmp_path / "empty.wav")
    bad = _tone(100, 16000)
    bad[10] = np.nan
    with pytest.raises(AudioError, match="NaN or Inf"):
        prepare_input(bad, 16000, 16000)
    with pytest.raises(AudioError, match="silence"):
        prepare_input(np.zeros(100, dtype=np.float32), 16000, 16000)
    for rate in (0, -5, 10, 10_000_000, 16000.5):
        with pytest.raises(AudioError):
            check_sample_rate(rate)
    with pytest.raises(AudioError, match="cannot write"):
        save_audio(tmp_path / "x.mp4", bad, 16000)


def test_prepare_input_converts_int16_stereo_and_rate():
    stereo = (np.stack([_tone(200, 8000), _tone(200, 8000)], axis=1) * 32767).astype(np.int16)
    wav = prepare_input(stereo, 8000, 16000)
    assert wav.dtype == np.float32 and wav.shape == (16000,)
    assert np.max(np.abs(wav)) == pytest.approx(0.5, abs=0.01)


def test_peak_and_loudness_normalisation():
    wav = _tone(1000, 48000, seconds=3.0, amp=0.1)
    assert np.max(np.abs(peak_normalize(wav, 0.9))) == pytest.approx(0.9)
    # BS.1770: a 0 dBFS 997 Hz sine at 48 kHz reads -3.01 LUFS.
    assert integrated_loudness(_tone(997, 48000, 3.0, amp=1.0), 48000) == pytest.approx(-3.01, abs=0.05)
    out = loudness_normalize(wav, 48000, target_lufs=-23.0)
    assert integrated_loudness(out, 48000) == pytest.approx(-23.0, abs=0.05)
    assert np.array_equal(peak_normalize(np.zeros(8, dtype=np.float32)), np.zeros(8))


def test_framing_and_chunks():
    wav = np.arange(10, dtype=np.float32)
    frames = frame_signal(wav, 4, 3)
    assert (
        frames.shape == (3, 4) and frames[1].tolist() == [3, 4, 5, 6] and frames[2].tolist() == [6, 7, 8, 9]
    )
    padded = frame_signal(np.arange(11, dtype=np.float32), 4, 3)
    assert padded.shape == (4, 4) and padded[3].tolist() == [9, 10, 0, 0]
    chunks = list(iter_chunks(wav, 4))
    assert [len(c) for c in chunks] == [4, 4, 2]
    assert np.array_equal(np.concatenate(chunks), wav)
    assert to_mono(np.ones((5, 2), dtype=np.float32)).shape == (5,)
