"""Diarization pipeline: step geometry, decisions, and the offline pipeline on tone 'speakers'.

The speaker encoder here is a stub whose embedding is the segment's normalised log spectrum, so
the tests check the pipeline (speech detection, scales, clustering, MSDD plumbing, segments)
independently of a trained model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechkit.speaker.der import diarization_error_rate
from speechkit.speaker.diarize import (
    Diarizer,
    decide_speakers,
    speaker_centroids,
    step_extents,
    steps_to_segments,
)
from speechkit.speaker.msdd import MSDD, MSDDConfig
from speechkit.speaker.rttm import Segment

RATE = 16000


class SpectrumEncoder:
    """Embedding = unit-norm log power spectrum (64 bands up to 2 kHz) of a segment, plus scatter."""

    sample_rate = RATE
    embedding_dim = 64

    def embed_segments(self, wav: np.ndarray, segments: np.ndarray) -> np.ndarray:
        out = []
        for start, end in np.asarray(segments).reshape(-1, 2):
            piece = wav[int(start * RATE) : int(end * RATE)]
            frames = [piece[i : i + 1024] for i in range(0, max(len(piece) - 1024, 0) + 1, 256)]
            spectrum = np.mean(
                [np.abs(np.fft.rfft(f * np.hanning(len(f)), n=1024)) ** 2 for f in frames], axis=0
            )
            bands = np.log(spectrum[:128].reshape(64, 2).sum(axis=1) + 1e-6)  # Welch spectrum up to 2 kHz
            bands -= bands.mean()
            # real embeddings scatter around the speaker's mean; stationary tones would not
            bands += (
                0.15
                * np.linalg.norm(bands)
                / 8
                * np.random.default_rng(int(start * 1000)).standard_normal(64)
            )
            out.append(bands / max(np.linalg.norm(bands), 1e-8))
        return np.array(out, dtype=np.float32).reshape(-1, 64)


def tone(f0: float, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    wav = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6)) / h for h in range(1, 10))
    return 0.3 * wav / np.max(np.abs(wav))


def conversation(turns: list[tuple[float, float]], pause: float = 0.6) -> tuple[np.ndarray, list[Segment]]:
    """Turns of (f0, seconds) separated by silence; returns audio and the reference."""
    pieces, reference, clock = [], [], 0.0
    silence = np.zeros(int(pause * RATE))
    for i, (f0, seconds) in enumerate(turns):
        pieces += [silence, tone(f0, seconds, i)]
        clock += pause
        reference.append(Segment(clock, clock + seconds, f"f{int(f0)}"))
        clock += seconds
    pieces.append(silence)
    wav = np.concatenate(pieces).astype(np.float32)
    return wav + 1e-4 * np.random.default_rng(0).standard_normal(len(wav)).astype(np.float32), reference


def test_step_extents_tile_each_region():
    base = np.array([[0.0, 0.5], [0.25, 0.75], [2.0, 2.5], [2.25, 2.6]])
    regions = np.array([[0.0, 0.75], [2.0, 2.6]])
    extents = step_extents(base, regions)
    assert extents[0, 0] == 0.0 and extents[1, 1] == 0.75 and extents[2, 0] == 2.0 and extents[3, 1] == 2.6
    assert extents[0, 1] == extents[1, 0] and extents[2, 1] == extents[3, 0]


def test_steps_merge_into_segments_per_speaker():
    extents = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0], [5.0, 6.0]])
    active = np.array([[1, 0], [1, 1], [0, 1], [1, 0]], dtype=bool)
    segments = steps_to_segments(extents, active, ["a", "b"])
    assert segments == [Segment(0.0, 2.0, "a"), Segment(1.0, 3.0, "b"), Segment(5.0, 6.0, "a")]


def test_decisions_keep_the_best_speaker_and_at_most_two():
    probs = np.array([[0.2, 0.9], [0.3, 0.8], [0.1, 0.7]])  # 3 speakers, 2 steps
    active = decide_speakers(probs, threshold=0.5)
    assert active[0].tolist() == [False, True, False]  # nobody passes: the best one anyway
    assert active[1].tolist() == [True, True, False]  # three pass: only the two best


def test_centroids_average_each_speakers_segments():
    coarse = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    fine = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=np.float32)
    mapping = np.array([[0, 0, 1], [0, 1, 2]])
    centroids = speaker_centroids([coarse, fine], mapping, np.array([0, 0, 1]), 2)
    assert np.allclose(centroids[1, 0], [0.0, 1.0]) and np.allclose(centroids[1, 1], [0.0, 1.0])
    assert np.allclose(np.linalg.norm(centroids, axis=-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("method", ["single-scale", "multiscale"])
def test_clustering_pipeline_finds_two_tone_speakers(method):
    wav, reference = conversation([(110, 3.0), (260, 2.5), (110, 2.0), (260, 3.0), (110, 2.5)])
    result = Diarizer(SpectrumEncoder()).diarize(wav, RATE, method=method)
    assert result.num_speakers == 2
    assert diarization_error_rate(reference, result.segments, collar=0.25).der < 0.05


def test_known_speaker_count_and_silence():
    diarizer = Diarizer(SpectrumEncoder())
    wav, _ = conversation([(110, 2.0), (180, 2.0), (300, 2.0)])
    assert diarizer.diarize(wav, RATE, num_speakers=3, method="multiscale").num_speakers == 3
    silent = diarizer.diarize(np.zeros(3 * RATE, np.float32), RATE)
    assert silent.segments == [] and silent.num_speakers == 0


def test_single_short_segment_is_one_speaker():
    wav, reference = conversation([(150, 0.6)])
    result = Diarizer(SpectrumEncoder()).diarize(wav, RATE, method="multiscale")
    assert result.num_speakers == 1 and len(result.segments) == 1


def test_msdd_method_runs_the_decoder_over_cluster_centroids():
    torch.manual_seed(0)
    msdd = MSDD(MSDDConfig(embedding_dim=64, threshold=0.5))
    diarizer = Diarizer(SpectrumEncoder(), msdd)
    wav, _ = conversation([(110, 3.0), (260, 3.0), (110, 3.0)])
    result = diarizer.diarize(wav, RATE)
    assert result.method == "msdd" and result.probabilities.shape == (
        result.num_speakers,
        len(result.step_times),
    )
    assert result.step_speakers.any(axis=1).all()  # every speech step keeps at least one speaker
    with pytest.raises(ValueError, match="unknown"):
        diarizer.diarize(wav, RATE, method="kmeans")
    with pytest.raises(ValueError, match="MSDD"):
        Diarizer(SpectrumEncoder()).diarize(wav, RATE, method="msdd")


def test_streaming_keeps_labels_across_windows_and_matches_offline():
    from speechkit.speaker.streaming import StreamingDiarizer

    turns = [(110, 3.0), (260, 2.5), (110, 2.0), (260, 3.0), (110, 2.5), (260, 2.0), (110, 3.0)]
    wav, reference = conversation(turns)
    diarizer = Diarizer(SpectrumEncoder())
    stream = StreamingDiarizer(diarizer, window_seconds=8.0, hop_seconds=1.0, match_threshold=0.6)
    pieces = []
    for start in range(0, len(wav), 4000):  # 0.25 s chunks
        pieces += stream.accept(wav[start : start + 4000])
    assert pieces and max(p.end for p in pieces) <= len(wav) / RATE
    result = stream.finish()
    offline = diarizer.diarize(wav, RATE, method="multiscale")
    streamed = diarization_error_rate(reference, result.segments, collar=0.25).der
    assert result.num_speakers == 2  # the window moved past earlier turns; the labels held
    assert streamed <= 1.5 * offline_der(offline, reference) + 0.02


def offline_der(result, reference) -> float:
    return diarization_error_rate(reference, result.segments, collar=0.25).der


def test_streaming_silence_and_bad_chunks():
    from speechkit.errors import AudioError
    from speechkit.speaker.streaming import StreamingDiarizer

    stream = StreamingDiarizer(Diarizer(SpectrumEncoder()))
    assert stream.accept(np.zeros(3 * RATE, np.float32)) == []
    assert stream.finish().num_speakers == 0
    with pytest.raises(AudioError):
        stream.accept(np.full(100, np.nan, np.float32))
    with pytest.raises(ValueError, match="hop"):
        StreamingDiarizer(Diarizer(SpectrumEncoder()), window_seconds=2.0, hop_seconds=1.5)
