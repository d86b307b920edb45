"""Diarization error rate (DER), scored as NIST md-eval does, on a fine time grid.

    DER = (missed + false_alarm + confusion) / total

Every quantity is in seconds of *speaker time*: a stretch where two reference speakers talk at
once counts twice in ``total``. Per scored instant, with ``n_ref`` reference and ``n_hyp``
hypothesis speakers active and ``n_correct`` of the hypothesis speakers mapped to an active
reference speaker (md-eval's definitions):

* missed = max(0, n_ref - n_hyp), false_alarm = max(0, n_hyp - n_ref),
* confusion = min(n_ref, n_hyp) - n_correct, total = n_ref.

The mapping from hypothesis to reference labels is one-to-one and maximises the total overlap
between mapped speakers (Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``), computed
over the scored time only. Hypothesis speakers left unmapped (more of them than reference
speakers, or no overlap with any) count as confusion where they overlap reference speech and as
false alarm elsewhere.

Scoring options:

* ``collar``: seconds on *each side* of every reference segment boundary (onset and offset) that
  are not scored, as md-eval's ``-c`` does; 0.25 s (:data:`NIST_COLLAR`, half a second around each
  boundary) is the classic NIST RT setting, 0 (the default) scores everything. pyannote.metrics'
  ``collar`` is the *total* width, so its 0.5 equals 0.25 here.
* ``skip_overlap``: do not score instants where two or more reference speakers overlap.

The time grid: time is cut into frames of ``frame_step`` seconds (10 ms by default) and a frame
belongs to a segment when its centre lies inside it (likewise for the collar), so each boundary is
placed to within half a frame; boundaries on the 10 ms grid are scored exactly.

Example:
    >>> from speechkit.speaker.rttm import Segment
    >>> ref = [Segment(0.0, 4.0, "alice"), Segment(4.0, 8.0, "bob")]
    >>> hyp = [Segment(0.0, 4.2, "spk0"), Segment(4.2, 8.0, "spk1")]
    >>> result = diarization_error_rate(ref, hyp)
    >>> round(result.der, 4), round(result.confusion, 4), result.mapping
    (0.025, 0.2, {'spk0': 'alice', 'spk1': 'bob'})
    >>> diarization_error_rate(ref, hyp, collar=NIST_COLLAR).der
    0.0
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from speechkit.errors import DataError
from speechkit.speaker.rttm import Segment

__all__ = ["NIST_COLLAR", "DiarizationErrorRate", "diarization_error_rate"]

NIST_COLLAR = 0.25
DEFAULT_FRAME_STEP = 0.01


@dataclasses.dataclass(frozen=True)
class DiarizationErrorRate:
    """The DER of one recording and its parts, in seconds of speaker time.

    Args:
        der: (missed + false_alarm + confusion) / total; 0.0 when nothing is scored and nothing is
            hypothesised, ``inf`` when there is no scored reference speech but hypothesis speech.
        missed: reference speaker time with no hypothesis speaker to cover it.
        false_alarm: hypothesis speaker time beyond the number of reference speakers.
        confusion: speaker time covered by a hypothesis speaker not mapped to the reference one.
        total: scored reference speaker time (overlap counts once per speaker).
        mapping: hypothesis label -> reference label (pairs with zero overlap are left out).
    """

    der: float
    missed: float
    false_alarm: float
    confusion: float
    total: float
    mapping: dict[str, str]


def _frame_index(times: np.ndarray, frame_step: float) -> np.ndarray:
    """First frame whose centre ``(i + 0.5) * frame_step`` is at or after each time."""
    return np.ceil(np.asarray(times, dtype=np.float64) / frame_step - 0.5 - 1e-9).astype(np.int64).clip(0)


def _activity(
    segments: Sequence[Segment], labels: list[str], num_frames: int, frame_step: float
) -> np.ndarray:
    """Boolean speaker activity [num_frames, len(labels)]; a speaker's own overlapping segments merge."""
    counts = np.zeros((num_frames + 1, len(labels)), dtype=np.int64)
    column = {label: k for k, label in enumerate(labels)}
    starts = _frame_index([s.start for s in segments], frame_step)
    ends = _frame_index([s.end for s in segments], frame_step)
    cols = np.array([column[s.speaker] for s in segments], dtype=np.int64)
    # Difference array: +1 at each segment's first frame, -1 after its last, then a running sum.
    np.add.at(counts, (np.minimum(starts, num_frames), cols), 1)
    np.add.at(counts, (np.minimum(ends, num_frames), cols), -1)
    return np.cumsum(counts, axis=0)[:num_frames] > 0


def _collar_mask(
    reference: Sequence[Segment], collar: float, num_frames: int, frame_step: float
) -> np.ndarray:
    """True for frames whose centre is within ``collar`` seconds of a reference onset or offset."""
    if collar == 0 or not reference:
        return np.zeros(num_frames, dtype=bool)
    bounds = np.array([t for s in reference for t in (s.start, s.end)], dtype=np.float64)
    # Centres strictly inside (b - collar, b + collar): from the first centre > b - collar ...
    first = np.floor((bounds - collar) / frame_step - 0.5 + 1e-9).astype(np.int64) + 1
    last = _frame_index(bounds + collar, frame_step)  # ... to before the first centre >= b + collar
    marks = np.zeros(num_frames + 1, dtype=np.int64)
    np.add.at(marks, np.clip(first, 0, num_frames), 1)
    np.add.at(marks, np.clip(last, 0, num_frames), -1)
    return np.cumsum(marks)[:num_frames] > 0


def _check_segments(segments: Sequence[Segment], name: str) -> list[Segment]:
    segments = list(segments)
    for segment in segments:
        if not isinstance(segment, Segment):
            raise DataError(f"{name} must hold Segment objects, got {type(segment).__name__}")
    return segments


def diarization_error_rate(
    reference: Sequence[Segment],
    hypothesis: Sequence[Segment],
    collar: float = 0.0,
    skip_overlap: bool = False,
    frame_step: float = DEFAULT_FRAME_STEP,
) -> DiarizationErrorRate:
    """Score one recording's diarization against its reference (see the module docstring).

    Args:
        reference: true speaker segments (may overlap each other).
        hypothesis: system speaker segments; labels need not match the reference's.
        collar: seconds on each side of every reference boundary left unscored (>= 0).
        skip_overlap: leave instants with two or more reference speakers unscored.
        frame_step: scoring grid in seconds (> 0).

    Returns:
        A :class:`DiarizationErrorRate` with the rate, its parts in seconds and the mapping.

    Raises:
        DataError: a negative collar, a non-positive frame step, or inputs that are not Segments.
    """
    reference = _check_segments(reference, "reference")
    hypothesis = _check_segments(hypothesis, "hypothesis")
    if not (math.isfinite(collar) and collar >= 0):
        raise DataError(f"collar must be >= 0 seconds, got {collar}")
    if not (math.isfinite(frame_step) and frame_step > 0):
        raise DataError(f"frame_step must be > 0 seconds, got {frame_step}")
    end = max((s.end for s in [*reference, *hypothesis]), default=0.0)
    num_frames = int(_frame_index([end], frame_step)[0])
    ref_labels = sorted({s.speaker for s in reference})
    hyp_labels = sorted({s.speaker for s in hypothesis})
    ref = _activity(reference, ref_labels, num_frames, frame_step)  # [N, R]
    hyp = _activity(hypothesis, hyp_labels, num_frames, frame_step)  # [N, H]
    n_ref, n_hyp = ref.sum(axis=1), hyp.sum(axis=1)
    scored = ~_collar_mask(reference, collar, num_frames, frame_step)
    if skip_overlap:
        scored &= n_ref < 2
    ref, hyp, n_ref, n_hyp = ref[scored], hyp[scored], n_ref[scored], n_hyp[scored]

    overlap = ref.T.astype(np.int64) @ hyp.astype(np.int64)  # [R, H] co-active frames
    mapping: dict[str, str] = {}
    n_correct = np.zeros(len(n_ref), dtype=np.int64)
    if overlap.size:
        rows, cols = linear_sum_assignment(overlap, maximize=True)
        for r, h in zip(rows, cols):
            if overlap[r, h] > 0:
                mapping[hyp_labels[h]] = ref_labels[r]
                n_correct += ref[:, r] & hyp[:, h]
    missed = float(np.maximum(n_ref - n_hyp, 0).sum() * frame_step)
    false_alarm = float(np.maximum(n_hyp - n_ref, 0).sum() * frame_step)
    confusion = float((np.minimum(n_ref, n_hyp) - n_correct).sum() * frame_step)
    total = float(n_ref.sum() * frame_step)
    errors = missed + false_alarm + confusion
    if total > 0:
        der = errors / total
    else:
        der = 0.0 if errors == 0 else math.inf
    return DiarizationErrorRate(der, missed, false_alarm, confusion, total, dict(sorted(mapping.items())))
