"""Streaming recognition: equals offline chunk-mode decoding with full left context; endpoints; rates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechkit.asr.api import SpeechRecognizer
from speechkit.asr.decoding import DecodingOptions
from speechkit.asr.model import ASRConfig, EBranchformerASR
from speechkit.asr.streaming import join_finals
from speechkit.errors import AudioError


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)
    return EBranchformerASR(ASRConfig.tiny()).eval()


def _speechy(seconds, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + rng.normal(0, 0.02, len(t))).astype(
        np.float32
    )


@pytest.mark.parametrize("method", ["ctc_greedy", "joint"])
def test_stream_equals_offline_with_full_context(model, method):
    options = DecodingOptions(method=method, beam_size=3)
    offline = SpeechRecognizer(model, options, chunk_frames=4)
    wav = _speechy(2.3)
    expected = offline.transcribe(wav, 16000)
    stream = offline.stream(16000, chunk_frames=4, left_context_seconds=None, endpoint_seconds=None)
    rng = np.random.default_rng(0)
    updates, start = [], 0
    while start < len(wav):  # ragged chunk sizes, as a microphone delivers them
        size = int(rng.integers(300, 3000))
        updates += stream.accept(wav[start : start + size])
        start += size
    updates += stream.finish()
    assert any(not u.is_final for u in updates) or expected.text == ""
    streamed = join_finals(updates)
    assert streamed.text == expected.text
    assert [w.text for w in streamed.words] == [w.text for w in expected.words]
    assert [w.start for w in streamed.words] == pytest.approx([w.start for w in expected.words])


def test_streamed_encoder_frames_equal_offline_chunk_mode(model):
    recognizer = SpeechRecognizer(model, DecodingOptions(method="ctc_greedy"))
    wav = _speechy(1.7, seed=2)
    offline, _ = model.encode(torch.from_numpy(wav)[None], None, 4)
    stream = recognizer.stream(16000, chunk_frames=4, left_context_seconds=None, endpoint_seconds=None)
    for start in range(0, len(wav), 1000):
        stream.accept(wav[start : start + 1000])
    emitted = torch.cat(stream._encoded)
    assert 0 < len(emitted) < offline.shape[1]
    assert torch.allclose(emitted, offline[0, : len(emitted)], atol=1e-4)


def test_latency_and_bounded_context_memory(model):
    recognizer = SpeechRecognizer(model)
    stream = recognizer.stream(16000, chunk_frames=16, left_context_seconds=1.0, endpoint_seconds=None)
    assert stream.latency_seconds == pytest.approx(0.6825)
    wav = _speechy(6.0)
    longest = 0
    for start in range(0, len(wav), 1600):
        stream.accept(wav[start : start + 1600])
        longest = max(longest, len(stream._audio))
    assert longest <= int((1.0 + 2 * 0.64 + 0.2) * 16000)  # left context + two chunks + lookahead
    stream.finish()


def test_endpoint_closes_a_segment_after_trailing_blanks(model, monkeypatch):
    """A fake acoustic model says "a" on loud frames and blank on quiet ones; the stream must close a
    segment after 0.4 s of blanks, report it with its words, and start the next one."""
    recognizer = SpeechRecognizer(model, DecodingOptions(method="ctc_greedy"))
    stream = recognizer.stream(16000, chunk_frames=4, endpoint_seconds=0.4)
    vocab = model.vocabulary
    a = vocab.text_to_ids("a")[0]

    def fake_ctc(encoded):
        loud = encoded[..., 0:1] > 0
        lp = torch.full((*encoded.shape[:-1], len(vocab)), -20.0)
        lp[..., vocab.blank_id] = 0.0
        return torch.where(loud, lp.roll(a - vocab.blank_id, dims=-1), lp)

    def fake_window(final):
        audio = stream._audio
        frames = (((len(audio) // 160 + 1) - 1) // 2 - 1) // 2 if final else stream._stable_frames()
        rms = [float(np.sqrt(np.mean(audio[j * 640 : (j + 1) * 640] ** 2) + 1e-12)) for j in range(frames)]
        encoded = torch.tensor([[1.0 if r > 0.05 else -1.0] * 32 for r in rms]).reshape(frames, 32)
        return encoded, fake_ctc(encoded[None])[0].numpy()

    monkeypatch.setattr(model, "ctc_log_probs", fake_ctc)
    monkeypatch.setattr(stream, "_run_window", fake_window)
    tone = 0.5 * np.sin(2 * np.pi * 300 * np.arange(8000) / 16000).astype(np.float32)
    wav = np.concatenate([np.zeros(4000, np.float32), tone, np.zeros(16000, np.float32), tone, np.zeros(4000, np.float32)])
    updates = [u for start in range(0, len(wav), 640) for u in stream.accept(wav[start : start + 640])]
    finals = [u for u in updates if u.is_final]
    assert len(finals) == 1 and finals[0].text == "a"
    assert 0.75 <= finals[0].end <= 1.6  # 0.5 s of tone ends at 0.75 s, plus the 0.4 s endpoint wait
    word = finals[0].transcript.words[0]
    assert 0.2 <= word.start < word.end <= 0.8
    assert any(not u.is_final and u.text == "a" for u in updates)  # a partial came first
    rest = stream.finish()
    assert [u.text for u in rest if u.is_final] == ["a"]
    assert rest[-1].transcript.words[0].start >= finals[0].end


def test_stream_accepts_other_rates_and_stereo(model):
    recognizer = SpeechRecognizer(model, DecodingOptions(method="ctc_greedy"))
    stream = recognizer.stream(8000, chunk_frames=4, endpoint_seconds=None)
    wav = _speechy(1.0)[::2]
    for start in range(0, len(wav), 500):
        chunk = wav[start : start + 500]
        stream.accept(np.stack([chunk, chunk], 1))
    final = join_finals(stream.finish())
    assert final.duration == pytest.approx(1.0, abs=0.05)
    with pytest.raises(AudioError):
        stream.accept(wav)  # finished
