"""speechkit_rt.audio_io: WAV I/O against libsndfile, the resampler's numbers, the SDK's input checks."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from speechkit import audio as sdk_audio
from speechkit.errors import AudioError as SdkAudioError
from speechkit_rt import audio_io
from speechkit_rt.audio_io import prepare_input, read_wav, resample, write_wav
from speechkit_rt.errors import AudioError

# Measured with the defaults (passband 0.9, stop band 100 dB): passband error <= 1e-5 of a unit sine,
# aliases and images 110-150 dB down; the bounds below leave an order of magnitude (or 10 dB) margin.
MAX_PASSBAND_ERROR = 1e-4
MIN_REJECTION_DB = 100.0


def _tone(freq: float, sample_rate: int, num: int) -> np.ndarray:
    return np.sin(2 * np.pi * freq * np.arange(num) / sample_rate)


def _middle(x: np.ndarray) -> np.ndarray:
    """The centre half: away from the zero-padded edges, where the filter sees only signal."""
    return x[len(x) // 4 : 3 * len(x) // 4]


# ---- resampling ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "dst", "freq"),
    [
        (44100, 16000, 1000),
        (44100, 16000, 7200),
        (22050, 16000, 7100),
        (16000, 48000, 7000),
        (8000, 16000, 3500),
    ],
)
def test_resampled_sine_in_the_passband_is_the_sine_at_the_new_rate(src, dst, freq):
    out = resample(_tone(freq, src, src // 2).astype(np.float32), src, dst)
    expected = _tone(freq, dst, len(out))
    assert len(out) == dst // 2
    assert np.max(np.abs(_middle(out) - _middle(expected))) < MAX_PASSBAND_ERROR


@pytest.mark.parametrize(
    ("src", "dst", "freq"), [(44100, 16000, 8100), (44100, 16000, 13000), (48000, 16000, 8000)]
)
def test_sine_above_the_new_nyquist_does_not_alias(src, dst, freq):
    out = resample(_tone(freq, src, src // 2).astype(np.float32), src, dst)
    rejection_db = -20 * np.log10(np.sqrt(np.mean(_middle(out) ** 2)) / np.sqrt(0.5))
    assert rejection_db > MIN_REJECTION_DB


def test_upsampling_leaves_no_images_above_the_old_nyquist():
    out = resample(_tone(3000, 16000, 16000).astype(np.float32), 16000, 48000)
    spectrum = np.abs(np.fft.rfft(_middle(out) * np.hanning(len(_middle(out)))))
    freqs = np.fft.rfftfreq(len(_middle(out)), 1 / 48000)
    image_db = 20 * np.log10(spectrum[freqs > 8000].max() / spectrum.max())
    assert image_db < -MIN_REJECTION_DB


def test_resampling_speech_agrees_with_soxr_where_both_are_flat(speech_16k):
    """Below 7 kHz both filters are flat (measured 100 dB apart); above, their transition bands differ."""
    ours = resample(speech_16k, 16000, 44100)
    theirs = soxr.resample(speech_16k, 16000, 44100, quality="VHQ")
    assert len(ours) == len(theirs)
    band = np.fft.rfftfreq(len(ours), 1 / 44100) < 7000
    signal, error = np.abs(np.fft.rfft(theirs))[band], np.abs(np.fft.rfft(ours - theirs))[band]
    assert 10 * np.log10(np.sum(signal**2) / np.sum(error**2)) > 80


@pytest.mark.parametrize("num", [1, 2, 3, 441, 1000, 4409])
def test_output_length_is_sox_rs(num):
    x = np.full(num, 0.5, dtype=np.float32)
    for src, dst in ((44100, 16000), (16000, 44100), (3000, 2000), (2000, 3000)):
        assert len(resample(x, src, dst)) == len(soxr.resample(x, src, dst))


def test_channels_resample_independently_and_the_phase_free_path_agrees(monkeypatch):
    rng = np.random.default_rng(0)
    stereo = rng.standard_normal((1600, 2)).astype(np.float32)
    out = resample(stereo, 16000, 11025)
    for c in range(2):
        np.testing.assert_allclose(out[:, c], resample(stereo[:, c], 16000, 11025), atol=1e-5)
    monkeypatch.setattr(audio_io, "MAX_TABLE_PHASES", 0)  # per-output taps, as for e.g. 16001 -> 16000
    np.testing.assert_allclose(resample(stereo, 16000, 11025), out, atol=1e-5)
    assert resample(stereo, 16000, 16000) is not None and np.array_equal(
        resample(stereo, 16000, 16000), stereo
    )


# ---- WAV files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2, 5])
@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT"])
def test_written_wav_reads_the_same_in_libsndfile_and_here(tmp_path, subtype, channels):
    rng = np.random.default_rng(channels)
    wav = rng.uniform(-1, 1, (500, channels)).astype(np.float32)
    path = write_wav(tmp_path / "x.wav", wav, 22050, subtype=subtype)
    theirs, rate = sf.read(path, dtype="float32", always_2d=True)
    ours, our_rate = read_wav(path, mono=False)
    assert rate == our_rate == 22050 and sf.info(path).subtype == subtype
    np.testing.assert_array_equal(ours, theirs)
    step = {"PCM_16": 2**-15, "PCM_24": 2**-23, "PCM_32": 2**-31, "FLOAT": 0}[subtype]
    np.testing.assert_allclose(ours, wav, atol=step / 2 + 1e-9, rtol=0)
    # Reading then writing gives back the same bytes.
    assert write_wav(tmp_path / "y.wav", ours, 22050, subtype=subtype).read_bytes() == path.read_bytes()


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
@pytest.mark.parametrize("channels", [1, 3])
def test_libsndfile_wavs_read_as_libsndfile_reads_them(tmp_path, subtype, channels):
    wav = np.random.default_rng(1).uniform(-0.9, 0.9, (300, channels))
    sf.write(tmp_path / "x.wav", wav, 8000, subtype=subtype)  # 3 channels: WAVE_FORMAT_EXTENSIBLE
    theirs, _ = sf.read(tmp_path / "x.wav", dtype="float32", always_2d=True)
    ours, rate = read_wav(tmp_path / "x.wav", mono=False)
    assert rate == 8000
    np.testing.assert_array_equal(ours, theirs)


def test_mono_mixdown_resampling_and_odd_chunks(tmp_path, caplog):
    stereo = np.stack([_tone(440, 32000, 3200), np.zeros(3200)], axis=1)
    path = write_wav(tmp_path / "s.wav", stereo, 32000, subtype="FLOAT")
    # An odd-sized LIST chunk before "fmt ": the reader must skip its pad byte.
    data = path.read_bytes()
    extra = b"LIST" + struct.pack("<I", 3) + b"abc\x00"
    patched = data[:4] + struct.pack("<I", len(data) - 8 + len(extra)) + data[8:12] + extra + data[12:]
    path.write_bytes(patched)
    with caplog.at_level(logging.INFO, logger="speechkit_rt.audio_io"):
        mono, rate = read_wav(path, target_sample_rate=16000)
    assert rate == 16000 and mono.shape == (1600,)
    assert "mixing 2 channels" in caplog.text and "from 32000 Hz to 16000 Hz" in caplog.text
    np.testing.assert_allclose(_middle(mono), _middle(0.5 * _tone(440, 16000, 1600)), atol=1e-4)


def test_truncated_data_chunk_reads_what_is_there(tmp_path, caplog):
    path = write_wav(tmp_path / "t.wav", np.linspace(-0.5, 0.5, 1000), 16000)
    path.write_bytes(path.read_bytes()[:-101])  # half a sample frame short, too
    wav, _ = read_wav(path)
    assert len(wav) == 949 and "truncated" in caplog.text
    np.testing.assert_allclose(wav, np.linspace(-0.5, 0.5, 1000)[:949], atol=2**-15)


def _write_raw(path: Path, fmt: bytes, data: bytes) -> Path:
    body = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    )
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.wav", "audio file not found"),
        (lambda p: p, "got a directory"),
        (lambda p: _text_file(p), "not a RIFF/WAVE file"),
        (
            lambda p: _write_raw(p / "u.wav", struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8), b"\x00" * 8),
            "mu-law",
        ),
        (
            lambda p: _write_raw(p / "b.wav", struct.pack("<HHIIHH", 1, 2, 8000, 0, 3, 16), b"\x00" * 8),
            "inconsistent",
        ),
        (lambda p: _write_raw(p / "e.wav", struct.pack("<HHIIHH", 1, 1, 8000, 0, 2, 16), b""), "is empty"),
        (
            lambda p: _write_raw(p / "r.wav", struct.pack("<HHIIHH", 1, 1, 10, 0, 2, 16), b"\x01\x00"),
            "outside",
        ),
        (lambda p: _short(p), "no data chunk"),
        (
            lambda p: _write_raw(
                p / "n.wav",
                struct.pack("<HHIIHH", 3, 1, 8000, 0, 4, 32),
                np.array([0, np.nan], "<f4").tobytes(),
            ),
            "1 NaN or Inf",
        ),
    ],
)
def test_unreadable_wavs_raise_audio_errors_that_name_the_problem(tmp_path, make, message):
    with pytest.raises(AudioError, match=message):
        read_wav(make(tmp_path))


def _text_file(folder: Path) -> Path:
    (folder / "a.wav").write_text("hello, not audio")
    return folder / "a.wav"


def _short(folder: Path) -> Path:
    path = _write_raw(folder / "h.wav", struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16), b"\x00\x00")
    path.write_bytes(path.read_bytes()[:36])  # RIFF header and fmt chunk only
    return path


def test_write_refuses_bad_subtypes_and_audio(tmp_path):
    with pytest.raises(AudioError, match="subtype"):
        write_wav(tmp_path / "x.wav", np.zeros(4), 16000, subtype="ULAW")
    with pytest.raises(AudioError, match="NaN"):
        write_wav(tmp_path / "x.wav", np.array([0.0, np.inf]), 16000)
    loud = write_wav(tmp_path / "loud.wav", np.array([2.0, -2.0, 1.0]), 16000)
    assert sf.read(loud, dtype="int16")[0].tolist() == [32767, -32768, 32767]


# ---- the SDK's checks, the SDK's messages ----------------------------------------------------------


@pytest.mark.parametrize(
    ("wav", "sample_rate"),
    [
        (np.zeros(0, dtype=np.float32), 16000),
        (np.array([0.1, np.nan, np.inf], dtype=np.float32), 16000),
        (np.zeros(100, dtype=np.float32), 16000),
        (np.zeros((2, 100), dtype=np.float32) + 0.1, 16000),
        (np.zeros((2, 2, 2), dtype=np.float32), 16000),
        (np.array(["a", "b"]), 16000),
        (np.ones(10, dtype=np.float32), 500),
        (np.ones(10, dtype=np.float32), 16000.5),
        (np.ones(10, dtype=np.float32), "16000"),
    ],
    ids=[
        "empty",
        "nan-inf",
        "silence",
        "channels-first",
        "rank-3",
        "strings",
        "rate-low",
        "rate-fraction",
        "rate-str",
    ],
)
def test_prepare_input_refuses_what_the_sdk_refuses_with_the_same_message(wav, sample_rate):
    with pytest.raises(SdkAudioError) as sdk_err:
        sdk_audio.prepare_input(wav, sample_rate, 16000)
    with pytest.raises(AudioError) as runtime_err:
        prepare_input(wav, sample_rate, 16000)
    assert str(runtime_err.value) == str(sdk_err.value)


def test_prepare_input_matches_the_sdk_on_integer_stereo():
    pcm = (np.random.default_rng(0).uniform(-1, 1, (800, 2)) * 32767).astype(np.int16)
    np.testing.assert_array_equal(
        prepare_input(pcm, 16000, 16000), sdk_audio.prepare_input(pcm, 16000, 16000)
    )
