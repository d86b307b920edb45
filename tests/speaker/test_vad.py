"""Energy VAD: tone bursts in noise, streaming equals offline, silence, DC and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from speechkit.errors import AudioError, ConfigError
from speechkit.speaker.vad import (
    StreamingVAD,
    VADConfig,
    detect_speech,
    frame_log_energy,
    speech_mask,
)

SR = 16000
BURSTS = [(0.8, 1.5, 300.0), (2.3, 2.6, 1000.0), (3.5, 5.2, 600.0), (6.1, 6.45, 2500.0)]


def tone_bursts_in_noise(snr_db: float, bursts=BURSTS, seconds: float = 7.0, seed: int = 0) -> np.ndarray:
    """White noise (power 1e-4) with sine bursts ``snr_db`` above it, float32."""
    rng = np.random.default_rng(seed)
    wav = 0.01 * rng.standard_normal(int(seconds * SR))
    amplitude = np.sqrt(2 * 1e-4 * 10 ** (snr_db / 10))  # sine power = amplitude**2 / 2
    for start, end, freq in bursts:
        a, b = int(start * SR), int(end * SR)
        wav[a:b] += amplitude * np.sin(2 * np.pi * freq * np.arange(b - a) / SR)
    return wav.astype(np.float32)


def test_tone_bursts_found_within_30ms_at_10db_snr():
    wav = tone_bursts_in_noise(10.0)
    result = detect_speech(wav, SR, VADConfig(padding=0.0))
    assert len(result.segments) == len(BURSTS)
    for (start, end), (true_start, true_end, _) in zip(result.segments, BURSTS):
        assert abs(start - true_start) <= 0.03
        assert abs(end - true_end) <= 0.03


def test_padding_widens_every_segment_and_mask_matches_segments():
    wav = tone_bursts_in_noise(10.0)
    bare = detect_speech(wav, SR, VADConfig(padding=0.0)).segments
    result = detect_speech(wav, SR, VADConfig(padding=0.1))
    assert len(result.segments) == len(bare)
    for (start, end), (bare_start, bare_end) in zip(result.segments, bare):
        assert start == pytest.approx(bare_start - 0.1, abs=1e-9)
        assert end == pytest.approx(bare_end + 0.1, abs=1e-9)
    assert result.frame_rate == 100.0
    mask = result.speech_mask
    assert mask.dtype == bool and len(mask) == 1 + (len(wav) - 400) // 160
    centres = (np.arange(len(mask)) * 160 + 200) / SR
    inside = np.zeros(len(mask), dtype=bool)
    for start, end in result.segments:
        inside |= (centres >= start) & (centres < end)
    np.testing.assert_array_equal(mask, inside)


def test_hysteresis_min_durations_and_merging():
    # A 0.1 s blip is dropped (min_speech 0.2 s); a 0.1 s pause inside speech is bridged.
    bursts = [(1.0, 1.1, 500.0), (2.0, 2.6, 500.0), (2.7, 3.3, 500.0)]
    wav = tone_bursts_in_noise(15.0, bursts, seconds=4.5)
    segments = detect_speech(wav, SR, VADConfig(padding=0.0)).segments
    assert len(segments) == 1
    assert segments[0][0] == pytest.approx(2.0, abs=0.03) and segments[0][1] == pytest.approx(3.3, abs=0.03)
    # Without bridging and without the minimum length both come back.
    loose = VADConfig(padding=0.0, min_silence=0.0, min_speech=0.0)
    assert len(detect_speech(wav, SR, loose).segments) == 3


@pytest.mark.parametrize("chunk", [1, 160, 777, 4000, 16000])
def test_streaming_equals_offline(chunk):
    wav = tone_bursts_in_noise(10.0, seed=3)
    wav = wav[: len(wav) if chunk > 1 else 3 * SR]  # keep the one-sample case fast
    offline = detect_speech(wav, SR).segments
    vad = StreamingVAD(SR)
    streamed = []
    for start in range(0, len(wav), chunk):
        streamed += vad.accept(wav[start : start + chunk])
    assert streamed == offline[: len(streamed)]
    assert streamed + vad.flush() == offline
    assert vad.num_samples == 0  # flush resets for the next stream


def test_streaming_emits_within_the_stated_delay_and_random_chunks():
    wav = tone_bursts_in_noise(10.0, seed=4)
    rng = np.random.default_rng(0)
    vad = StreamingVAD(SR)
    emitted, position = [], 0
    while position < len(wav):
        size = int(rng.integers(0, 3000))
        for segment in vad.accept(wav[position : position + size]):
            emitted.append((segment, (position + size) / SR))
        position += size
    assert len(emitted) == len(BURSTS) - 1  # the last burst ends 0.55 s before the end of the audio
    for (_, end), now in emitted:
        assert now - end <= vad.max_delay_seconds + 3000 / SR
    assert [seg for seg, _ in emitted] + vad.flush() == detect_speech(wav, SR).segments


def test_silence_noise_only_and_dc_give_no_speech():
    assert detect_speech(np.zeros(SR), SR).segments == []
    noise = 0.05 * np.random.default_rng(0).standard_normal(5 * SR)
    assert detect_speech(noise, SR).segments == []
    assert not speech_mask(np.full(2 * SR, 0.4, dtype=np.float32), SR).any()
    # A DC offset under the bursts changes nothing (the mean is removed per frame).
    wav = tone_bursts_in_noise(10.0)
    assert detect_speech(wav + 0.5, SR).segments == detect_speech(wav, SR).segments


def test_short_and_integer_audio():
    result = detect_speech(np.zeros(100, dtype=np.int16), SR)
    assert result.segments == [] and result.speech_mask.shape == (1,)
    vad = StreamingVAD(SR)
    assert vad.accept(np.zeros(100)) == [] and vad.flush() == []
    assert frame_log_energy(np.zeros(100), SR).shape == (1,)
    burst = (tone_bursts_in_noise(10.0) * 32767).astype(np.int16)
    assert len(detect_speech(burst, SR).segments) == len(BURSTS)


def test_real_speech_is_mostly_speech(speech_16k):
    result = detect_speech(speech_16k, SR)
    assert 0.6 < result.speech_mask.mean() <= 1.0
    assert result.segments and result.segments[0][0] < 0.5


def test_bad_input_raises():
    wav = np.zeros(SR, dtype=np.float32)
    wav[10] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        detect_speech(wav, SR)
    with pytest.raises(ValueError):
        StreamingVAD(SR).accept(wav)
    with pytest.raises(AudioError):
        detect_speech(np.zeros(0), SR)
    with pytest.raises(AudioError):
        detect_speech(np.zeros(SR), 0)
    with pytest.raises(ConfigError, match="onset_db"):
        VADConfig(onset_db=2.0, offset_db=3.0)
