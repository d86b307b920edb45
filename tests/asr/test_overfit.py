"""A tiny model learns 4 "utterances" (one tone per letter) end to end: training step, every decoding
method and the word timestamps. Marked slow (about half a minute on one thread)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechkit.asr.api import SpeechRecognizer
from speechkit.asr.decoding import DecodingOptions
from speechkit.asr.model import ASRConfig, EBranchformerASR

RATE = 16000
TONES = {"a": 300.0, "b": 550.0, "c": 900.0, "d": 1400.0, "e": 2200.0}
TEXTS = ["bad cab", "ace", "bead", "dab ace"]
LETTER, GAP, WORD_GAP, EDGE = 0.1, 0.03, 0.25, 0.2


def _synthesise(text: str) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Tone sequence for ``text`` and each word's true (start, end) in seconds."""
    pieces, words, clock = [np.zeros(int(EDGE * RATE))], [], EDGE
    for w, word in enumerate(text.split()):
        if w:
            pieces.append(np.zeros(int(WORD_GAP * RATE)))
            clock += WORD_GAP
        start = clock
        for letter in word:
            t = np.arange(int(LETTER * RATE)) / RATE
            pieces += [0.4 * np.sin(2 * np.pi * TONES[letter] * t), np.zeros(int(GAP * RATE))]
            clock += LETTER + GAP
        words.append((start, clock - GAP))
    pieces.append(np.zeros(int(EDGE * RATE)))
    return np.concatenate(pieces).astype(np.float32), words


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = EBranchformerASR(ASRConfig.tiny(specaugment=False, full_context_prob=1.0, dim=48))
    audio = [_synthesise(t) for t in TEXTS]
    wav = [torch.from_numpy(a) for a, _ in audio]
    lengths = torch.tensor([len(w) for w in wav])
    batch = {"wav": torch.nn.utils.rnn.pad_sequence(wav, batch_first=True), "wav_lengths": lengths}
    ids = [torch.tensor(model.vocabulary.encode(t)) for t in TEXTS]
    batch["tokens"] = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True)
    batch["token_lengths"] = torch.tensor([len(i) for i in ids])
    with torch.no_grad():
        mel = model.frontend.mel(batch["wav"])
        model.frontend.set_statistics(mel.mean((0, 2)), mel.std((0, 2)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(250):
        loss, metrics = model.training_step(batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
    return model.eval(), audio, metrics


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ctc_greedy", "ctc_beam", "attention", "joint"])
def test_tiny_model_overfits_four_utterances(trained, method):
    model, audio, metrics = trained
    assert metrics["att_accuracy"] > 0.95
    asr = SpeechRecognizer(model, DecodingOptions(method=method, beam_size=3))
    for text, (wav, _) in zip(TEXTS, audio):
        assert asr.transcribe(wav, RATE).text == text


@pytest.mark.slow
@pytest.mark.parametrize("decred", ["final", "linear", "log_linear"])
def test_decred_decoding_modes_decode_the_learnt_utterances(trained, decred):
    model, audio, _ = trained
    asr = SpeechRecognizer(model, DecodingOptions(method="attention", decred=decred, beam_size=2))
    assert [asr.transcribe(wav, RATE).text for wav, _ in audio] == TEXTS


@pytest.mark.slow
def test_word_timestamps_follow_the_audio(trained):
    model, audio, _ = trained
    asr = SpeechRecognizer(model, DecodingOptions(method="joint", beam_size=3))
    for (wav, truth), text in zip(audio, TEXTS):
        transcript = asr.transcribe(wav, RATE)
        assert [w.text for w in transcript.words] == text.split()
        starts = [w.start for w in transcript.words]
        assert starts == sorted(starts)
        for word, (start, end) in zip(transcript.words, truth):
            assert 0.0 <= word.start < word.end <= transcript.duration
            assert abs(word.start - start) < 0.15 and abs(word.end - end) < 0.2
