"""Decoding one utterance's encoder output into characters with frame spans, and spans into words.

Methods (:class:`DecodingOptions.method`):

- ``"ctc_greedy"``: best CTC path (fastest; what streaming partials use);
- ``"ctc_beam"``: CTC prefix beam search;
- ``"attention"``: attention-decoder beam search alone;
- ``"joint"``: attention beam search with CTC prefix scores (weight ``ctc_weight``), the default.

The attention decoder's next-token distribution can be DeCRED's re-estimate from intermediate and
final layers (``decred``: ``"final"``, ``"linear"``, ``"log_linear"``; ``"auto"`` = log-linear when
the model has intermediate classifiers). Word times come from a CTC Viterbi alignment of the final
characters (greedy spans for ``ctc_greedy``), so they are consistent with the text whatever method
produced it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from speechkit.asr.decoder import DecoderState
from speechkit.asr.decred import MODES, combine_layer_log_probs
from speechkit.decoders.beam_search import beam_search
from speechkit.decoders.ctc import CTCPrefixScorer, ctc_forced_align, ctc_greedy, ctc_prefix_beam_search
from speechkit.errors import ConfigError

METHODS = ("ctc_greedy", "ctc_beam", "attention", "joint")


@dataclass(frozen=True)
class DecodingOptions:
    """How to turn encoder output into text.

    Args:
        method: one of ``METHODS`` (see the module docstring).
        beam_size: beam width of the beam searches.
        ctc_weight: CTC prefix-score weight in joint decoding.
        decred: ``"auto"``, ``"final"``, ``"linear"`` or ``"log_linear"``.
        decred_weights: one weight per decoder head (intermediate first), default uniform.
        length_bonus: per-character score bonus in attention beam search.
        max_chars_per_second: cap on hypothesis length (guards against attention loops).
    """

    method: str = "joint"
    beam_size: int = 4
    ctc_weight: float = 0.3
    decred: str = "auto"
    decred_weights: tuple[float, ...] | None = None
    length_bonus: float = 0.0
    max_chars_per_second: float = 40.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"decoding method must be one of {METHODS}, got {self.method!r}")
        if self.decred not in ("auto", *MODES):
            raise ConfigError(f"decred must be 'auto' or one of {MODES}, got {self.decred!r}")
        if self.beam_size < 1 or not 0.0 <= self.ctc_weight <= 1.0:
            raise ConfigError("beam_size must be >= 1 and ctc_weight in [0, 1]")


@dataclass(frozen=True)
class DecodedTokens:
    """Characters of one segment with, per character, its frame span [start, end) and a confidence."""

    tokens: list[int]
    spans: list[tuple[int, int]]
    confidences: list[float]


def decred_mode(model, options: DecodingOptions) -> str:
    if options.decred != "auto":
        return options.decred
    return "log_linear" if model.decoder.intermediate_layers else "final"


@torch.inference_mode()
def decode_encoded(model, encoded: Tensor, options: DecodingOptions) -> DecodedTokens:
    """One utterance's encoder output [1, T, D] (no padding) -> :class:`DecodedTokens`."""
    vocab = model.vocabulary
    ctc_lp = model.ctc_log_probs(encoded)[0].cpu().numpy().astype(np.float64)  # [T, V]
    num_frames = len(ctc_lp)
    if options.method == "ctc_greedy":
        alignment = ctc_greedy(ctc_lp, vocab.blank_id)
        return DecodedTokens(alignment.tokens, alignment.spans, _confidences(ctc_lp, alignment.tokens, alignment.spans))
    if options.method == "ctc_beam":
        tokens = list(ctc_prefix_beam_search(ctc_lp, options.beam_size, vocab.blank_id)[0][0])
    else:
        tokens = _attention_search(model, encoded, ctc_lp, options)
    spans = ctc_forced_align(ctc_lp, tokens, vocab.blank_id)
    if spans is None:  # more characters than frames can hold: spread them evenly
        edges = np.linspace(0, num_frames, len(tokens) + 1).astype(int)
        spans = [(int(a), int(max(b, a + 1))) for a, b in zip(edges[:-1], edges[1:])]
    return DecodedTokens(tokens, spans, _confidences(ctc_lp, tokens, spans))


def _attention_search(model, encoded: Tensor, ctc_lp: np.ndarray, options: DecodingOptions) -> list[int]:
    vocab = model.vocabulary
    mode = decred_mode(model, options)
    seconds = encoded.shape[1] * model.frame_shift_seconds
    max_length = max(4, int(options.max_chars_per_second * seconds))

    def step_fn(last: Tensor, state: tuple[DecoderState, Tensor]):
        decoder_state, memory = state
        heads, decoder_state = model.decoder.step(last.to(memory.device), decoder_state, memory, None)
        return combine_layer_log_probs(heads, mode, options.decred_weights), (decoder_state, memory)

    def select_fn(state: tuple[DecoderState, Tensor], index: Tensor):
        decoder_state, memory = state
        index = index.to(memory.device)
        return decoder_state.select(index), memory.index_select(0, index)

    use_ctc = options.method == "joint" and options.ctc_weight > 0
    scorer = CTCPrefixScorer(ctc_lp, vocab.blank_id, vocab.sos_eos_id) if use_ctc else None
    hyps = beam_search(
        step_fn, select_fn, (model.decoder.initial_state(1), encoded),
        sos=vocab.sos_eos_id, eos=vocab.sos_eos_id, beam_size=options.beam_size, max_length=max_length,
        ctc_scorer=scorer, ctc_weight=options.ctc_weight if use_ctc else 0.0, length_bonus=options.length_bonus,
    )  # fmt: skip
    return list(hyps[0].tokens) if hyps else []


def _confidences(ctc_lp: np.ndarray, tokens: list[int], spans: list[tuple[int, int]]) -> list[float]:
    """Per character: its highest CTC posterior inside its span."""
    return [float(np.exp(ctc_lp[a:b, tok].max())) if b > a else 0.0 for tok, (a, b) in zip(tokens, spans)]


@dataclass(frozen=True)
class WordSpan:
    """A word in frame units: text, [start_frame, end_frame), confidence."""

    text: str
    start_frame: int
    end_frame: int
    confidence: float


def tokens_to_words(decoded: DecodedTokens, vocabulary) -> list[WordSpan]:
    """Group characters into words at spaces; a word spans its first to its last character.

    Example:
        >>> from speechkit.asr.text import CharVocabulary
        >>> vocab = CharVocabulary()
        >>> ids = vocab.encode("hi yo")
        >>> words = tokens_to_words(DecodedTokens(ids, [(0, 1), (2, 3), (3, 4), (5, 6), (6, 8)], [0.9] * 5), vocab)
        >>> [(w.text, w.start_frame, w.end_frame) for w in words]
        [('hi', 0, 3), ('yo', 5, 8)]
    """
    words, current = [], []
    for item in [*zip(decoded.tokens, decoded.spans, decoded.confidences), None]:
        if item is None or item[0] == vocabulary.space_id:
            if current:
                text = vocabulary.ids_to_text([t for t, _, _ in current])
                if text:
                    words.append(
                        WordSpan(text, current[0][1][0], current[-1][1][1], float(np.mean([c for _, _, c in current])))
                    )
            current = []
        else:
            current.append(item)
    return words
