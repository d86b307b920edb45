"""Speaker verification scoring: cosine scores, AS-norm, EER, minDCF and threshold calibration.

A trial pairs an enrolment and a test embedding; its score is the cosine of the two (the dot product
of L2-normalised vectors), and a trial is accepted when ``score >= threshold``. Labels are True (or
1) for target trials (same speaker) and False for non-target trials.

* :func:`equal_error_rate`: the rate where false rejects equal false accepts, linearly interpolated
  between the two neighbouring ROC points, with the threshold there.
* :func:`min_dcf`: the NIST SRE detection cost ``C_miss P_miss p_target + C_fa P_fa (1 - p_target)``
  minimised over thresholds and divided by the cost of the best trivial system
  ``min(C_miss p_target, C_fa (1 - p_target))``, so 1 means "no better than always rejecting".
* :func:`as_norm`: adaptive symmetric score normalisation (Matejka et al. 2017, "Analysis of score
  normalization in multilingual speaker recognition"): each side's score is
  standardised by the mean and std of its ``top_k`` highest scores against a cohort of impostors,
  and the two are averaged. It removes per-speaker and per-recording score offsets.
* :class:`ThresholdCalibration`: an operating threshold (at the EER or at a target false-accept
  rate) and a logistic map from score to same-speaker probability (Platt 1999), fitted on a dev
  trial list and stored as JSON.

Example:
    >>> scores = np.array([0.9, 0.8, 0.4, 0.7, 0.3, 0.2])
    >>> labels = np.array([True, True, True, False, False, False])
    >>> eer, threshold = equal_error_rate(scores, labels)
    >>> round(eer, 4), round(threshold, 4)
    (0.3333, 0.7)
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from speechkit.errors import ConfigError

__all__ = [
    "ThresholdCalibration",
    "as_norm",
    "as_norm_embeddings",
    "cosine_scores",
    "equal_error_rate",
    "error_rates",
    "l2_normalize",
    "min_dcf",
]


def l2_normalize(embeddings: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Scale embeddings [..., D] to unit L2 norm (a zero vector stays zero).

    Example:
        >>> l2_normalize(np.array([3.0, 4.0])).tolist()
        [0.6, 0.8]
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("embeddings contain NaN or Inf")
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def cosine_scores(enrol: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Cosine score of each trial: row i of ``enrol`` [T, D] against row i of ``test`` [T, D] -> [T].

    Single embeddings [D] give a 0-d array. For all-against-all scores use
    ``l2_normalize(enrol) @ l2_normalize(test).T``.

    Example:
        >>> cosine_scores(np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([[2.0, 0.0], [0.0, 1.0]])).round(4).tolist()
        [1.0, 0.7071]
    """
    a, b = l2_normalize(enrol), l2_normalize(test)
    if a.shape != b.shape:
        raise ValueError(f"enrol and test must have the same shape, got {a.shape} and {b.shape}")
    return np.sum(a * b, axis=-1)


def _trials(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in length: {scores.shape[0]} vs {labels.shape[0]}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or Inf")
    if labels.dtype != bool:
        if not np.all(np.isin(labels, (0, 1))):
            raise ValueError("labels must be booleans or 0/1 (1 = same speaker)")
        labels = labels.astype(bool)
    if labels.all() or not labels.any():
        raise ValueError("scoring needs both target (True) and non-target (False) trials")
    return scores, labels


def _roc(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thresholds at every distinct score (ascending) plus +inf, with P_miss and P_fa at each."""
    thresholds = np.append(np.unique(scores), np.inf)
    target, nontarget = np.sort(scores[labels]), np.sort(scores[~labels])
    p_miss = np.searchsorted(target, thresholds, side="left") / len(target)  # target < t: rejected
    p_fa = (len(nontarget) - np.searchsorted(nontarget, thresholds, side="left")) / len(nontarget)  # >= t
    return thresholds, p_miss, p_fa


def error_rates(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """(false reject rate, false accept rate) when trials with ``score >= threshold`` are accepted.

    Example:
        >>> error_rates(np.array([0.9, 0.4, 0.6, 0.1]), np.array([1, 1, 0, 0]), 0.5)
        (0.5, 0.5)
    """
    scores, labels = _trials(scores, labels)
    accepted = scores >= threshold
    return float(np.mean(~accepted[labels])), float(np.mean(accepted[~labels]))


def equal_error_rate(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Equal error rate and its threshold.

    Walking the ROC from the lowest threshold (everything accepted), the EER lies between the last
    point with P_miss < P_fa and the first with P_miss >= P_fa; both rates and the threshold are
    interpolated linearly to where they cross.

    Args:
        scores: [T] trial scores (higher = more likely the same speaker).
        labels: [T] True / 1 for target trials.

    Returns:
        (eer in [0, 1], threshold).

    Example:
        >>> equal_error_rate(np.array([4.0, 3.0, 1.0, 2.0, 0.0]), np.array([1, 1, 1, 0, 0]))
        (0.3333333333333333, 2.3333333333333335)
    """
    scores, labels = _trials(scores, labels)
    thresholds, p_miss, p_fa = _roc(scores, labels)
    j = int(np.argmax(p_miss >= p_fa))  # exists: at +inf P_miss = 1 > P_fa = 0
    if j == 0:
        return float(p_miss[0]), float(thresholds[0])
    before, after = p_fa[j - 1] - p_miss[j - 1], p_fa[j] - p_miss[j]  # > 0 and <= 0
    alpha = before / (before - after)
    eer = p_miss[j - 1] + alpha * (p_miss[j] - p_miss[j - 1])
    upper = thresholds[j] if np.isfinite(thresholds[j]) else thresholds[j - 1]
    return float(eer), float(thresholds[j - 1] + alpha * (upper - thresholds[j - 1]))


def min_dcf(
    scores: np.ndarray, labels: np.ndarray, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0
) -> tuple[float, float]:
    """Normalised minimum detection cost (NIST SRE) and the threshold that reaches it.

    Args:
        scores: [T] trial scores.
        labels: [T] True / 1 for target trials.
        p_target: prior probability of a target trial.
        c_miss: cost of a false reject.
        c_fa: cost of a false accept.

    Returns:
        (min_dcf in [0, 1], threshold); the threshold is +inf when rejecting everything is best.

    Example:
        >>> min_dcf(np.array([0.9, 0.8, 0.4, 0.7, 0.3, 0.2]), np.array([1, 1, 1, 0, 0, 0]), p_target=0.5)
        (0.3333333333333333, 0.4)
    """
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must lie in (0, 1), got {p_target}")
    if not (c_miss > 0 and c_fa > 0):
        raise ValueError("c_miss and c_fa must be positive")
    scores, labels = _trials(scores, labels)
    thresholds, p_miss, p_fa = _roc(scores, labels)
    cost = c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa
    best = int(np.argmin(cost))
    return float(cost[best] / min(c_miss * p_target, c_fa * (1.0 - p_target))), float(thresholds[best])


def as_norm(
    scores: np.ndarray, enrol_cohort_scores: np.ndarray, test_cohort_scores: np.ndarray, top_k: int = 300
) -> np.ndarray:
    """Adaptive symmetric score normalisation (AS-norm, Matejka et al. 2017).

    ``s' = ((s - mu_e) / sigma_e + (s - mu_t) / sigma_t) / 2`` where ``mu_e, sigma_e`` are the mean
    and std of the ``top_k`` largest scores of the enrolment side against the cohort (likewise for
    the test side): the impostors most like this speaker set its local score scale.

    Args:
        scores: [T] raw trial scores.
        enrol_cohort_scores: [T, M] each trial's enrolment embedding scored against M cohort ones.
        test_cohort_scores: [T, M] the same for the test embedding.
        top_k: cohort scores kept per side (all M when M is smaller).

    Returns:
        [T] normalised scores.

    Example:
        >>> cohort = np.array([[0.1, 0.2, 0.3]])
        >>> as_norm(np.array([0.5]), cohort, cohort + 0.2, top_k=2).round(4).tolist()
        [3.0]
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    enrol = np.asarray(enrol_cohort_scores, dtype=np.float64)
    test = np.asarray(test_cohort_scores, dtype=np.float64)
    if enrol.ndim != 2 or enrol.shape != test.shape or enrol.shape[0] != scores.shape[0]:
        raise ValueError(
            f"cohort scores must be [T, M] for T={scores.shape[0]} trials, got {enrol.shape} and {test.shape}"
        )
    if enrol.shape[1] < 2 or top_k < 2:
        raise ValueError("AS-norm needs at least 2 cohort scores per side (top_k >= 2) for a std")
    k = min(top_k, enrol.shape[1])

    def standardise(cohort: np.ndarray) -> np.ndarray:
        top = -np.partition(-cohort, k - 1, axis=1)[:, :k]  # the k largest of every row
        return (scores - top.mean(axis=1)) / np.maximum(top.std(axis=1), 1e-8)

    return 0.5 * (standardise(enrol) + standardise(test))


def as_norm_embeddings(
    enrol: np.ndarray, test: np.ndarray, cohort: np.ndarray, top_k: int = 300
) -> np.ndarray:
    """:func:`as_norm` of the cosine scores of paired trials ``enrol`` [T, D], ``test`` [T, D], cohort [M, D]."""
    a, b, c = l2_normalize(enrol), l2_normalize(test), l2_normalize(cohort)
    return as_norm(cosine_scores(a, b), a @ c.T, b @ c.T, top_k=top_k)


@dataclass(frozen=True, kw_only=True)
class ThresholdCalibration:
    """A verification operating point and a score-to-probability map, fitted on dev trials.

    Attributes:
        threshold: accept when ``score >= threshold``.
        operating_point: "eer" or "far" (a target false-accept rate).
        target_far: the false-accept rate aimed at ("far" only).
        dev_frr: false reject rate at the threshold on the dev trials.
        dev_far: false accept rate at the threshold on the dev trials.
        platt_scale: ``a`` of ``P(same) = 1 / (1 + exp(-(a * score + b)))``.
        platt_offset: ``b`` of that map.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> scores = np.concatenate([rng.normal(0.7, 0.1, 200), rng.normal(0.1, 0.1, 800)])
        >>> labels = np.arange(1000) < 200
        >>> calibration = ThresholdCalibration.fit(scores, labels, target_far=0.01)
        >>> calibration.dev_far <= 0.01, bool(calibration.accept(0.9)), round(float(calibration.probability(0.4)), 1)
        (True, True, 0.3)
        >>> ThresholdCalibration.from_json(calibration.to_json()) == calibration
        True
    """

    threshold: float
    operating_point: str
    target_far: float | None
    dev_frr: float
    dev_far: float
    platt_scale: float
    platt_offset: float

    KIND = "threshold-calibration"
    VERSION = 1

    @classmethod
    def fit(
        cls, scores: np.ndarray, labels: np.ndarray, target_far: float | None = None
    ) -> ThresholdCalibration:
        """Pick the threshold at the EER (``target_far`` None) or the lowest one with FAR <= target_far."""
        scores, labels = _trials(scores, labels)
        if target_far is None:
            threshold = equal_error_rate(scores, labels)[1]
        elif not 0.0 <= target_far < 1.0:
            raise ValueError(f"target_far must lie in [0, 1), got {target_far}")
        else:
            # At most floor(target_far * N) non-targets may score >= threshold: start just above the next one.
            nontarget = np.sort(scores[~labels])[::-1]
            allowed = int(math.floor(target_far * len(nontarget) + 1e-9))
            threshold = float(np.nextafter(nontarget[allowed], np.inf))
        frr, far = error_rates(scores, labels, threshold)
        scale, offset = _platt(scores, labels)
        return cls(
            threshold=float(threshold),
            operating_point="eer" if target_far is None else "far",
            target_far=None if target_far is None else float(target_far),
            dev_frr=frr,
            dev_far=far,
            platt_scale=scale,
            platt_offset=offset,
        )

    def accept(self, scores: np.ndarray | float) -> np.ndarray:
        """Decisions (bool, same shape as ``scores``): same speaker or not."""
        return np.asarray(scores, dtype=np.float64) >= self.threshold

    def probability(self, scores: np.ndarray | float) -> np.ndarray:
        """Calibrated probability that each trial is the same speaker (the dev set's prior built in)."""
        z = self.platt_scale * np.asarray(scores, dtype=np.float64) + self.platt_offset
        return 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic function, without overflow

    def to_dict(self) -> dict:
        return {"kind": self.KIND, "version": self.VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> ThresholdCalibration:
        """Strict inverse of :meth:`to_dict`: unknown, missing or mistyped fields raise ConfigError."""
        data = dict(data)
        if data.pop("kind", None) != cls.KIND:
            raise ConfigError(f"not a {cls.KIND} record")
        if data.pop("version", None) != cls.VERSION:
            raise ConfigError(f"unsupported {cls.KIND} version; this speechkit reads version {cls.VERSION}")
        names = {item.name for item in fields(cls)}
        if set(data) != names:
            raise ConfigError(
                f"{cls.KIND} fields: unknown {sorted(set(data) - names)}, missing {sorted(names - set(data))}"
            )
        if data["operating_point"] not in ("eer", "far"):
            raise ConfigError(f"operating_point must be 'eer' or 'far', got {data['operating_point']!r}")
        try:
            numbers = {n: float(data[n]) for n in names - {"operating_point", "target_far"}}
            target_far = None if data["target_far"] is None else float(data["target_far"])
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{cls.KIND} holds a non-numeric value: {err}") from err
        return cls(operating_point=data["operating_point"], target_far=target_far, **numbers)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ThresholdCalibration:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"calibration is not valid JSON: {err}") from err
        if not isinstance(data, dict):
            raise ConfigError("calibration JSON must be an object")
        return cls.from_dict(data)


def _platt(scores: np.ndarray, labels: np.ndarray, iterations: int = 100) -> tuple[float, float]:
    """Logistic regression of labels on scores by Newton's method, with Platt's smoothed targets.

    Targets (N+ + 1) / (N+ + 2) and 1 / (N- + 2) instead of 1 and 0 keep the fit finite when the
    dev scores separate perfectly (Platt 1999).
    """
    positives, negatives = int(labels.sum()), int((~labels).sum())
    target = np.where(labels, (positives + 1) / (positives + 2), 1.0 / (negatives + 2))
    # Standardise the score for a well-conditioned Newton step, then map back.
    centre, spread = float(scores.mean()), float(scores.std()) or 1.0
    x = (scores - centre) / spread
    a, b = 0.0, math.log((positives + 1) / (negatives + 1))
    for _ in range(iterations):
        p = 0.5 * (1.0 + np.tanh(0.5 * (a * x + b)))
        weight = np.maximum(p * (1.0 - p), 1e-12)
        gradient = np.array([np.sum((p - target) * x), np.sum(p - target)])
        hessian = np.array(
            [[np.sum(weight * x * x), np.sum(weight * x)], [np.sum(weight * x), np.sum(weight)]]
        )
        step = np.linalg.solve(hessian + 1e-9 * np.eye(2), gradient)
        a, b = a - step[0], b - step[1]
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(a / spread), float(b - a * centre / spread)
