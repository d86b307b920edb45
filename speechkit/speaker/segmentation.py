"""Multi-scale uniform segmentation of speech regions, as MSDD diarization uses it.

Each scale cuts every speech region into windows of ``window`` seconds every ``shift`` seconds
(NeMo's ``get_subsegments``): a region shorter than the window is one segment, and the last window
of a region is shortened to end where the region ends, so the segments of every scale cover the
speech exactly and nothing else. With ``shift = window / 2`` the shortened last segment is always
longer than half a window, so no scrap needs merging.

The finest scale (the last, shortest window) is the *base scale*: diarization labels are decided
per base segment. The *scale mapping* of MSDD (Park et al. 2022, "Multi-scale speaker diarization
with dynamic scale weighting") links every base segment to the segment of each scale whose centre
is nearest to its own (ties go to the earlier segment, as NeMo's ``get_argmin_mat``), so per-scale
embeddings and affinities can be read at base resolution.

Shapes: segments [S_k, 2] (start, end seconds) for scale k; mapping [K, S_base] of indices into
each scale's segments (row K - 1 is ``arange(S_base)``).

Example:
    >>> ms = multiscale_segments([(0.0, 2.0)], [Scale(1.0, 0.5), Scale(0.5, 0.25)])
    >>> ms.segments[0].tolist()
    [[0.0, 1.0], [0.5, 1.5], [1.0, 2.0]]
    >>> ms.mapping.tolist()
    [[0, 0, 0, 1, 1, 2, 2], [0, 1, 2, 3, 4, 5, 6]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from speechkit.errors import ConfigError

__all__ = [
    "DEFAULT_SCALES",
    "MultiScaleSegments",
    "Scale",
    "multiscale_segments",
    "scale_mapping",
    "uniform_segments",
]

# Slack when counting windows, so a region of exactly n shifts does not get a zero-length extra window.
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Scale:
    """One segmentation scale: windows of ``window`` seconds every ``shift`` seconds (shift <= window).

    Example:
        >>> Scale(1.5, 0.75)
        Scale(window=1.5, shift=0.75)
    """

    window: float
    shift: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.window) and self.window > 0):
            raise ConfigError(f"Scale.window must be a positive number of seconds, got {self.window}")
        if not (math.isfinite(self.shift) and 0 < self.shift <= self.window):
            raise ConfigError(f"Scale.shift must lie in (0, window={self.window}], got {self.shift}")


#: Three of NeMo's five MSDD default scales (1.5, 1.25, 1.0, 0.75, 0.5 s windows, 50 % shift).
DEFAULT_SCALES = (Scale(1.5, 0.75), Scale(1.0, 0.5), Scale(0.5, 0.25))


def _speech_regions(regions: np.ndarray | Sequence[tuple[float, float]]) -> np.ndarray:
    """Regions as float64 [R, 2], sorted, with overlapping or touching ones merged."""
    array = np.asarray(regions, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 2))
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"speech regions must have shape [R, 2] (start, end seconds), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("speech regions contain NaN or Inf")
    if np.any(array[:, 0] < 0) or np.any(array[:, 1] <= array[:, 0]):
        raise ValueError("every speech region needs 0 <= start < end")
    array = array[np.argsort(array[:, 0], kind="stable")]
    merged = [array[0].copy()]
    for start, end in array[1:]:
        if start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append(np.array([start, end]))
    return np.stack(merged)


def uniform_segments(regions: np.ndarray | Sequence[tuple[float, float]], scale: Scale) -> np.ndarray:
    """Cut speech regions into the windows of one scale.

    Args:
        regions: speech (start, end) seconds [R, 2], e.g. VAD segments; overlapping ones are merged.
        scale: window and shift.

    Returns:
        float64 [S, 2] segments in time order; their union is the union of ``regions``.

    Example:
        >>> uniform_segments([(0.0, 1.2), (3.0, 3.4)], Scale(1.0, 0.5)).tolist()
        [[0.0, 1.0], [0.5, 1.2], [3.0, 3.4]]
    """
    pieces = []
    for start, end in _speech_regions(regions):
        duration = end - start
        # Windows after the first: enough shifts for the last window to reach the region's end.
        extra = max(0, math.ceil((duration - scale.window) / scale.shift - _TOLERANCE))
        starts = start + scale.shift * np.arange(extra + 1)
        pieces.append(np.stack([starts, np.minimum(starts + scale.window, end)], axis=1))
    return np.concatenate(pieces) if pieces else np.zeros((0, 2))


def _nearest_by_centre(base_centres: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index into ``centres`` (sorted) nearest to each base centre, the earlier one on a tie."""
    if len(centres) == 1:
        return np.zeros(len(base_centres), dtype=np.int64)
    right = np.clip(np.searchsorted(centres, base_centres, side="left"), 1, len(centres) - 1)
    left = right - 1
    pick_left = np.abs(base_centres - centres[left]) <= np.abs(base_centres - centres[right])
    return np.where(pick_left, left, right).astype(np.int64)


def scale_mapping(segments_per_scale: Sequence[np.ndarray]) -> np.ndarray:
    """For each base segment (last scale), the nearest segment of every scale by centre distance.

    Args:
        segments_per_scale: K arrays [S_k, 2] in time order, the base scale last.

    Returns:
        int64 [K, S_base]; ``mapping[k, i]`` indexes ``segments_per_scale[k]``.

    Example:
        >>> coarse = np.array([[0.0, 1.0], [0.5, 1.5]])
        >>> fine = np.array([[0.0, 0.5], [0.25, 0.75], [0.5, 1.0], [0.75, 1.25], [1.0, 1.5]])
        >>> scale_mapping([coarse, fine]).tolist()
        [[0, 0, 0, 1, 1], [0, 1, 2, 3, 4]]
    """
    if not segments_per_scale:
        raise ValueError("scale_mapping needs at least one scale")
    base = np.asarray(segments_per_scale[-1], dtype=np.float64).reshape(-1, 2)
    base_centres = base.mean(axis=1)
    mapping = np.zeros((len(segments_per_scale), len(base)), dtype=np.int64)
    for k, segments in enumerate(segments_per_scale):
        centres = np.asarray(segments, dtype=np.float64).reshape(-1, 2).mean(axis=1)
        if len(base) and not len(centres):
            raise ValueError(f"scale {k} has no segments but the base scale has {len(base)}")
        if np.any(np.diff(centres) < 0):
            raise ValueError(f"segments of scale {k} are not in time order")
        if len(base):
            mapping[k] = _nearest_by_centre(base_centres, centres)
    return mapping


@dataclass(frozen=True)
class MultiScaleSegments:
    """The segments of every scale and the scale mapping onto the base (finest) scale.

    Attributes:
        scales: K scales, longest window first.
        segments: K float64 arrays [S_k, 2] of (start, end) seconds.
        mapping: int64 [K, S_base], see :func:`scale_mapping`.
    """

    scales: tuple[Scale, ...]
    segments: tuple[np.ndarray, ...]
    mapping: np.ndarray

    @property
    def num_scales(self) -> int:
        return len(self.scales)

    @property
    def base_segments(self) -> np.ndarray:
        """[S_base, 2] segments of the finest scale."""
        return self.segments[-1]

    @property
    def num_base_segments(self) -> int:
        return len(self.segments[-1])


def multiscale_segments(
    regions: np.ndarray | Sequence[tuple[float, float]], scales: Sequence[Scale] = DEFAULT_SCALES
) -> MultiScaleSegments:
    """Segment speech regions at every scale and map the base scale onto the others.

    Args:
        regions: speech (start, end) seconds [R, 2].
        scales: windows strictly decreasing; the last is the base scale.

    Returns:
        :class:`MultiScaleSegments`; with no speech every scale has zero segments.
    """
    scales = tuple(scales)
    if not scales:
        raise ConfigError("multiscale_segments needs at least one Scale")
    windows = [scale.window for scale in scales]
    if any(a <= b for a, b in zip(windows, windows[1:])):
        raise ConfigError(f"scale windows must be strictly decreasing (base scale last), got {windows}")
    regions = _speech_regions(regions)
    segments = tuple(uniform_segments(regions, scale) for scale in scales)
    return MultiScaleSegments(scales=scales, segments=segments, mapping=scale_mapping(segments))
