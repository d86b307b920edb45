"""CTC decoding on [T, V] log-probabilities (numpy): greedy, prefix beam search, prefix scoring for
joint attention/CTC decoding, and Viterbi forced alignment.

All functions take one utterance's frame log-posteriors ``log_probs`` [T, V] (float, normalised
over V) and the blank id; they are model-agnostic (any CTC head over any vocabulary).

Example:
    >>> lp = np.log(np.array([[0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.9, 0.05, 0.05], [0.1, 0.1, 0.8]]))
    >>> ctc_greedy(lp).tokens
    [1, 2]
    >>> ctc_prefix_beam_search(lp, beam_size=4)[0][0]
    (1, 2)
    >>> ctc_forced_align(lp, [1, 2])
    [(0, 2), (3, 4)]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

NEG_INF = -np.inf
_LOG_FLOOR = -1e4  # log-probs are floored here so cumulative sums stay finite


class CTCAlignment(NamedTuple):
    """Greedy CTC output: emitted tokens and, per token, the frame span [start, end) it covers."""

    tokens: list[int]
    spans: list[tuple[int, int]]


def ctc_greedy(log_probs: np.ndarray, blank: int = 0) -> CTCAlignment:
    """Best path: argmax per frame, repeats merged, blanks removed; spans are the merged runs."""
    best = np.asarray(log_probs).argmax(-1)
    tokens, spans = [], []
    start = 0
    for t in range(1, len(best) + 1):
        if t == len(best) or best[t] != best[start]:
            if best[start] != blank:
                tokens.append(int(best[start]))
                spans.append((start, t))
            start = t
    return CTCAlignment(tokens, spans)


def ctc_prefix_beam_search(
    log_probs: np.ndarray, beam_size: int = 8, blank: int = 0, token_prune: float = -12.0
) -> list[tuple[tuple[int, ...], float]]:
    """CTC prefix beam search (Hannun et al. 2014, section 3): label sequences by total probability.

    Keeps, per prefix, the log-probabilities of all alignments so far ending in blank and in a
    non-blank, so every alignment of a prefix is counted once.

    Args:
        log_probs: [T, V] frame log-posteriors.
        beam_size: prefixes kept after each frame.
        blank: the blank id.
        token_prune: per frame, only tokens with log-prob above this (and within the top
            ``beam_size``) extend prefixes; ``-inf`` disables pruning.

    Returns:
        Up to ``beam_size`` (prefix, log-probability) pairs, best first.
    """
    log_probs = np.asarray(log_probs, dtype=np.float64)
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}
    for frame in log_probs:
        order = np.argsort(-frame)[: beam_size + 1]
        candidates = [int(c) for c in order if c != blank and frame[c] > token_prune][:beam_size]
        nxt: dict[tuple[int, ...], list[float]] = {}
        add = _accumulator(nxt)

        for prefix, (p_blank, p_label) in beams.items():
            total = np.logaddexp(p_blank, p_label)
            add(prefix, 0, total + frame[blank])
            if prefix:  # the last label repeated without a blank stays the same prefix
                add(prefix, 1, p_label + frame[prefix[-1]])
            for c in candidates:
                if prefix and c == prefix[-1]:
                    add(prefix + (c,), 1, p_blank + frame[c])  # a repeat needs a blank between
                else:
                    add(prefix + (c,), 1, total + frame[c])
        ranked = sorted(nxt.items(), key=lambda kv: -np.logaddexp(*kv[1]))[:beam_size]
        beams = {prefix: (pb, pl) for prefix, (pb, pl) in ranked}
    return [(prefix, float(np.logaddexp(pb, pl))) for prefix, (pb, pl) in beams.items()]


def _accumulator(table: dict[tuple[int, ...], list[float]]):
    """``add(prefix, 0 | 1, log_p)``: log-add into the blank (0) or label (1) mass of ``prefix``."""

    def add(prefix: tuple[int, ...], which: int, value: float) -> None:
        if value == NEG_INF:  # e.g. a repeat with no blank path yet: not a prefix at all
            return
        entry = table.setdefault(prefix, [NEG_INF, NEG_INF])
        entry[which] = np.logaddexp(entry[which], value)

    return add


class CTCPrefixScorer:
    """Prefix scores ``log P(h is a prefix of the labelling | x)`` for joint attention/CTC decoding.

    Watanabe et al. 2017 ("Hybrid CTC/attention", section 3.2, Algorithm 2) in closed form: each
    per-frame recursion is a first-order linear recurrence in probability space, so it is solved with
    cumulative sums and ``np.logaddexp.accumulate`` over time instead of a Python loop over frames.

    A prefix's state is ``r`` [T, 2]: log-probs that the prefix has been emitted by frame t ending in
    a label (column 0) or a blank (column 1).

    Args:
        log_probs: [T, V] frame log-posteriors of one utterance.
        blank: blank id; eos: the end-of-sentence id (scored as "the prefix is the whole labelling").

    Example:
        >>> lp = np.log(np.full((3, 3), 1 / 3))
        >>> scorer = CTCPrefixScorer(lp, blank=0, eos=2)
        >>> scores, states = scorer.score([()], [scorer.initial_state()], np.array([[1, 2]]))
        >>> round(float(np.exp(scores[0, 0])), 4), round(float(np.exp(scores[0, 1])), 4)  # 13/27, 1/27
        (0.4815, 0.037)
    """

    def __init__(self, log_probs: np.ndarray, blank: int, eos: int) -> None:
        self.x = np.maximum(np.asarray(log_probs, dtype=np.float64), _LOG_FLOOR)
        self.blank, self.eos = blank, eos
        self.num_frames = len(self.x)
        self._blank_cum = np.cumsum(self.x[:, blank])  # B[t] = sum_{u <= t} log x_u(blank)

    def initial_state(self) -> np.ndarray:
        """State of the empty prefix: only blanks so far."""
        r = np.full((self.num_frames, 2), NEG_INF)
        r[:, 1] = self._blank_cum
        return r

    def score(
        self, prefixes: Sequence[Sequence[int]], states: Sequence[np.ndarray], candidates: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Prefix scores of every ``prefixes[n] + (candidates[n, k],)``.

        Args:
            prefixes: N label prefixes (without sos).
            states: their states [T, 2].
            candidates: [N, K] next labels (may contain eos).

        Returns:
            (scores [N, K], new states [N, K, T, 2]).
        """
        x, T = self.x, self.num_frames
        r_prev = np.stack(states, axis=1)  # [T, N, 2]
        xc = np.take_along_axis(x[:, None, :], candidates[None, :, :].astype(np.int64), axis=2)  # [T, N, K]
        last = np.array([p[-1] if len(p) else -1 for p in prefixes])[:, None]  # [N, 1]
        total_prev = np.logaddexp(r_prev[..., 0], r_prev[..., 1])[..., None]  # [T, N, 1]
        # phi: mass that may precede a new label c; a repeated label must follow a blank
        phi = np.where((candidates == last)[None], r_prev[..., 1:2], total_prev)  # [T, N, K]
        empty = np.array([len(p) == 0 for p in prefixes])[None, :, None]
        r0_first = np.where(empty, xc[0:1], NEG_INF)  # [1, N, K]
        c_cum = np.cumsum(xc, axis=0)  # C[t]
        # r0[t] = C[t] + logsumexp(r0[0] - C[0], phi[s] - C[s] for s < t)
        terms = np.concatenate([r0_first - c_cum[0:1], phi[:-1] - c_cum[:-1]], axis=0)
        r0 = c_cum + np.logaddexp.accumulate(terms, axis=0)
        # r1[t] = B[t] + logsumexp(r0[s] - B[s] for s < t), r1[0] = -inf
        b_cum = self._blank_cum[:, None, None]
        terms = np.concatenate([np.full_like(r0[0:1], NEG_INF), r0[:-1] - b_cum[:-1]], axis=0)
        r1 = b_cum + np.logaddexp.accumulate(terms, axis=0)
        psi = np.logaddexp(r0_first[0], _logsumexp(phi[:-1] + xc[1:], axis=0)) if T > 1 else r0_first[0]
        is_eos = candidates == self.eos
        psi = np.where(is_eos, total_prev[-1], psi)  # eos: the prefix is complete at the last frame
        new_states = np.stack([r0, r1], axis=-1).transpose(1, 2, 0, 3)  # [N, K, T, 2]
        return psi, new_states


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    peak = np.max(a, axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(peak, axis) + np.log(np.sum(np.exp(a - peak), axis=axis))


def ctc_forced_align(log_probs: np.ndarray, tokens: Sequence[int], blank: int = 0) -> list[tuple[int, int]] | None:
    """Viterbi alignment of a known label sequence: each token's frame span [start, end).

    Returns None when the sequence cannot be aligned (fewer frames than labels plus the blanks
    that repeated labels need). An empty sequence aligns to no spans.
    """
    x = np.asarray(log_probs, dtype=np.float64)
    T, L = len(x), len(tokens)
    if L == 0:
        return []
    labels = np.full(2 * L + 1, blank)
    labels[1::2] = tokens
    S = len(labels)
    # a skip from s - 2 is allowed into a label that differs from the previous label
    skip = np.zeros(S, dtype=bool)
    skip[3::2] = np.asarray(tokens[1:]) != np.asarray(tokens[:-1])
    delta = np.full(S, NEG_INF)
    delta[0], delta[1] = x[0, blank], x[0, labels[1]]
    back = np.zeros((T, S), dtype=np.int8)
    for t in range(1, T):
        stay = delta
        step = np.concatenate([[NEG_INF], delta[:-1]])
        jump = np.where(skip, np.concatenate([[NEG_INF, NEG_INF], delta[:-2]]), NEG_INF)
        choices = np.stack([stay, step, jump])
        back[t] = np.argmax(choices, axis=0)
        delta = choices.max(axis=0) + x[t, labels]
    end = S - 1 if delta[S - 1] >= delta[S - 2] else S - 2
    if not np.isfinite(delta[end]):
        return None
    path = np.empty(T, dtype=np.int64)
    s = end
    for t in range(T - 1, -1, -1):
        path[t] = s
        s -= int(back[t, s])
    if path[0] > 1:
        return None
    spans = []
    for index in range(L):
        frames = np.flatnonzero(path == 2 * index + 1)
        if len(frames) == 0:
            return None
        spans.append((int(frames[0]), int(frames[-1]) + 1))
    return spans
