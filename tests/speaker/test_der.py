"""Diarization error rate on hand-computed cases (times on the 10 ms grid, so scoring is exact)."""

from __future__ import annotations

import math

import pytest

from speechkit.errors import DataError
from speechkit.speaker.der import NIST_COLLAR, diarization_error_rate
from speechkit.speaker.rttm import Segment

REF = [Segment(0.0, 10.0, "A"), Segment(10.0, 20.0, "B"), Segment(25.0, 30.0, "A")]


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, abs_tol=1e-9)


def test_perfect_hypothesis_scores_zero() -> None:
    result = diarization_error_rate(REF, REF)
    assert result.der == 0.0 and _close(result.total, 25.0)
    assert result.mapping == {"A": "A", "B": "B"}


def test_label_permutation_scores_zero() -> None:
    hyp = [Segment(s.start, s.end, {"A": "spk1", "B": "spk0"}[s.speaker]) for s in REF]
    result = diarization_error_rate(REF, hyp)
    assert result.der == 0.0 and result.mapping == {"spk0": "B", "spk1": "A"}


def test_empty_hypothesis_misses_everything() -> None:
    result = diarization_error_rate(REF, [])
    assert result.der == 1.0 and _close(result.missed, 25.0)
    assert result.false_alarm == result.confusion == 0.0 and result.mapping == {}


def test_hypothesis_only_in_silence_is_missed_plus_false_alarm() -> None:
    result = diarization_error_rate(REF, [Segment(20.0, 25.0, "x")])
    assert _close(result.missed, 25.0) and _close(result.false_alarm, 5.0) and result.mapping == {}
    assert _close(result.der, 30.0 / 25.0)


def test_one_hypothesis_speaker_for_two_is_half_confusion() -> None:
    ref = [Segment(0.0, 10.0, "A"), Segment(10.0, 20.0, "B")]
    result = diarization_error_rate(ref, [Segment(0.0, 20.0, "x")])
    assert _close(result.confusion, 10.0) and _close(result.der, 0.5)
    assert result.missed == result.false_alarm == 0.0 and len(result.mapping) == 1


def test_extra_unmapped_hypothesis_speaker_is_confusion() -> None:
    ref = [Segment(0.0, 10.0, "A")]
    hyp = [Segment(0.0, 6.0, "x"), Segment(6.0, 10.0, "y")]
    result = diarization_error_rate(ref, hyp)
    assert result.mapping == {"x": "A"} and _close(result.confusion, 4.0) and _close(result.der, 0.4)


def test_collar_removes_boundary_errors() -> None:
    ref = [Segment(1.0, 10.0, "A"), Segment(12.0, 15.0, "B")]
    hyp = [Segment(1.2, 10.1, "a"), Segment(11.8, 15.0, "b")]
    exact = diarization_error_rate(ref, hyp)
    assert _close(exact.missed, 0.2) and _close(exact.false_alarm, 0.3) and _close(exact.total, 12.0)
    collared = diarization_error_rate(ref, hyp, collar=NIST_COLLAR)
    # +/- 0.25 s around 4 boundaries removes 4 x 0.25 s of reference speech (the inner halves).
    assert collared.der == 0.0 and _close(collared.total, 11.0)
    # A collar narrower than the boundary error only removes part of it.
    partial = diarization_error_rate(ref, hyp, collar=0.1)
    assert _close(partial.missed, 0.1) and _close(partial.false_alarm, 0.1)


def test_overlapped_reference_speech_counts_twice() -> None:
    ref = [Segment(0.0, 10.0, "A"), Segment(5.0, 15.0, "B")]
    hyp = [Segment(0.0, 10.0, "a"), Segment(10.0, 15.0, "b")]  # misses the overlapping speaker
    result = diarization_error_rate(ref, hyp)
    assert _close(result.total, 20.0) and _close(result.missed, 5.0) and _close(result.der, 0.25)
    skipped = diarization_error_rate(ref, hyp, skip_overlap=True)
    assert _close(skipped.total, 10.0) and skipped.der == 0.0


def test_a_speakers_own_overlapping_segments_count_once() -> None:
    ref = [Segment(0.0, 6.0, "A"), Segment(4.0, 10.0, "A")]
    result = diarization_error_rate(ref, [Segment(0.0, 10.0, "a")])
    assert _close(result.total, 10.0) and result.der == 0.0


def test_empty_reference() -> None:
    assert diarization_error_rate([], []).der == 0.0
    result = diarization_error_rate([], [Segment(0.0, 1.0, "a")])
    assert result.der == math.inf and _close(result.false_alarm, 1.0)


def test_grid_places_off_grid_boundaries_within_half_a_frame() -> None:
    result = diarization_error_rate([Segment(0.0, 1.0, "A")], [Segment(0.0, 1.004, "a")])
    assert result.der == 0.0
    coarse = diarization_error_rate([Segment(0.0, 1.0, "A")], [Segment(0.0, 1.3, "a")], frame_step=0.1)
    assert _close(coarse.false_alarm, 0.3)


def test_bad_options_raise() -> None:
    with pytest.raises(DataError, match="collar"):
        diarization_error_rate(REF, REF, collar=-0.1)
    with pytest.raises(DataError, match="frame_step"):
        diarization_error_rate(REF, REF, frame_step=0.0)
    with pytest.raises(DataError, match="Segment"):
        diarization_error_rate([(0.0, 1.0, "A")], REF)
