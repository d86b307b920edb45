"""CTC and attention decoding in numpy for the ASR runtime: the parts of the SDK's decoders it needs.

Numpy twins of ``speechkit.decoders.ctc`` (greedy best path, Viterbi forced alignment, prefix
scores), ``speechkit.decoders.beam_search`` (synchronous beam search with CTC prefix-score fusion),
``speechkit.asr.decred`` (combining the decoder heads) and ``speechkit.asr.decoding`` (character
spans to words). Tested equal to the SDK's on the same inputs. Only numpy is imported.

The attention decoder is reached through one callable, ``score_fn(prefixes [N, L]) -> log-probs
[N, V]``, which scores the next token of N running hypotheses given their whole prefixes (starting
with ``<sos>``): the ``decoder_step`` graph of an ASR bundle recomputes the prefix, so the search
keeps no decoder state.

Example:
    >>> lp = np.log(np.array([[0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.9, 0.05, 0.05], [0.1, 0.1, 0.8]]))
    >>> ctc_greedy(lp)
    ([1, 2], [(0, 2), (3, 4)])
    >>> ctc_forced_align(lp, [1, 2])
    [(0, 2), (3, 4)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

NEG_INF = -np.inf
_LOG_FLOOR = -1e4  # log-probs are floored here so cumulative sums stay finite
DECRED_MODES = ("final", "linear", "log_linear")


def ctc_greedy(log_probs: np.ndarray, blank: int = 0) -> tuple[list[int], list[tuple[int, int]]]:
    """Best path of [T, V] log-probs: argmax per frame, repeats merged, blanks removed.

    Returns:
        (tokens, spans): each token's frame span [start, end) is its merged run.
    """
    best = np.asarray(log_probs).argmax(-1)
    tokens, spans = [], []
    start = 0
    for t in range(1, len(best) + 1):
        if t == len(best) or best[t] != best[start]:
            if best[start] != blank:
                tokens.append(int(best[start]))
                spans.append((start, t))
            start = t
    return tokens, spans


def ctc_forced_align(
    log_probs: np.ndarray, tokens: Sequence[int], blank: int = 0
) -> list[tuple[int, int]] | None:
    """Viterbi alignment of a known label sequence: each token's frame span [start, end).

    Returns None when the sequence cannot be aligned (too few frames); [] for no tokens.
    """
    x = np.asarray(log_probs, dtype=np.float64)
    T, L = len(x), len(tokens)
    if L == 0:
        return []
    labels = np.full(2 * L + 1, blank)
    labels[1::2] = tokens
    S = len(labels)
    skip = np.zeros(S, dtype=bool)  # a skip from s - 2 enters a label that differs from the previous one
    skip[3::2] = np.asarray(tokens[1:]) != np.asarray(tokens[:-1])
    delta = np.full(S, NEG_INF)
    delta[0], delta[1] = x[0, blank], x[0, labels[1]]
    back = np.zeros((T, S), dtype=np.int8)
    for t in range(1, T):
        step = np.concatenate([[NEG_INF], delta[:-1]])
        jump = np.where(skip, np.concatenate([[NEG_INF, NEG_INF], delta[:-2]]), NEG_INF)
        choices = np.stack([delta, step, jump])
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


class CTCPrefixScorer:
    """``log P(h is a prefix of the labelling | x)`` for joint attention/CTC decoding.

    Watanabe et al. 2017 ("Hybrid CTC/attention", section 3.2) in closed form over time (cumulative
    sums and ``np.logaddexp.accumulate``), as ``speechkit.decoders.ctc.CTCPrefixScorer``. A prefix's
    state ``r`` [T, 2] holds the log-probs that it has been emitted by frame t ending in a label
    (column 0) or a blank (column 1).

    Example:
        >>> scorer = CTCPrefixScorer(np.log(np.full((3, 3), 1 / 3)), blank=0, eos=2)
        >>> scores, _ = scorer.score([()], [scorer.initial_state()], np.array([[1, 2]]))
        >>> np.round(np.exp(scores[0]), 4).tolist()  # 13/27, 1/27
        [0.4815, 0.037]
    """

    def __init__(self, log_probs: np.ndarray, blank: int, eos: int) -> None:
        self.x = np.maximum(np.asarray(log_probs, dtype=np.float64), _LOG_FLOOR)
        self.blank, self.eos = blank, eos
        self.num_frames = len(self.x)
        self._blank_cum = np.cumsum(self.x[:, blank])

    def initial_state(self) -> np.ndarray:
        """State of the empty prefix: only blanks so far."""
        r = np.full((self.num_frames, 2), NEG_INF)
        r[:, 1] = self._blank_cum
        return r

    def score(
        self, prefixes: Sequence[Sequence[int]], states: Sequence[np.ndarray], candidates: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores [N, K] and states [N, K, T, 2] of every ``prefixes[n] + (candidates[n, k],)``."""
        x, T = self.x, self.num_frames
        r_prev = np.stack(states, axis=1)  # [T, N, 2]
        xc = np.take_along_axis(x[:, None, :], candidates[None, :, :].astype(np.int64), axis=2)  # [T, N, K]
        last = np.array([p[-1] if len(p) else -1 for p in prefixes])[:, None]
        total_prev = np.logaddexp(r_prev[..., 0], r_prev[..., 1])[..., None]  # [T, N, 1]
        phi = np.where((candidates == last)[None], r_prev[..., 1:2], total_prev)  # a repeat follows a blank
        empty = np.array([len(p) == 0 for p in prefixes])[None, :, None]
        r0_first = np.where(empty, xc[0:1], NEG_INF)
        c_cum = np.cumsum(xc, axis=0)
        terms = np.concatenate([r0_first - c_cum[0:1], phi[:-1] - c_cum[:-1]], axis=0)
        r0 = c_cum + np.logaddexp.accumulate(terms, axis=0)
        b_cum = self._blank_cum[:, None, None]
        terms = np.concatenate([np.full_like(r0[0:1], NEG_INF), r0[:-1] - b_cum[:-1]], axis=0)
        r1 = b_cum + np.logaddexp.accumulate(terms, axis=0)
        psi = np.logaddexp(r0_first[0], _logsumexp(phi[:-1] + xc[1:], axis=0)) if T > 1 else r0_first[0]
        psi = np.where(candidates == self.eos, total_prev[-1], psi)  # eos: complete at the last frame
        return psi, np.stack([r0, r1], axis=-1).transpose(1, 2, 0, 3)


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    peak = np.max(a, axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(peak, axis) + np.log(np.sum(np.exp(a - peak), axis=axis))


def combine_heads(
    heads: Sequence[np.ndarray], mode: str = "log_linear", weights: Sequence[float] | None = None
) -> np.ndarray:
    """DeCRED (Polok et al. 2024, section 2.2): one next-token distribution from every decoder head.

    Args:
        heads: log-probs [..., V] per head, intermediate heads first, the final head last.
        mode: "final" (last head), "linear" (``sum_l w_l p_l``) or "log_linear" (``p ∝ exp(sum_l
            w_l log p_l)``).
        weights: one non-negative weight per head (default uniform), normalised to sum 1.

    Returns:
        float32 log-probs [..., V].

    Example:
        >>> a, b = np.log([0.5, 0.5]), np.log([0.9, 0.1])
        >>> [round(float(p), 4) for p in np.exp(combine_heads([a, b], "linear"))]
        [0.7, 0.3]
    """
    if mode not in DECRED_MODES:
        raise ValueError(f"DeCRED mode must be one of {DECRED_MODES}, got {mode!r}")
    if mode == "final" or len(heads) == 1:
        return np.asarray(heads[-1], dtype=np.float32)
    weights = [1.0] * len(heads) if weights is None else list(weights)
    if len(weights) != len(heads) or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"need {len(heads)} non-negative DeCRED weights, got {weights}")
    stacked = np.stack([np.asarray(h, dtype=np.float64) for h in heads])  # [L, ..., V]
    w = (np.asarray(weights, dtype=np.float64) / sum(weights)).reshape(-1, *([1] * (stacked.ndim - 1)))
    if mode == "linear":
        with np.errstate(divide="ignore"):
            combined = np.logaddexp.reduce(stacked + np.log(np.maximum(w, 1e-30)), axis=0)
    else:
        mixed = (stacked * w).sum(0)
        combined = mixed - np.logaddexp.reduce(mixed, axis=-1, keepdims=True)
    return combined.astype(np.float32)


@dataclass
class _Running:
    tokens: tuple[int, ...]
    attention_score: float
    ctc_score: float
    ctc_state: np.ndarray | None


def beam_search(
    score_fn: Callable[[np.ndarray], np.ndarray],
    sos: int,
    eos: int,
    beam_size: int = 4,
    max_length: int = 200,
    ctc_scorer: CTCPrefixScorer | None = None,
    ctc_weight: float = 0.0,
    length_bonus: float = 0.0,
) -> list[tuple[tuple[int, ...], float]]:
    """Beam search from ``sos`` until ``eos`` (``speechkit.decoders.beam_search`` in numpy).

    Each hypothesis scores ``(1 - ctc_weight) * log p_att + ctc_weight * log p_ctc(prefix)`` (with a
    scorer) plus ``length_bonus`` per token; the ``1.5 * beam_size`` best attention candidates per
    hypothesis are CTC-scored. The search stops when the best running hypothesis scores below the
    best finished one.

    Args:
        score_fn: prefixes int64 [N, L] (``sos`` first; one length per call) -> log-probs [N, V].
        sos, eos: start and end ids.
        beam_size: hypotheses kept per step.
        max_length: tokens per hypothesis at most (then eos is forced).
        ctc_scorer: the utterance's CTC prefix scorer (None: attention only).
        ctc_weight: weight of the CTC prefix score in [0, 1].
        length_bonus: added per token.

    Returns:
        Finished (tokens without sos/eos, score) pairs, best first.
    """
    use_ctc = ctc_scorer is not None and ctc_weight > 0
    running = [_Running((), 0.0, 0.0, ctc_scorer.initial_state() if use_ctc else None)]
    finished: list[tuple[tuple[int, ...], float]] = []
    pre_beam = max(beam_size, int(1.5 * beam_size))

    def total(att, ctc, length: int):
        joint = (1 - ctc_weight) * att + ctc_weight * ctc if use_ctc else att
        return joint + length_bonus * length

    for length in range(max_length + 1):
        prefixes = np.array([(sos, *h.tokens) for h in running], dtype=np.int64)  # [N, length + 1]
        log_probs = np.asarray(score_fn(prefixes), dtype=np.float32)  # [N, V]
        if length == max_length:  # force the end
            candidates = np.full((len(running), 1), eos)
        else:
            k = min(pre_beam if use_ctc else beam_size, log_probs.shape[1])
            candidates = np.argsort(-log_probs, axis=1)[:, :k]
        att = np.array([h.attention_score for h in running])[:, None] + np.take_along_axis(
            log_probs, candidates, axis=1
        )
        if use_ctc:
            ctc, ctc_states = ctc_scorer.score(
                [h.tokens for h in running], [h.ctc_state for h in running], candidates
            )
        else:
            ctc, ctc_states = np.zeros_like(att), None
        scores = total(att, ctc, length + 1)
        survivors = []
        for flat in np.argsort(-scores, axis=None)[: 2 * beam_size]:
            n, k = divmod(int(flat), candidates.shape[1])
            token = int(candidates[n, k])
            if token == eos:
                tokens = running[n].tokens
                finished.append((tokens, float(total(att[n, k], ctc[n, k], len(tokens)))))
            elif len(survivors) < beam_size:
                state = ctc_states[n, k] if ctc_states is not None else None
                survivors.append(
                    _Running(running[n].tokens + (token,), float(att[n, k]), float(ctc[n, k]), state)
                )
        finished = sorted(finished, key=lambda item: -item[1])[:beam_size]
        if not survivors:
            break
        best_running = max(total(h.attention_score, h.ctc_score, len(h.tokens)) for h in survivors)
        if finished and best_running < finished[0][1] and (length_bonus <= 0 or len(finished) >= beam_size):
            break
        running = survivors
    return finished


def span_confidences(
    log_probs: np.ndarray, tokens: Sequence[int], spans: Sequence[tuple[int, int]]
) -> list[float]:
    """Per character: its highest CTC posterior inside its span (0 for an empty span)."""
    return [float(np.exp(log_probs[a:b, tok].max())) if b > a else 0.0 for tok, (a, b) in zip(tokens, spans)]


def even_spans(num_tokens: int, num_frames: int) -> list[tuple[int, int]]:
    """Spans spread evenly over the frames, for a hypothesis CTC cannot align (more characters than frames).

    Example:
        >>> even_spans(2, 5)
        [(0, 2), (2, 5)]
    """
    edges = np.linspace(0, num_frames, num_tokens + 1).astype(int)
    return [(int(a), int(max(b, a + 1))) for a, b in zip(edges[:-1], edges[1:])]


def group_words(
    tokens: Sequence[int],
    spans: Sequence[tuple[int, int]],
    confidences: Sequence[float],
    space_id: int,
    to_text: Callable[[Sequence[int]], str],
) -> list[tuple[str, int, int, float]]:
    """Characters -> words at spaces: (text, start_frame, end_frame, mean confidence) per word.

    Example:
        >>> words = group_words([5, 6, 3, 7], [(0, 1), (2, 3), (3, 4), (5, 8)], [0.9, 0.7, 1.0, 0.8], 3,
        ...                     lambda ids: "".join("xyzabcdefgh"[i] for i in ids))
        >>> [(w[0], w[1], w[2], round(w[3], 2)) for w in words]
        [('cd', 0, 3, 0.8), ('e', 5, 8, 0.8)]
    """
    words, current = [], []
    for item in [*zip(tokens, spans, confidences), None]:
        if item is None or item[0] == space_id:
            text = to_text([t for t, _, _ in current]) if current else ""
            if text:
                confidence = float(np.mean([c for _, _, c in current]))
                words.append((text, current[0][1][0], current[-1][1][1], confidence))
            current = []
        else:
            current.append(item)
    return words
