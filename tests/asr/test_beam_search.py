"""Attention beam search and joint CTC/attention decoding on a toy decoder."""

from __future__ import annotations

import numpy as np
import torch

from speechkit.decoders.beam_search import beam_search
from speechkit.decoders.ctc import CTCPrefixScorer

BLANK, A, B, SOS_EOS = 0, 1, 2, 3
# next-token probabilities given the prefix: p(a b) = 0.6 * 0.6 > p(b a) = 0.4 * 0.6
TABLE = {(): {A: 0.6, B: 0.4}, (A,): {B: 0.6, A: 0.1, SOS_EOS: 0.3}, (B,): {A: 0.6, B: 0.1, SOS_EOS: 0.3}}


def _step(last, prefixes):
    """State = the prefix of every running hypothesis; the step appends the newest token."""
    prefixes = [p + ((int(t),) if int(t) != SOS_EOS else ()) for p, t in zip(prefixes, last)]
    rows = []
    for prefix in prefixes:
        probs = np.full(4, 1e-6)
        for token, p in TABLE.get(prefix, {SOS_EOS: 0.99}).items():
            probs[token] = p
        rows.append(np.log(probs / probs.sum()))
    return torch.tensor(np.array(rows)), prefixes


def _select(prefixes, index):
    return [prefixes[i] for i in index.tolist()]


def _decode(ctc_weight, ctc_log_probs=None):
    scorer = CTCPrefixScorer(ctc_log_probs, BLANK, SOS_EOS) if ctc_log_probs is not None else None
    return beam_search(
        _step, _select, [()], SOS_EOS, SOS_EOS, beam_size=3, max_length=4, ctc_scorer=scorer, ctc_weight=ctc_weight
    )


def test_attention_alone_prefers_its_own_best():
    hyps = _decode(0.0)
    assert hyps[0].tokens == (A, B)
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


def test_joint_decoding_prefers_the_ctc_consistent_hypothesis():
    # CTC is sure the audio says "b a"
    frames = [[0.05, 0.05, 0.85, 0.05], [0.9, 0.03, 0.04, 0.03], [0.05, 0.85, 0.05, 0.05], [0.9, 0.03, 0.04, 0.03]]
    ctc = np.log(np.array(frames))
    assert _decode(0.0, ctc)[0].tokens == (A, B)
    joint = _decode(0.5, ctc)
    assert joint[0].tokens == (B, A)
    assert all(joint[0].ctc_score > h.ctc_score for h in joint[1:])
