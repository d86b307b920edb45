"""Verification metrics and scoring: EER, minDCF, cosine scores, AS-norm, threshold calibration."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from speechkit.errors import ConfigError
from speechkit.speaker.scoring import (
    ThresholdCalibration,
    as_norm,
    as_norm_embeddings,
    cosine_scores,
    equal_error_rate,
    error_rates,
    l2_normalize,
    min_dcf,
)


def gaussian_trials(num_target: int, num_nontarget: int, separation: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(separation, 1.0, num_target), rng.normal(0.0, 1.0, num_nontarget)])
    return scores, np.arange(num_target + num_nontarget) < num_target


def test_eer_of_separable_scores_is_zero_with_a_separating_threshold():
    scores = np.array([0.9, 0.95, 0.7, 0.1, 0.3, 0.2])
    labels = np.array([1, 1, 1, 0, 0, 0])
    eer, threshold = equal_error_rate(scores, labels)
    assert eer == 0.0
    assert 0.3 < threshold <= 0.7
    assert error_rates(scores, labels, threshold) == (0.0, 0.0)


def test_eer_of_random_scores_is_one_half():
    rng = np.random.default_rng(0)
    eer, _ = equal_error_rate(rng.standard_normal(20000), rng.random(20000) < 0.3)
    assert abs(eer - 0.5) < 0.02


def test_eer_hand_examples():
    # 3 v 3: at threshold 0.7 one target (0.4) is rejected and one non-target (0.7) accepted.
    eer, threshold = equal_error_rate([0.9, 0.8, 0.4, 0.7, 0.3, 0.2], [1, 1, 1, 0, 0, 0])
    assert eer == pytest.approx(1 / 3) and threshold == pytest.approx(0.7)
    # Unequal counts: ROC points (FRR, FAR) = (0, 1/2) at t=2 and (1/3, 0) at t=3 cross at 1/3, t=7/3.
    eer, threshold = equal_error_rate(
        np.array([4.0, 3.0, 1.0, 2.0, 0.0]), np.array([True, True, True, False, False])
    )
    assert eer == pytest.approx(1 / 3) and threshold == pytest.approx(7 / 3)
    # Fully reversed scores: everything is an error.
    assert equal_error_rate([0.0, 0.1], [1, 0])[0] == pytest.approx(1.0)


def test_eer_matches_theory_and_is_rank_based():
    scores, labels = gaussian_trials(20000, 20000, separation=2.0)
    eer, threshold = equal_error_rate(scores, labels)
    assert eer == pytest.approx(0.5 * math.erfc(1.0 / math.sqrt(2)), abs=0.01)  # Phi(-d'/2), d' = 2
    assert threshold == pytest.approx(1.0, abs=0.05)
    frr, far = error_rates(scores, labels, threshold)
    assert frr == pytest.approx(eer, abs=0.002) and far == pytest.approx(eer, abs=0.002)
    assert equal_error_rate(np.exp(3 * scores), labels)[0] == pytest.approx(eer, abs=1e-4)


def test_min_dcf_bounds_and_threshold():
    scores, labels = gaussian_trials(2000, 8000, separation=2.0, seed=1)
    eer, _ = equal_error_rate(scores, labels)
    for p_target in (0.5, 0.1, 0.01, 0.001):
        value, threshold = min_dcf(scores, labels, p_target=p_target)
        assert 0.0 <= value <= 1.0
        frr, far = error_rates(scores, labels, threshold)
        c_def = min(p_target, 1 - p_target)
        assert value == pytest.approx((p_target * frr + (1 - p_target) * far) / c_def)
    # With p_target 0.5 and unit costs the normalised cost is P_miss + P_fa: between EER and 2 EER.
    half, _ = min_dcf(scores, labels, p_target=0.5)
    assert eer - 1e-9 <= half <= 2 * eer + 1e-9
    # Rarer targets cost more (the cost is normalised by a smaller trivial cost).
    assert min_dcf(scores, labels, p_target=0.01)[0] > half
    # Separable scores cost nothing; uninformative ones cost as much as the trivial system.
    assert min_dcf([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0])[0] == 0.0
    assert min_dcf(np.zeros(100), np.arange(100) < 30, p_target=0.01)[0] == pytest.approx(1.0)
    value, threshold = min_dcf(np.zeros(100), np.arange(100) < 30, p_target=0.01)
    assert threshold == math.inf  # rejecting everything is the best there is
    weighted, _ = min_dcf(scores, labels, p_target=0.05, c_miss=10.0, c_fa=1.0)
    assert 0.0 <= weighted <= 1.0


def test_cosine_scores_are_dot_products_of_unit_vectors():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 8)), rng.standard_normal((5, 8))
    expected = [x @ y / np.linalg.norm(x) / np.linalg.norm(y) for x, y in zip(a, b)]
    np.testing.assert_allclose(cosine_scores(a, b), expected)
    np.testing.assert_allclose(cosine_scores(3 * a, b), expected)
    np.testing.assert_allclose(np.linalg.norm(l2_normalize(a), axis=1), 1.0)
    assert cosine_scores(a[0], a[0]).shape == () and float(cosine_scores(a[0], a[0])) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        cosine_scores(a, b[:3])


def speaker_offset_trials(seed: int = 0):
    """Scores where every speaker shifts all its scores by its own offset (as a channel would)."""
    rng = np.random.default_rng(seed)
    num_speakers, num_cohort = 60, 300
    offset = rng.normal(0.0, 0.3, num_speakers)
    enrol, test = np.triu_indices(num_speakers, k=1)  # every pair of speakers once: non-targets
    same = np.repeat(np.arange(num_speakers), 2)  # two target trials per speaker
    enrol, test = np.concatenate([enrol, same]), np.concatenate([test, same])
    labels = enrol == test
    scores = 0.6 * labels + offset[enrol] + offset[test] + rng.normal(0.0, 0.1, len(enrol))
    # Each speaker against impostor cohort speakers: its own offset plus the cohort's small ones.
    cohort_offset = rng.normal(0.0, 0.05, num_cohort)
    cohort = offset[:, None] + cohort_offset[None, :] + rng.normal(0.0, 0.1, (num_speakers, num_cohort))
    return scores, labels, cohort[enrol], cohort[test]


def test_as_norm_removes_speaker_offsets():
    scores, labels, enrol_cohort, test_cohort = speaker_offset_trials()
    raw_eer, _ = equal_error_rate(scores, labels)
    normed = as_norm(scores, enrol_cohort, test_cohort, top_k=100)
    normed_eer, _ = equal_error_rate(normed, labels)
    assert raw_eer > 0.1
    assert normed_eer < 0.5 * raw_eer
    # A global affine change of the score scale leaves AS-norm unchanged.
    np.testing.assert_allclose(
        as_norm(3 * scores + 1, 3 * enrol_cohort + 1, 3 * test_cohort + 1, top_k=100), normed
    )
    # top_k beyond the cohort size uses the whole cohort.
    np.testing.assert_allclose(
        as_norm(scores, enrol_cohort, test_cohort, top_k=10_000),
        as_norm(scores, enrol_cohort, test_cohort, top_k=300),
    )


def test_as_norm_embeddings_matches_score_domain():
    rng = np.random.default_rng(0)
    enrol, test, cohort = (
        rng.standard_normal((4, 6)),
        rng.standard_normal((4, 6)),
        rng.standard_normal((20, 6)),
    )
    unit_cohort = l2_normalize(cohort)
    expected = as_norm(
        cosine_scores(enrol, test), l2_normalize(enrol) @ unit_cohort.T, l2_normalize(test) @ unit_cohort.T, 5
    )
    np.testing.assert_allclose(as_norm_embeddings(enrol, test, cohort, top_k=5), expected)
    with pytest.raises(ValueError):
        as_norm(np.zeros(4), np.zeros((4, 3)), np.zeros((3, 3)))


def test_calibration_at_eer_and_at_a_target_far():
    scores, labels = gaussian_trials(1000, 4000, separation=2.5, seed=2)
    at_eer = ThresholdCalibration.fit(scores, labels)
    eer, threshold = equal_error_rate(scores, labels)
    assert at_eer.operating_point == "eer" and at_eer.threshold == threshold
    assert at_eer.dev_frr == pytest.approx(eer, abs=0.002) and at_eer.dev_far == pytest.approx(eer, abs=0.002)

    strict = ThresholdCalibration.fit(scores, labels, target_far=0.01)
    assert strict.operating_point == "far" and strict.dev_far <= 0.01
    # It is the lowest such threshold: one step down crosses the target.
    nontarget = np.sort(scores[~labels])
    below = nontarget[nontarget < strict.threshold][-1]
    assert error_rates(scores, labels, below)[1] > 0.01
    assert strict.threshold > at_eer.threshold and strict.dev_frr > at_eer.dev_frr
    zero = ThresholdCalibration.fit(scores, labels, target_far=0.0)
    assert zero.dev_far == 0.0 and zero.threshold > nontarget[-1]
    np.testing.assert_array_equal(strict.accept(scores), scores >= strict.threshold)


def test_platt_probabilities_are_calibrated():
    scores, labels = gaussian_trials(3000, 3000, separation=1.5, seed=3)
    calibration = ThresholdCalibration.fit(scores, labels)
    probability = calibration.probability(scores)
    assert np.all((probability > 0) & (probability < 1))
    assert np.all(np.diff(calibration.probability(np.linspace(-5, 5, 50))) > 0)
    # Equal-variance gaussians with equal priors: the true posterior is logistic with slope d' = 1.5
    # and 0.5 at the midpoint.
    assert calibration.platt_scale == pytest.approx(1.5, rel=0.1)
    assert float(calibration.probability(0.75)) == pytest.approx(0.5, abs=0.03)
    # Binned reliability: predicted probability matches the observed target fraction.
    for low, high in [(0.1, 0.3), (0.4, 0.6), (0.7, 0.9)]:
        inside = (probability >= low) & (probability < high)
        assert labels[inside].mean() == pytest.approx(probability[inside].mean(), abs=0.05)
    assert float(calibration.probability(1e6)) == 1.0 and float(calibration.probability(-1e6)) == 0.0


def test_calibration_json_round_trip_is_strict():
    scores, labels = gaussian_trials(200, 800, separation=2.0)
    calibration = ThresholdCalibration.fit(scores, labels, target_far=0.05)
    text = calibration.to_json()
    data = json.loads(text)
    assert data["kind"] == "threshold-calibration" and data["version"] == 1
    restored = ThresholdCalibration.from_json(text)
    assert restored == calibration
    np.testing.assert_array_equal(restored.probability(scores), calibration.probability(scores))
    with pytest.raises(ConfigError, match="unknown"):
        ThresholdCalibration.from_dict({**data, "extra": 1})
    with pytest.raises(ConfigError, match="missing"):
        ThresholdCalibration.from_dict({k: v for k, v in data.items() if k != "threshold"})
    with pytest.raises(ConfigError, match="version"):
        ThresholdCalibration.from_dict({**data, "version": 99})
    with pytest.raises(ConfigError):
        ThresholdCalibration.from_json("not json")


def test_bad_trial_lists_raise():
    with pytest.raises(ValueError, match="both"):
        equal_error_rate([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="length"):
        min_dcf([0.1, 0.2, 0.3], [1, 0])
    with pytest.raises(ValueError, match="NaN"):
        equal_error_rate([np.nan, 0.2], [1, 0])
    with pytest.raises(ValueError, match="labels"):
        equal_error_rate([0.1, 0.2], [2, 0])
    with pytest.raises(ValueError, match="p_target"):
        min_dcf([0.1, 0.2], [1, 0], p_target=1.0)
    with pytest.raises(ValueError, match="target_far"):
        ThresholdCalibration.fit([0.1, 0.2], [1, 0], target_far=1.5)
