"""Batched beam search for autoregressive token decoders, with optional CTC prefix-score fusion.

The decoder is reached through two callables, so any model fits:

- ``step_fn(last_tokens [N], state) -> (log_probs [N, V], state)`` scores the next token of N
  running hypotheses (a KV-cached decoder step);
- ``select_fn(state, index [N']) -> state`` reorders / duplicates the batch of states.

Joint decoding (Watanabe et al. 2017, section 3.2): with a :class:`~speechkit.decoders.ctc.CTCPrefixScorer`,
each hypothesis' score is ``(1 - ctc_weight) * log p_att(h) + ctc_weight * log p_ctc(h...)``, the
CTC term being the prefix probability. Only the ``pre_beam_size`` best attention candidates per
hypothesis are CTC-scored (ESPnet's partial scoring), which keeps the cost independent of V.

Example:
    >>> table = torch.log_softmax(torch.tensor([[0.0, 2.0, 0.0, 1.0], [0.0, 0.0, 0.0, 3.0]]), -1)
    >>> def step_fn(last, state):  # a toy LM: after <sos>=2 prefer 1, then prefer eos=3
    ...     return table[(last != 2).long()], state
    >>> hyps = beam_search(step_fn, lambda s, i: s, None, sos=2, eos=3, beam_size=2, max_length=5)
    >>> hyps[0].tokens
    (1,)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from speechkit.decoders.ctc import CTCPrefixScorer


@dataclass(frozen=True)
class Hypothesis:
    """One finished hypothesis: tokens (without sos/eos) and its scores (log domain)."""

    tokens: tuple[int, ...]
    score: float
    attention_score: float
    ctc_score: float


@dataclass
class _Running:
    tokens: tuple[int, ...]
    attention_score: float
    ctc_score: float
    ctc_state: Any


def beam_search(
    step_fn: Callable[[Tensor, Any], tuple[Tensor, Any]],
    select_fn: Callable[[Any, Tensor], Any],
    state: Any,
    sos: int,
    eos: int,
    beam_size: int = 8,
    max_length: int = 200,
    ctc_scorer: CTCPrefixScorer | None = None,
    ctc_weight: float = 0.0,
    pre_beam_size: int | None = None,
    length_bonus: float = 0.0,
) -> list[Hypothesis]:
    """Beam search from ``sos`` until ``eos``; returns finished hypotheses, best first.

    Args:
        step_fn, select_fn: the decoder (see the module docstring); ``state`` starts for batch 1.
        sos, eos: start and end ids.
        beam_size: hypotheses kept per step.
        max_length: tokens per hypothesis at most (then eos is forced).
        ctc_scorer: CTC prefix scorer of the same utterance (None = attention only).
        ctc_weight: weight of the CTC prefix score in [0, 1].
        pre_beam_size: attention candidates per hypothesis that are CTC-scored (default 1.5 x beam).
        length_bonus: added per token (counters the short-hypothesis bias of summed log-probs).

    Search stops when the best running hypothesis scores below the best finished one: with
    ``length_bonus = 0`` scores only decrease as hypotheses grow, so nothing better can follow.
    """
    use_ctc = ctc_scorer is not None and ctc_weight > 0
    running = [_Running((), 0.0, 0.0, ctc_scorer.initial_state() if use_ctc else None)]
    finished: list[Hypothesis] = []
    pre_beam = pre_beam_size or max(beam_size, int(1.5 * beam_size))

    def total(att: float | np.ndarray, ctc: float | np.ndarray, length: int) -> float | np.ndarray:
        joint = (1 - ctc_weight) * att + ctc_weight * ctc if use_ctc else att
        return joint + length_bonus * length

    for length in range(max_length + 1):
        last = torch.tensor([h.tokens[-1] if h.tokens else sos for h in running], dtype=torch.long)
        log_probs, state = step_fn(last, state)
        log_probs = log_probs.float().cpu().numpy()  # [N, V]
        if length == max_length:  # force the end
            candidates = np.full((len(running), 1), eos)
        else:
            k = min(pre_beam if use_ctc else beam_size, log_probs.shape[1])
            candidates = np.argsort(-log_probs, axis=1)[:, :k]
        att = np.array([h.attention_score for h in running])[:, None] + np.take_along_axis(
            log_probs, candidates, axis=1
        )
        if use_ctc:
            ctc, ctc_states = ctc_scorer.score([h.tokens for h in running], [h.ctc_state for h in running], candidates)
        else:
            ctc, ctc_states = np.zeros_like(att), None
        scores = total(att, ctc, length + 1)
        order = np.argsort(-scores, axis=None)[: 2 * beam_size]
        survivors, parents = [], []
        for flat in order:
            n, k = divmod(int(flat), candidates.shape[1])
            token = int(candidates[n, k])
            if token == eos:
                tokens = running[n].tokens
                finished.append(
                    Hypothesis(tokens, float(total(att[n, k], ctc[n, k], len(tokens))), float(att[n, k]), float(ctc[n, k]))
                )
            elif len(survivors) < beam_size:
                ctc_state = ctc_states[n, k] if ctc_states is not None else None
                survivors.append(_Running(running[n].tokens + (token,), float(att[n, k]), float(ctc[n, k]), ctc_state))
                parents.append(n)
        finished.sort(key=lambda h: -h.score)
        finished = finished[:beam_size]
        if not survivors:
            break
        best_running = max(total(h.attention_score, h.ctc_score, len(h.tokens)) for h in survivors)
        if finished and best_running < finished[0].score and (length_bonus <= 0 or len(finished) >= beam_size):
            break
        running = survivors
        state = select_fn(state, torch.tensor(parents, dtype=torch.long))
    return finished
