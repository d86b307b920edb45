"""Multi-scale segmentation: exact coverage of speech, window rules, the nearest-centre mapping."""

from __future__ import annotations

import numpy as np
import pytest

from speechkit.errors import ConfigError
from speechkit.speaker.segmentation import (
    DEFAULT_SCALES,
    Scale,
    multiscale_segments,
    scale_mapping,
    uniform_segments,
)


def random_regions(seed: int, count: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gaps = rng.uniform(0.05, 1.0, count)
    lengths = rng.choice([0.1, 0.3, 0.5, 0.75, 1.0, 1.5, 2.25, 3.7, 6.0], count) + rng.uniform(0, 0.2, count)
    starts = np.cumsum(gaps + np.concatenate([[0.0], lengths[:-1]]))
    return np.stack([starts, starts + lengths], axis=1)


def union(intervals: np.ndarray) -> list[list[float]]:
    out: list[list[float]] = []
    for start, end in sorted(intervals.tolist()):
        if out and start <= out[-1][1] + 1e-9:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return out


@pytest.mark.parametrize("seed", range(5))
def test_every_scale_covers_speech_exactly(seed):
    regions = random_regions(seed)
    ms = multiscale_segments(regions)
    assert ms.num_scales == 3 and ms.scales == DEFAULT_SCALES
    for scale, segments in zip(ms.scales, ms.segments):
        np.testing.assert_allclose(union(segments), regions, atol=1e-9)
        lengths = segments[:, 1] - segments[:, 0]
        assert np.all(lengths > 0) and np.all(lengths <= scale.window + 1e-9)
        # Every segment lies inside one region: none straddles a pause.
        inside = (segments[:, None, 0] >= regions[None, :, 0] - 1e-9) & (
            segments[:, None, 1] <= regions[None, :, 1] + 1e-9
        )
        assert np.all(inside.sum(axis=1) == 1)
        # Full windows except each region's last; a last window keeps more than half a window
        # (shift = window / 2) unless the whole region is shorter than that.
        short = lengths < scale.window - 1e-9
        ends_region = np.isclose(segments[:, 1][:, None], regions[None, :, 1]).any(axis=1)
        assert np.all(ends_region[short])
        region_len = (regions[:, 1] - regions[:, 0])[np.argmax(inside, axis=1)]
        assert np.all((lengths > scale.window / 2) | np.isclose(lengths, region_len))


def test_window_rules_on_a_hand_example():
    segments = uniform_segments([(10.0, 13.0), (20.0, 20.4)], Scale(1.5, 0.75))
    expected = [[10.0, 11.5], [10.75, 12.25], [11.5, 13.0], [20.0, 20.4]]
    np.testing.assert_allclose(segments, expected)
    # A region of exactly window + n shifts gets no zero-length extra window.
    np.testing.assert_allclose(uniform_segments([(0.0, 2.0)], Scale(1.0, 0.5))[-1], [1.0, 2.0])
    # The last window is shortened to the region's end.
    np.testing.assert_allclose(uniform_segments([(0.0, 1.3)], Scale(1.0, 0.5)), [[0.0, 1.0], [0.5, 1.3]])


@pytest.mark.parametrize("seed", range(3))
def test_mapping_picks_the_nearest_centre(seed):
    ms = multiscale_segments(random_regions(seed))
    base_centres = ms.base_segments.mean(axis=1)
    assert ms.mapping.shape == (3, ms.num_base_segments)
    np.testing.assert_array_equal(ms.mapping[-1], np.arange(ms.num_base_segments))
    for k, segments in enumerate(ms.segments):
        distance = np.abs(base_centres[:, None] - segments.mean(axis=1)[None, :])
        np.testing.assert_array_equal(ms.mapping[k], np.argmin(distance, axis=1))  # argmin: first on ties


def test_mapping_ties_go_to_the_earlier_segment():
    coarse = np.array([[0.0, 1.0], [1.0, 2.0]])  # centres 0.5 and 1.5
    base = np.array([[0.5, 1.5], [1.4, 1.6], [3.0, 4.0]])  # centre 1.0 is equidistant
    np.testing.assert_array_equal(scale_mapping([coarse, base]), [[0, 1, 1], [0, 1, 2]])


def test_unsorted_overlapping_regions_are_merged_and_empty_input_is_empty():
    ms = multiscale_segments([(5.0, 6.0), (0.0, 1.0), (0.5, 2.0)])
    np.testing.assert_allclose(union(ms.segments[0]), [[0.0, 2.0], [5.0, 6.0]])
    empty = multiscale_segments([])
    assert all(s.shape == (0, 2) for s in empty.segments) and empty.mapping.shape == (3, 0)


def test_invalid_scales_and_regions_raise():
    with pytest.raises(ConfigError):
        Scale(1.0, 1.5)
    with pytest.raises(ConfigError):
        Scale(0.0, 0.0)
    with pytest.raises(ConfigError, match="decreasing"):
        multiscale_segments([(0.0, 1.0)], [Scale(0.5, 0.25), Scale(1.0, 0.5)])
    with pytest.raises(ValueError):
        uniform_segments([(1.0, 0.5)], Scale(1.0, 0.5))
    with pytest.raises(ValueError):
        uniform_segments([(0.0, float("nan"))], Scale(1.0, 0.5))
