"""CTC decoding against brute force: prefix beam search, prefix scores, forced alignment, greedy spans."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from speechkit.decoders.ctc import CTCPrefixScorer, ctc_forced_align, ctc_greedy, ctc_prefix_beam_search


def _collapse(path, blank=0):
    out, prev = [], None
    for p in path:
        if p != prev and p != blank:
            out.append(p)
        prev = p
    return tuple(out)


def _brute_force(log_probs):
    """log P(labelling) for every labelling, by summing all T^V alignment paths."""
    T, V = log_probs.shape
    totals: dict[tuple, float] = {}
    for path in itertools.product(range(V), repeat=T):
        lp = sum(log_probs[t, p] for t, p in enumerate(path))
        key = _collapse(path)
        totals[key] = np.logaddexp(totals.get(key, -np.inf), lp)
    return totals


def _random_log_probs(T, V, seed):
    logits = np.random.default_rng(seed).normal(0, 1.5, (T, V))
    return logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prefix_beam_search_equals_brute_force(seed):
    lp = _random_log_probs(5, 3, seed)
    exact = _brute_force(lp)
    beams = ctc_prefix_beam_search(lp, beam_size=200, token_prune=-np.inf)
    best, score = beams[0]
    assert best == max(exact, key=exact.get)
    assert score == pytest.approx(exact[best], abs=1e-9)
    for prefix, value in beams:  # every labelling's probability is exact with an unpruned beam
        assert value == pytest.approx(exact[prefix], abs=1e-9)


def test_prefix_scores_match_brute_force_prefix_probabilities():
    lp = _random_log_probs(4, 4, seed=3)  # blank 0, labels 1-2, eos 3 (a label CTC never emits much)
    exact = _brute_force(lp)
    scorer = CTCPrefixScorer(lp, blank=0, eos=3)
    state = scorer.initial_state()
    scores, states = scorer.score([()], [state], np.array([[1, 2, 3]]))
    for k, label in enumerate((1, 2)):
        expected = np.logaddexp.reduce([v for key, v in exact.items() if key[:1] == (label,)])
        assert scores[0, k] == pytest.approx(expected, abs=1e-9)
    assert scores[0, 2] == pytest.approx(exact[()], abs=1e-9)  # eos after nothing = the empty labelling
    # one step further: prefix (1,) extended by 1 (a repeat needs a blank) and eos
    scores2, _ = scorer.score([(1,)], [states[0, 0]], np.array([[1, 3]]))
    expected_11 = np.logaddexp.reduce([v for key, v in exact.items() if key[:2] == (1, 1)])
    assert scores2[0, 0] == pytest.approx(expected_11, abs=1e-9)
    assert scores2[0, 1] == pytest.approx(exact[(1,)], abs=1e-9)


def test_forced_alignment_is_the_best_path_of_the_sequence():
    lp = _random_log_probs(5, 3, seed=4)
    tokens = [1, 1]
    spans = ctc_forced_align(lp, tokens)
    assert spans is not None and spans[0][1] < spans[1][0]  # a blank separates the repeated label
    best = max(
        (p for p in itertools.product(range(3), repeat=5) if _collapse(p) == (1, 1)),
        key=lambda p: sum(lp[t, s] for t, s in enumerate(p)),
    )
    frames_of_first = [t for t, s in enumerate(best) if s == 1][: spans[0][1] - spans[0][0]]
    assert frames_of_first[0] == spans[0][0]
    assert ctc_forced_align(lp[:2], [1, 1]) is None  # needs 3 frames


def test_greedy_spans_cover_their_frames():
    lp = np.log(np.array([[0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]))
    out = ctc_greedy(lp)
    assert out.tokens == [1, 1, 2]
    assert out.spans == [(0, 2), (3, 4), (4, 5)]
