"""The shipped TTS checkpoint: loads by name, speaks in its default voice and a prompt's, at a human pace."""

from __future__ import annotations

import numpy as np

import speechkit


def test_shipped_mobilespeech_speaks_at_a_plausible_pace(speech_16k):
    tts = speechkit.load("mobilespeech")
    assert tts.codec.fingerprint == tts.config.codec_fingerprint  # the codec it was trained on
    text = "The quick brown fox jumps over the lazy dog near the river bank."
    audio = tts.synthesize(text)
    seconds = len(audio) / tts.sample_rate
    words = len(text.split())
    assert 0.15 * words < seconds < 0.8 * words + 1.0  # 75-400 words per minute
    assert np.isfinite(audio).all() and 0.01 < np.abs(audio).max() <= 1.5
    rms = np.sqrt(np.mean(audio**2))
    assert rms > 0.005  # not silence
    cloned = tts.synthesize("Hello there.", prompt=speech_16k, prompt_sample_rate=16000)
    assert np.isfinite(cloned).all() and len(cloned) > 0.3 * tts.sample_rate
    assert np.array_equal(tts.synthesize("Hello there.", seed=2), tts.synthesize("Hello there.", seed=2))
