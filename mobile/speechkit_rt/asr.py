"""``ASRRuntime``: speech recognition with an ASR bundle and onnxruntime, the torch-free twin of the SDK's
``SpeechRecognizer.transcribe``.

The call sequence (the same an app follows on device, see ``mobile/README.md``)::

    audio [T] or [T, C] at any rate
      -> mono, resampled to the bundle's sample_rate, checked (empty / NaN / Inf refused; float
         audio beyond [-1, 1] scaled back; under 0.1 s refused)
      -> windows of at most 20 s, cut at the quietest 10 ms of each window's last 4 s (as the SDK)
      -> per window (silent windows give no words):
         graph "encoder": wav f32 [1, T] -> ctc_log_probs [1, N, V], memory [1, N, D]   (40 ms frames)
         greedy CTC (default): best path, its merged runs are the characters' frame spans
         or "joint" / "attention": beam search over graph "decoder_step" (tokens [B, L], memory ->
         next-token log-probs [B, V] of every head, combined DeCRED-style), with CTC prefix scores
         ("joint"), then a CTC Viterbi alignment of the result for the spans
      -> characters grouped into words at spaces; times = frame * frame_shift / sample_rate + window start

The vocabulary (``vocabulary.json``, hash-checked like every bundle file) maps ids to characters.

Example:
    >>> ASRRuntime.open("/no/such/bundle")
    Traceback (most recent call last):
    ...
    speechkit_rt.errors.BundleError: /no/such/bundle: no such bundle folder or .zip
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from speechkit_rt import asr_decoding as dec
from speechkit_rt.audio_io import check_sample_rate, check_waveform, resample
from speechkit_rt.bundle import Bundle
from speechkit_rt.codec import _check_runtime, _check_signature
from speechkit_rt.errors import AudioError, BundleError
from speechkit_rt.lifetime import BundleLifetime
from speechkit_rt.weights import materialize

logger = logging.getLogger(__name__)

REQUIRED_GRAPHS = ("encoder", "decoder_step")
METHODS = ("ctc_greedy", "joint", "attention")
VOCABULARY_FILE = "vocabulary.json"
MIN_SECONDS = 0.1  # as speechkit.asr.api: no word fits in less
SILENCE_PEAK = 1e-4  # about -80 dBFS
WINDOW_SECONDS, CUT_SEARCH_SECONDS = 20.0, 4.0
_VOCABULARY_KEYS = (
    "version",
    "normalizer_version",
    "symbols",
    "special_ids",
    "blank_id",
    "sos_eos_id",
    "space_id",
)


@dataclass(frozen=True)
class RuntimeWord:
    """A recognised word: text, start/end in seconds from the start of the audio, confidence in [0, 1]."""

    text: str
    start: float
    end: float
    confidence: float


@dataclass(frozen=True)
class RuntimeTranscript:
    """What :meth:`ASRRuntime.transcribe` returns (the fields of the SDK's ``Transcript``).

    Attributes:
        text: lowercase words separated by single spaces ("" when nothing was said).
        words: one :class:`RuntimeWord` per word, times from the CTC alignment.
        duration: seconds of audio transcribed.
        confidence: mean word confidence (1.0 for an empty transcript).
    """

    text: str
    words: tuple[RuntimeWord, ...]
    duration: float
    confidence: float = 1.0

    def to_dict(self) -> dict:
        """JSON-ready, rounded as the SDK's ``Transcript.to_dict``."""
        words = [
            {
                "text": w.text,
                "start": round(w.start, 3),
                "end": round(w.end, 3),
                "confidence": round(w.confidence, 3),
            }
            for w in self.words
        ]
        return {"text": self.text, "duration": round(self.duration, 3), "confidence": round(self.confidence, 4),
                "words": words}  # fmt: skip

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


@dataclass(frozen=True)
class Vocabulary:
    """The bundle's character table: ``symbols[id]``, the special ids, and blank / sos-eos / space."""

    symbols: tuple[str, ...]
    special_ids: frozenset[int]
    blank_id: int
    sos_eos_id: int
    space_id: int

    @classmethod
    def from_json(cls, data: bytes, vocab_size: int) -> Vocabulary:
        """Parse and check ``vocabulary.json`` against the graphs' vocabulary size.

        Raises:
            BundleError: not JSON, keys missing or unknown, ids out of range.
        """
        try:
            table = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise BundleError(f"{VOCABULARY_FILE}: not valid JSON ({err})") from err
        if not isinstance(table, dict) or set(table) != set(_VOCABULARY_KEYS):
            found = sorted(table) if isinstance(table, dict) else type(table).__name__
            raise BundleError(
                f"{VOCABULARY_FILE}: needs exactly the keys {sorted(_VOCABULARY_KEYS)}, has {found}"
            )
        symbols, specials = table["symbols"], table["special_ids"]
        if not isinstance(symbols, list) or not all(isinstance(s, str) and s for s in symbols):
            raise BundleError(f"{VOCABULARY_FILE}: symbols must be a list of non-empty strings")
        if not isinstance(specials, list):
            raise BundleError(f"{VOCABULARY_FILE}: special_ids must be a list of ids")
        if len(symbols) != vocab_size:
            raise BundleError(f"{VOCABULARY_FILE}: {len(symbols)} symbols, the graphs score {vocab_size}")
        ids = [table[key] for key in ("blank_id", "sos_eos_id", "space_id")] + specials
        if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < vocab_size for i in ids):
            raise BundleError(f"{VOCABULARY_FILE}: ids must be integers in 0..{vocab_size - 1}")
        if symbols[table["space_id"]] != " ":
            raise BundleError(f"{VOCABULARY_FILE}: space_id {table['space_id']} is not the symbol ' '")
        return cls(tuple(symbols), frozenset(specials), table["blank_id"], table["sos_eos_id"],
                   table["space_id"])  # fmt: skip

    def to_text(self, ids: Sequence[int]) -> str:
        """Ids -> string; special ids are dropped and spaces collapsed (as ``CharVocabulary.ids_to_text``)."""
        chars = [self.symbols[i] for i in ids if 0 <= i < len(self.symbols) and i not in self.special_ids]
        return " ".join("".join(chars).split())


class ASRRuntime(BundleLifetime):
    """Transcribe speech with a verified ASR bundle; use :meth:`open`.

    Attributes:
        bundle: the opened :class:`~speechkit_rt.bundle.Bundle`.
        name: the bundle's ``model_name``.
        sample_rate: audio rate of the graphs (Hz); other rates are resampled.
        frame_shift_samples: samples per encoder frame (640 = 40 ms at 16 kHz).
        vocabulary: the :class:`Vocabulary`.
        num_heads: decoder heads ``decoder_step`` returns (DeCRED intermediate heads + the final one).
    """

    def __init__(self, bundle: Bundle, num_threads: int | None = None) -> None:
        manifest = bundle.manifest
        if manifest["task"] != "asr":
            raise BundleError(f"bundle {manifest['model_name']!r} is a {manifest['task']!r} bundle, not asr")
        for graph_name in REQUIRED_GRAPHS:
            _check_runtime(graph_name, bundle.graph(graph_name))
        self.bundle, self.num_threads = bundle, num_threads
        self.name: str = manifest["model_name"]
        self.sample_rate = int(manifest["sample_rate"])
        extra = manifest["extra"]
        shift = extra.get("frame_shift_samples", round(self.sample_rate / manifest["frame_rate"]))
        if isinstance(shift, bool) or not isinstance(shift, int) or shift < 1:
            raise BundleError(
                f"manifest.json: extra.frame_shift_samples must be a positive integer, got {shift!r}"
            )
        self.frame_shift_samples = shift
        outputs = {t["name"]: t for t in bundle.graph("encoder")["outputs"]}
        if "ctc_log_probs" not in outputs or not isinstance(outputs["ctc_log_probs"]["shape"][-1], int):
            raise BundleError("graph 'encoder' declares no ctc_log_probs output of a fixed vocabulary size")
        vocab_size = outputs["ctc_log_probs"]["shape"][-1]
        file = extra.get("vocabulary_file", VOCABULARY_FILE)
        if not isinstance(file, str):
            raise BundleError(f"manifest.json: extra.vocabulary_file must be a file name, got {file!r}")
        self.vocabulary = Vocabulary.from_json(bundle.read_bytes(file), vocab_size)
        step = {t["name"]: t for t in bundle.graph("decoder_step")["outputs"]}
        intermediate = step.get("intermediate_log_probs", {"shape": [None, 0]})["shape"][1]
        if "log_probs" not in step or isinstance(intermediate, bool) or not isinstance(intermediate, int):
            raise BundleError("graph 'decoder_step' declares no log_probs or a dynamic number of heads")
        self.num_heads = 1 + intermediate
        self._sessions: dict[str, ort.InferenceSession] = {}

    @classmethod
    def open(cls, path: str | os.PathLike, *, num_threads: int | None = None) -> ASRRuntime:
        """Open and verify an ASR bundle (folder or .zip): manifest, version, every file's sha256.

        Raises:
            BundleError: the bundle is refused (tampered, unknown version, not asr, graphs missing).
        """
        bundle = Bundle.open(path)
        try:
            return cls(bundle, num_threads)
        except BaseException:
            bundle.close()
            raise

    @property
    def frame_shift_seconds(self) -> float:
        return self.frame_shift_samples / self.sample_rate

    # ---- transcription ----------------------------------------------------------------------------

    def transcribe(
        self,
        wav: np.ndarray,
        sample_rate: int,
        *,
        method: str = "ctc_greedy",
        beam_size: int = 4,
        ctc_weight: float = 0.3,
        decred: str = "auto",
        length_bonus: float = 0.0,
        max_chars_per_second: float = 40.0,
    ) -> RuntimeTranscript:
        """Audio [T] or [T, C] at ``sample_rate`` -> :class:`RuntimeTranscript` (see the module docstring).

        Args:
            wav: float or integer PCM samples.
            sample_rate: their rate in Hz.
            method: "ctc_greedy" (default), "joint" (attention beam search with CTC prefix scores,
                the SDK's default) or "attention" (beam search alone).
            beam_size, ctc_weight, length_bonus, max_chars_per_second: as ``DecodingOptions``.
            decred: "auto" (log-linear when the decoder has intermediate heads), "final", "linear"
                or "log_linear".

        Raises:
            AudioError: empty, NaN/Inf, channels-first audio, an implausible rate, or under 0.1 s.
            ValueError: an unknown method or DeCRED mode, beam_size < 1, ctc_weight outside [0, 1].
        """
        if method not in METHODS:
            raise ValueError(f"decoding method must be one of {METHODS}, got {method!r}")
        if decred not in ("auto", *dec.DECRED_MODES):
            raise ValueError(f"decred must be 'auto' or one of {dec.DECRED_MODES}, got {decred!r}")
        if beam_size < 1 or not 0.0 <= ctc_weight <= 1.0:
            raise ValueError("beam_size must be >= 1 and ctc_weight in [0, 1]")
        search = {"method": method, "beam_size": beam_size, "ctc_weight": ctc_weight, "decred": decred,
                  "length_bonus": length_bonus, "max_chars_per_second": max_chars_per_second}  # fmt: skip
        wav = self._prepare(wav, sample_rate)
        if len(wav) < MIN_SECONDS * self.sample_rate:
            raise AudioError(
                f"audio is {len(wav) / self.sample_rate:.3f} s long; at least {MIN_SECONDS} s is needed"
            )
        words: list[RuntimeWord] = []
        offset = 0
        for piece in self._windows(wav):
            words += self._transcribe_window(piece, offset / self.sample_rate, search)
            offset += len(piece)
        confidence = float(np.mean([w.confidence for w in words])) if words else 1.0
        return RuntimeTranscript(
            " ".join(w.text for w in words), tuple(words), offset / self.sample_rate, confidence
        )

    def _transcribe_window(self, wav: np.ndarray, time_offset: float, search: dict) -> list[RuntimeWord]:
        if float(np.max(np.abs(wav))) < SILENCE_PEAK:
            return []
        log_probs, memory = self._run("encoder", {"wav": wav[None]})
        log_probs = log_probs[0].astype(np.float64)  # [N, V]
        vocab = self.vocabulary
        if search["method"] == "ctc_greedy":
            tokens, spans = dec.ctc_greedy(log_probs, vocab.blank_id)
        else:
            tokens = self._beam_search(log_probs, memory, search)
            spans = dec.ctc_forced_align(log_probs, tokens, vocab.blank_id)
            if spans is None:  # more characters than frames can hold
                spans = dec.even_spans(len(tokens), len(log_probs))
        confidences = dec.span_confidences(log_probs, tokens, spans)
        shift, end_limit = self.frame_shift_seconds, time_offset + len(wav) / self.sample_rate
        return [
            RuntimeWord(text, round(min(time_offset + start * shift, end_limit), 3),
                        round(min(time_offset + end * shift, end_limit), 3), round(confidence, 4))
            for text, start, end, confidence in dec.group_words(tokens, spans, confidences, vocab.space_id, vocab.to_text)
        ]  # fmt: skip

    def _beam_search(self, log_probs: np.ndarray, memory: np.ndarray, search: dict) -> list[int]:
        vocab = self.vocabulary
        mode = search["decred"]
        if mode == "auto":
            mode = "log_linear" if self.num_heads > 1 else "final"

        def score(prefixes: np.ndarray) -> np.ndarray:
            outputs = self._run("decoder_step", {"tokens": prefixes, "memory": memory})
            heads = [outputs[1][:, i] for i in range(outputs[1].shape[1])] if len(outputs) > 1 else []
            return dec.combine_heads([*heads, outputs[0]], mode)

        seconds = len(log_probs) * self.frame_shift_seconds
        use_ctc = search["method"] == "joint" and search["ctc_weight"] > 0
        scorer = dec.CTCPrefixScorer(log_probs, vocab.blank_id, vocab.sos_eos_id) if use_ctc else None
        hyps = dec.beam_search(
            score, vocab.sos_eos_id, vocab.sos_eos_id, search["beam_size"],
            max(4, int(search["max_chars_per_second"] * seconds)), scorer,
            search["ctc_weight"] if use_ctc else 0.0, search["length_bonus"],
        )  # fmt: skip
        return list(hyps[0][0]) if hyps else []

    # ---- input ------------------------------------------------------------------------------------

    def _prepare(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        """As ``SpeechRecognizer.prepare``: finite float32 mono at :attr:`sample_rate`, within [-1, 1]."""
        sample_rate = check_sample_rate(sample_rate)
        wav = check_waveform(np.asarray(wav), allow_silence=True)
        if wav.ndim == 2:
            if wav.shape[1] > 8 and wav.shape[0] <= 8:
                raise AudioError(f"audio looks channels-first {wav.shape}; pass [T, channels]")
            logger.info("mixing %d channels down to mono", wav.shape[1])
            wav = wav.mean(axis=1, dtype=np.float32)
        if sample_rate != self.sample_rate:
            logger.info("resampling from %d Hz to %d Hz", sample_rate, self.sample_rate)
            wav = resample(wav, sample_rate, self.sample_rate)
        peak = float(np.max(np.abs(wav)))
        if peak > 1.0:
            logger.warning("audio peaks at %.2f (beyond [-1, 1]); scaling it down", peak)
            wav = wav / peak
        return np.ascontiguousarray(wav, dtype=np.float32)

    def _windows(self, wav: np.ndarray) -> Iterator[np.ndarray]:
        """Windows of at most 20 s, each cut at the quietest 10 ms of its last 4 s (the SDK's cut)."""
        window, hop = int(WINDOW_SECONDS * self.sample_rate), self.sample_rate // 100
        while len(wav) > window:
            search = min(window // 2, int(CUT_SEARCH_SECONDS * self.sample_rate)) // hop * hop
            tail = wav[window - search : window]
            energy = np.square(tail[: len(tail) // hop * hop].reshape(-1, hop)).mean(1)
            cut = window - search + int(np.argmin(energy)) * hop + hop // 2
            yield wav[:cut]
            wav = wav[cut:]
        if len(wav):
            yield wav

    # ---- sessions ---------------------------------------------------------------------------------

    def session(self, graph_name: str) -> ort.InferenceSession:
        """The onnxruntime session of a graph (packed / derived weights rebuilt), checked against the manifest."""
        if graph_name not in self._sessions:
            session = materialize(self.bundle, graph_name, num_threads=self.num_threads)
            _check_signature(graph_name, self.bundle.graph(graph_name), session)
            self._sessions[graph_name] = session
        return self._sessions[graph_name]

    def __repr__(self) -> str:
        return f"ASRRuntime({self.name!r}, sample_rate={self.sample_rate}, vocabulary={len(self.vocabulary.symbols)})"
