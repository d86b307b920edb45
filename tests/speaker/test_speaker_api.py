"""SpeakerEncoder: embeddings, verification, enrolment, and bad input (tiny random model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from speechkit.errors import AudioError, DataError
from speechkit.speaker.api import SpeakerEncoder
from speechkit.speaker.ecapa import ECAPATDNN, ECAPAConfig

RATE = 16000


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    torch.manual_seed(0)
    config = ECAPAConfig(channels=32, embedding_dim=16, attention_channels=8, se_channels=8, res2net_scale=4,
                         num_classes=6, threshold=0.9)  # fmt: skip
    return ECAPATDNN(config).task_api()


def voice(f0: float, seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    wav = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6)) / h for h in range(1, 8))
    return (0.3 * wav / np.max(np.abs(wav)) + 0.001 * rng.standard_normal(len(t))).astype(np.float32)


def test_embedding_is_unit_norm_and_trims_silence(encoder):
    speech = voice(120.0)
    short_pad = np.concatenate([np.zeros(RATE // 2, np.float32), speech, np.zeros(RATE // 2, np.float32)])
    long_pad = np.concatenate([np.zeros(3 * RATE, np.float32), speech, np.zeros(4 * RATE, np.float32)])
    a, b = encoder.embed(short_pad, RATE), encoder.embed(long_pad, RATE)
    untrimmed = encoder.embed(long_pad, RATE, trim_silence=False)
    assert a.shape == (16,) and abs(np.linalg.norm(a) - 1) < 1e-5
    assert float(a @ b) > 0.999  # seconds of silence around the speech do not change the voice
    assert float(a @ untrimmed) < float(a @ b)


def test_other_rates_and_stereo_are_converted(encoder):
    speech = voice(150.0)
    from speechkit.audio import resample

    at_8k = resample(speech, RATE, 8000)
    stereo = np.stack([speech, speech], axis=1)
    ref = encoder.embed(speech, RATE)
    assert float(ref @ encoder.embed(stereo, RATE)) > 0.999
    assert float(ref @ encoder.embed(at_8k, 8000)) > 0.9


@pytest.mark.parametrize(
    "wav, match",
    [
        (np.zeros(RATE, np.float32), "silen|speech"),
        (np.array([], np.float32), "empty"),
        (np.full(RATE, np.nan, np.float32), "NaN|finite"),
        (voice(120.0, seconds=0.1), "speech|under"),
    ],
)
def test_bad_audio_is_refused(encoder, wav, match):
    with pytest.raises(AudioError, match=match):
        encoder.embed(wav, RATE)


def test_verify_uses_the_calibrated_threshold(encoder):
    same = encoder.verify(voice(120.0, seed=1), voice(120.0, seed=2), RATE)
    assert same.threshold == pytest.approx(0.9)
    assert same.same_speaker == (same.score >= 0.9)
    strict = encoder.verify(voice(120.0, seed=1), voice(120.0, seed=2), RATE, threshold=1.01)
    assert not strict.same_speaker


def test_enroll_identify_and_round_trip(encoder, tmp_path):
    encoder.enrolled.clear()
    with pytest.raises(DataError, match="enroll"):
        encoder.identify(voice(100.0), RATE)
    encoder.enroll("low", [voice(100.0, seed=1), voice(100.0, seed=2)], RATE)
    encoder.enroll("high", voice(260.0, seed=3), RATE)
    match = encoder.identify(voice(100.0, seed=4), RATE, threshold=-1.0)
    assert match.name == "low" and set(match.scores) == {"low", "high"}
    assert encoder.identify(voice(100.0, seed=4), RATE, threshold=1.01).name is None
    path = encoder.save_enrollments(tmp_path / "enrolled.json")
    fresh = ECAPATDNN(encoder.config).task_api()
    fresh.load_enrollments(path)
    assert set(fresh.enrolled) == {"low", "high"}
    data = json.loads(path.read_text())
    data["speakers"]["low"] = data["speakers"]["low"][:3]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="low"):
        fresh.load_enrollments(path)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot read"):
        fresh.load_enrollments(tmp_path / "junk.json")


def test_segment_embeddings_match_single_embeddings(encoder):
    wav = np.concatenate([voice(110.0, 2.0, 1), voice(240.0, 2.0, 2)])
    segments = np.array([[0.0, 1.5], [2.0, 3.0], [2.5, 4.0]])
    batched = encoder.embed_segments(wav, segments)
    for row, (start, end) in zip(batched, segments, strict=True):
        single = encoder.embed(wav[int(start * RATE) : int(end * RATE)], RATE, trim_silence=False)
        assert float(row @ single) > 0.99999
