"""The TTS API's input checks: text, prompts, speed, streaming, codec weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechkit.errors import AudioError, CheckpointError, TextError
from speechkit.tts.api import TextToSpeech
from speechkit.tts.mobilespeech import MobileSpeech, MobileSpeechConfig

TINY = dict(dim=32, num_heads=2, text_layers=1, prompt_layers=1, duration_layers=1, decoder_layers=1,
            num_codebooks=2, default_prompt_frames=20)  # fmt: skip


@pytest.fixture(scope="module")
def tts():
    model = MobileSpeech(MobileSpeechConfig(**TINY)).eval()
    model.set_default_prompt(torch.randint(0, 1024, (2, 20)))
    return TextToSpeech(model)


def test_synthesis_is_finite_audio_and_streams_per_sentence(tts):
    audio = tts.synthesize("Hello there. It costs $5!")
    assert audio.dtype == np.float32 and np.isfinite(audio).all() and len(audio) > 0
    assert len(list(tts.stream("One. Two. Three."))) == 3
    assert np.array_equal(tts.synthesize("Same seed.", seed=1), tts.synthesize("Same seed.", seed=1))


@pytest.mark.parametrize("text", ["", "   ", "...", "?!", "\u4f60\u597d"])
def test_nothing_to_say_is_a_text_error(tts, text):
    with pytest.raises(TextError):
        tts.synthesize(text)


def test_bad_prompts_are_clear_errors(tts, speech_16k):
    with pytest.raises(AudioError, match="silence|silent"):
        tts.synthesize("Hello.", prompt=np.zeros(32000, np.float32), prompt_sample_rate=16000)
    with pytest.raises(AudioError, match="at least 1 s"):
        tts.synthesize("Hello.", prompt=speech_16k[:8000], prompt_sample_rate=16000)
    bad = speech_16k.copy()
    bad[10] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        tts.synthesize("Hello.", prompt=bad, prompt_sample_rate=16000)
    with pytest.raises(AudioError, match="prompt_sample_rate"):
        tts.synthesize("Hello.", prompt=speech_16k)
    with pytest.raises(ValueError, match="speed"):
        tts.synthesize("Hello.", speed=0.0)


def test_prompt_at_another_rate_and_in_stereo_is_accepted(tts, speech_16k):
    stereo = np.stack([speech_16k, speech_16k], axis=1)
    audio = tts.synthesize("Hello.", prompt=stereo, prompt_sample_rate=16000)
    assert np.isfinite(audio).all()
    from speechkit.audio import resample

    audio = tts.synthesize("Hello.", prompt=resample(speech_16k, 16000, 24000), prompt_sample_rate=24000)
    assert np.isfinite(audio).all()


def test_codec_with_other_weights_is_refused():
    model = MobileSpeech(MobileSpeechConfig(**TINY, codec_fingerprint="0123456789abcdef"))
    with pytest.raises(CheckpointError, match="weights 0123456789abcdef"):
        TextToSpeech(model)
