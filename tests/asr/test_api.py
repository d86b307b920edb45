"""SpeechRecognizer: bad input, rates and channels, long audio in windows, transcript formats."""

from __future__ import annotations

import json

import numpy as np
import pytest

from speechkit.asr.api import SpeechRecognizer, audio_file_blocks
from speechkit.asr.decoding import DecodingOptions
from speechkit.asr.model import ASRConfig, EBranchformerASR
from speechkit.asr.transcript import Transcript
from speechkit.audio import save_audio
from speechkit.errors import AudioError, ConfigError


@pytest.fixture(scope="module")
def asr():
    import torch

    torch.manual_seed(0)
    return SpeechRecognizer(EBranchformerASR(ASRConfig.tiny()), DecodingOptions(method="ctc_greedy"))


def _noise(seconds, rate=16000, seed=0):
    return np.random.default_rng(seed).normal(0, 0.1, int(seconds * rate)).astype(np.float32)


def _check_times(t: Transcript):
    starts = [w.start for w in t.words]
    assert starts == sorted(starts)
    assert all(0.0 <= w.start <= w.end <= t.duration + 1e-6 for w in t.words)
    assert all(0.0 <= w.confidence <= 1.0 for w in t.words)


def test_silence_gives_an_empty_transcript(asr):
    t = asr.transcribe(np.zeros(16000, dtype=np.float32), 16000)
    assert t.text == "" and t.words == () and t.duration == pytest.approx(1.0)


def test_noise_only_and_clipped_audio_give_a_valid_transcript(asr):
    noisy = asr.transcribe(_noise(1.5), 16000)
    _check_times(noisy)
    assert isinstance(noisy.text, str) and noisy.duration == pytest.approx(1.5)
    clipped = np.clip(_noise(1.0) * 30, -1.0, 1.0)
    _check_times(asr.transcribe(clipped, 16000))


def test_loud_float_audio_is_scaled_not_refused(asr):
    wav = _noise(1.0)
    loud = asr.transcribe(wav * 50, 16000)
    quiet = asr.transcribe(wav / np.abs(wav).max(), 16000)
    assert loud.text == quiet.text


@pytest.mark.parametrize(
    ("wav", "rate"),
    [
        (np.zeros(800, dtype=np.float32) + 0.1, 16000),  # 50 ms: too short
        (np.full(16000, np.nan, dtype=np.float32), 16000),
        (np.zeros((2, 16000), dtype=np.float32), 16000),  # channels first
        (np.zeros(16000, dtype=np.float32), 0),
    ],
)
def test_bad_input_raises_audio_error(asr, wav, rate):
    with pytest.raises(AudioError):
        asr.transcribe(wav, rate)


def test_other_rates_and_stereo_are_converted(asr):
    wav16 = _noise(1.0)
    t8 = asr.transcribe(_noise(1.0, rate=8000), 8000)
    t44 = asr.transcribe(_noise(1.0, rate=44100), 44100)
    assert t8.duration == pytest.approx(1.0, abs=1e-3) and t44.duration == pytest.approx(1.0, abs=1e-3)
    stereo = np.stack([wav16, wav16], axis=1)
    assert asr.transcribe(stereo, 16000).text == asr.transcribe(wav16, 16000).text


def test_long_audio_is_decoded_in_bounded_windows(asr, monkeypatch):
    recognizer = SpeechRecognizer(asr.model, asr.options, window_seconds=2.0, cut_search_seconds=0.5)
    seen = []
    original = recognizer.transcribe_window

    def spy(wav, options=None, time_offset=0.0):
        seen.append((len(wav), time_offset))
        return original(wav, options, time_offset)

    monkeypatch.setattr(recognizer, "transcribe_window", spy)
    wav = _noise(7.3)
    wav[int(3.0 * 16000) : int(3.2 * 16000)] = 0.0  # a pause the cut should find
    t = recognizer.transcribe(wav, 16000)
    assert len(seen) >= 4 and all(n <= 2 * 16000 for n, _ in seen)
    assert sum(n for n, _ in seen) == len(wav)  # nothing lost or duplicated
    assert [o for _, o in seen] == sorted(o for _, o in seen)
    assert t.duration == pytest.approx(7.3)
    _check_times(t)


def test_file_blocks_resample_incrementally(tmp_path):
    wav = _noise(2.0, rate=22050)
    path = save_audio(tmp_path / "x.wav", np.stack([wav, wav], 1) * 0.5, 22050)
    blocks = list(audio_file_blocks(str(path), 16000, block_seconds=0.25))
    assert len(blocks) >= 8
    assert abs(sum(len(b) for b in blocks) - 32000) <= 2


def test_transcript_formats_and_options():
    t = Transcript("a b", (), 1.0)
    assert json.loads(t.to_json())["text"] == "a b" and t.to_srt() == ""
    with pytest.raises(ConfigError):
        DecodingOptions(method="greedy")
