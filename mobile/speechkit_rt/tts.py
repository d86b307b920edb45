"""``TTSRuntime``: a MobileSpeech bundle (``task: "tts"``) run with onnxruntime and numpy, no torch.

Phoneme ids in, float32 audio out, with the call sequence of ``MobileSpeech.generate`` (the same an
app follows on Android or iOS, see ``mobile/README.md``)::

    voice      default_voice.npz: prompt_memory f32 [1, P, D]            (the shipped voice), or
               prompt audio -> trim silence, 1..6 s -> graph "codec_encoder" -> codes[:, :K, :P_max]
                            -> graph "tts_prompt_encoder" -> prompt_memory   (zero-shot)
    encode     graph "tts_encoder": phonemes i64 [1, N], prompt_memory -> text [1, N, D], log_durations [1, N]
    durations  round(expm1(log_durations) / speed), at least 1 frame per phoneme; T = their sum
    frames     text rows repeated by the durations (length regulation): [1, T, D]
    decode     codes [1, K, T] all mask_id; for layer j = 0 .. k - 1: S_j steps of graph
               "tts_decoder_step" (codes, j, frames, prompt_memory) -> logits [1, T, V]; after step s
               keep the floor(T * cos(pi/2 * (s + 1) / S_j)) least confident new tokens masked
               (none after the last step); layer 1 samples (temperature annealed linearly to 0,
               top-k), higher layers are greedy and take one step unless ``steps`` says otherwise
    audio      graph "codec_decoder": codes[:, :k] -> wav f32 [1, T * hop]

Text is not handled here: the SDK's frontend (``speechkit.text``: normaliser, CMUdict + letter-to-sound
g2p, the frozen symbol table) is pure Python but lives in the ``speechkit`` package, whose import
loads torch, so this module neither imports it nor accepts text. An app runs the frontend on its side
(or a port of it) and passes ids of the table in ``manifest.extra.tts.symbols``; id 0 (padding) is
refused. Sampling draws from numpy's generator, so sampled audio is not the SDK's samples (only the
same distribution); with ``temperature=0`` the tokens equal the SDK's (tested).

Example:
    >>> TTSRuntime.open("/no/such/bundle")
    Traceback (most recent call last):
    ...
    speechkit_rt.errors.BundleError: /no/such/bundle: no such bundle folder or .zip
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from speechkit_rt.audio_io import prepare_input
from speechkit_rt.bundle import Bundle
from speechkit_rt.codec import _check_runtime, _check_signature, _hop_length
from speechkit_rt.errors import AudioError, BundleError, SpeechkitRtError
from speechkit_rt.lifetime import BundleLifetime
from speechkit_rt.weights import materialize

logger = logging.getLogger(__name__)

REQUIRED_GRAPHS = ("tts_encoder", "tts_decoder_step", "codec_decoder")
ZERO_SHOT_GRAPHS = ("tts_prompt_encoder", "codec_encoder")
KINDS = ("mobilespeech_tts",)
MAX_PHONEMES = 2000  # about two minutes of speech: longer input is split into sentences first
# The SDK's prompt handling (speechkit.tts.api), tested equal there.
MIN_PROMPT_SECONDS = 1.0
MAX_PROMPT_SECONDS = 6.0
SILENCE_DBFS = -50.0


class PhonemeInputError(SpeechkitRtError, ValueError):
    """Phoneme ids the runtime refuses: empty, not integers, padding (0) or outside the symbol table."""


@dataclass(frozen=True)
class Voice:
    """What the TTS model conditions on: ``prompt_memory`` f32 [1, P, D] (and the prompt's codes
    [1, K, P] when known)."""

    prompt_memory: np.ndarray
    prompt_codes: np.ndarray | None = None


@dataclass(frozen=True)
class SynthesizedTokens:
    """Output of :meth:`TTSRuntime.synthesize_codes`: ``codes`` i64 [1, k, T], ``durations`` i64 [N] in frames."""

    codes: np.ndarray
    durations: np.ndarray


class TTSRuntime(BundleLifetime):
    """Synthesise speech from phoneme ids with a verified MobileSpeech bundle; use :meth:`open`.

    Attributes:
        bundle: the opened :class:`~speechkit_rt.bundle.Bundle`.
        sample_rate, frame_rate, hop_length: audio rate (Hz), token frames per second, samples per frame.
        num_codebooks: K, the codec layers the model predicts; codebook_size: V; mask_id: V.
        default_steps: decoding steps per layer (missing entries = 1).
        symbols: the phoneme table (id -> symbol), when the bundle records it.
        default_voice: the shipped :class:`Voice` (None when the bundle has none).
        zero_shot: whether the bundle can make voices from prompt audio (:meth:`voice_from_audio`).
    """

    def __init__(self, bundle: Bundle, num_threads: int | None = None) -> None:
        m = bundle.manifest
        if m["task"] != "tts" or m["model_kind"] not in KINDS:
            raise BundleError(
                f"bundle {m['model_name']!r} is a {m['task']!r} bundle of {m['model_kind']!r}, not a TTS bundle "
                f"of {KINDS}"
            )
        for name in REQUIRED_GRAPHS:
            _check_runtime(name, bundle.graph(name))
        tts = m["extra"].get("tts")
        if not isinstance(tts, dict):
            raise BundleError("manifest.json: a tts bundle needs extra.tts (decoding settings)")
        try:
            self.dim = int(tts["dim"])
            self.mask_id = int(tts["mask_id"])
            self.num_symbols = int(tts["num_symbols"])
            self.default_steps = tuple(int(s) for s in tts["default_steps"])
            self.default_temperature = float(tts["default_temperature"])
            self.default_top_k = None if tts["default_top_k"] is None else int(tts["default_top_k"])
            self.max_prompt_frames = int(tts["default_prompt_frames"])
        except (KeyError, TypeError, ValueError) as err:
            raise BundleError(f"manifest.json: extra.tts lacks or mistypes a field ({err!r})") from err
        self.bundle = bundle
        self.name: str = m["model_name"]
        self.sample_rate = int(m["sample_rate"])
        self.frame_rate = float(m["frame_rate"])
        self.hop_length = _hop_length(m)
        self.num_codebooks = int(m["token_layout"]["num_codebooks"])
        self.codebook_size = int(m["token_layout"]["codebook_sizes"][0])
        self.symbols: tuple[str, ...] | None = tuple(tts["symbols"]) if "symbols" in tts else None
        self.zero_shot = all(name in m["graphs"] for name in ZERO_SHOT_GRAPHS)
        self.num_threads = num_threads
        self._sessions: dict[str, ort.InferenceSession] = {}
        self.default_voice = self._load_default_voice(m["extra"].get("default_voice"))

    @classmethod
    def open(cls, path: str | os.PathLike, *, num_threads: int | None = None) -> TTSRuntime:
        """Open and verify a TTS bundle (folder or .zip): manifest, version, every file's sha256.

        Raises:
            BundleError: the bundle is refused (tampered, unknown version, not a TTS bundle, graphs missing).
        """
        bundle = Bundle.open(path)
        try:
            return cls(bundle, num_threads)
        except BaseException:
            bundle.close()
            raise

    # ---- voices ---------------------------------------------------------------------------------

    def _load_default_voice(self, entry: Any) -> Voice | None:
        if entry is None:
            return None
        arrays = self.bundle.load_arrays(entry["file"])  # hash-checked, never unpickled
        memory, codes = arrays.get("prompt_memory"), arrays.get("prompt_codes")
        if memory is None:
            raise BundleError(f"{entry['file']}: no 'prompt_memory' array")
        return Voice(self._check_memory(memory, entry["file"]), codes)

    def _check_memory(self, memory: np.ndarray, where: str) -> np.ndarray:
        if memory.ndim != 3 or memory.shape[0] != 1 or memory.shape[2] != self.dim or memory.shape[1] == 0:
            raise BundleError(f"{where}: prompt memory of shape {memory.shape}, expected [1, P, {self.dim}]")
        return np.ascontiguousarray(memory, dtype=np.float32)

    def voice_from_memory(self, prompt_memory: np.ndarray) -> Voice:
        """A voice from a prompt memory [1, P, D] computed elsewhere (e.g. cached from an earlier prompt)."""
        return Voice(self._check_memory(np.asarray(prompt_memory), "prompt_memory"))

    def voice_from_codes(self, prompt_codes: np.ndarray) -> Voice:
        """Prompt codes [1, K', P] of the bundle's codec (K' >= K) -> a voice, through ``tts_prompt_encoder``."""
        codes = np.asarray(prompt_codes)
        if (
            codes.ndim != 3
            or codes.shape[0] != 1
            or codes.shape[1] < self.num_codebooks
            or codes.shape[2] == 0
        ):
            raise AudioError(
                f"prompt codes of shape {codes.shape}, expected [1, >= {self.num_codebooks}, P > 0]"
            )
        codes = np.ascontiguousarray(codes[:, : self.num_codebooks, : self.max_prompt_frames], dtype=np.int64)
        memory = self._run("tts_prompt_encoder", {"prompt_codes": codes})[0]
        return Voice(memory, codes)

    def voice_from_audio(self, wav: np.ndarray, sample_rate: int) -> Voice:
        """Reference speech -> its voice (zero-shot), as ``TextToSpeech.voice`` does in the SDK.

        Leading and trailing frames under -50 dBFS are cut, at least 1 s must remain and at most
        6 s is used; then ``codec_encoder`` and ``tts_prompt_encoder``.

        Raises:
            AudioError: bad, silent or too short audio.
            BundleError: a bundle exported without the zero-shot graphs.
        """
        if not self.zero_shot:
            raise BundleError(f"bundle {self.name!r} has no zero-shot graphs {ZERO_SHOT_GRAPHS}")
        wav = trim_silence(prepare_input(wav, sample_rate, self.sample_rate), self.sample_rate)
        if len(wav) < MIN_PROMPT_SECONDS * self.sample_rate:
            raise AudioError(
                f"prompt has {len(wav) / self.sample_rate:.2f} s of speech; at least {MIN_PROMPT_SECONDS:g} s is needed"
            )
        wav = wav[: int(MAX_PROMPT_SECONDS * self.sample_rate)]
        padded = np.pad(wav, (0, (-len(wav)) % self.hop_length))[None].astype(np.float32)
        return self.voice_from_codes(self._run("codec_encoder", {"wav": padded})[0])

    # ---- synthesis ------------------------------------------------------------------------------

    def synthesize_phonemes(
        self,
        ids: Any,
        seed: int = 0,
        voice: Voice | None = None,
        speed: float = 1.0,
        temperature: float | None = None,
        top_k: int | None = None,
        steps: tuple[int, ...] | None = None,
        num_codebooks: int | None = None,
    ) -> np.ndarray:
        """Phoneme ids [N] -> float32 audio [T * hop_length] at :attr:`sample_rate` (one sentence, no pause).

        Args:
            ids: ids of the bundle's phoneme table (``manifest.extra.tts.symbols``).
            seed: seed of the numpy generator that samples layer 1 (unused when ``temperature`` is 0).
            voice: default: the bundle's default voice.
            speed: > 1 speaks faster (durations divided by it).
            temperature: layer-1 sampling temperature (default the model's, 0 = greedy argmax).
            top_k: top-k filter of that sampling (default the model's; 0 = no filter).
            steps: decoding steps per layer (default the model's; missing entries = 1).
            num_codebooks: layers to generate (<= K; fewer is faster and coarser).

        Raises:
            PhonemeInputError: empty ids or ids outside the table; ValueError: bad options.
        """
        result = self.synthesize_codes(ids, voice, seed, speed, temperature, top_k, steps, num_codebooks)
        return self.decode_codes(result.codes)

    def synthesize_codes(
        self,
        ids: Any,
        voice: Voice | None = None,
        seed: int = 0,
        speed: float = 1.0,
        temperature: float | None = None,
        top_k: int | None = None,
        steps: tuple[int, ...] | None = None,
        num_codebooks: int | None = None,
        durations: np.ndarray | None = None,
    ) -> SynthesizedTokens:
        """Phoneme ids [N] -> codec codes [1, k, T] and durations [N] (see :meth:`synthesize_phonemes`).

        ``durations`` [N] (frames per phoneme) replaces the predicted ones, as in ``MobileSpeech.generate``.
        """
        ids = self.check_phonemes(ids)
        voice = self._voice(voice)
        if speed <= 0 or not math.isfinite(speed):
            raise ValueError(f"speed must be a positive number, got {speed}")
        k = self.num_codebooks if num_codebooks is None else int(num_codebooks)
        if not 1 <= k <= self.num_codebooks:
            raise ValueError(f"num_codebooks must be in 1..{self.num_codebooks}, got {num_codebooks}")
        temperature = self.default_temperature if temperature is None else float(temperature)
        top_k = self.default_top_k if top_k is None else int(top_k)
        steps = tuple(steps or self.default_steps)
        if any(int(s) < 1 for s in steps):
            raise ValueError(f"steps must be >= 1, got {steps}")
        text, log_durations = self.encode(ids, voice)
        if durations is None:
            durations = predicted_durations(log_durations, speed)
        durations = np.asarray(durations, dtype=np.int64).reshape(-1)
        if durations.shape != ids.shape or (durations < 0).any() or durations.sum() == 0:
            raise ValueError(f"durations must be {len(ids)} non-negative frame counts with a positive sum")
        frames = np.ascontiguousarray(np.repeat(text, durations, axis=0)[None])  # [1, T, D]
        num_frames = frames.shape[1]
        rng = np.random.default_rng(seed)
        codes = np.full((1, self.num_codebooks, num_frames), self.mask_id, dtype=np.int64)
        for j in range(k):

            def logits_fn(tokens: np.ndarray, masked: np.ndarray, j: int = j) -> np.ndarray:
                inputs = codes.copy()
                inputs[0, j] = np.where(masked, self.mask_id, tokens)
                return self.decoder_logits(inputs, j, frames, voice.prompt_memory)[0]

            codes[0, j] = iterative_decode(
                logits_fn,
                num_frames,
                steps[j] if j < len(steps) else 1,
                temperature if j == 0 else 0.0,
                top_k,
                rng,
            )
        return SynthesizedTokens(codes[:, :k], durations)

    def encode(self, ids: Any, voice: Voice | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Phoneme ids [N] -> (text encodings [N, D], log(1 + frames) [N]) through ``tts_encoder``."""
        ids = self.check_phonemes(ids)
        feeds = {"phonemes": ids[None], "prompt_memory": self._voice(voice).prompt_memory}
        text, log_durations = self._run("tts_encoder", feeds)
        return text[0], log_durations[0]

    def decoder_logits(
        self, codes: np.ndarray, layer: int, frames: np.ndarray, prompt_memory: np.ndarray
    ) -> np.ndarray:
        """One ``tts_decoder_step``: codes [1, K, T] (mask_id where unknown), frames [1, T, D] -> logits [1, T, V]."""
        feeds = {
            "codes": np.ascontiguousarray(codes, dtype=np.int64),
            "layer": np.array([layer], dtype=np.int64),
            "frames": np.ascontiguousarray(frames, dtype=np.float32),
            "prompt_memory": np.ascontiguousarray(prompt_memory, dtype=np.float32),
        }
        return self._run("tts_decoder_step", feeds)[0]

    def decode_codes(self, codes: np.ndarray) -> np.ndarray:
        """Codec codes [1, k, T] -> float32 audio [T * hop_length] through ``codec_decoder``."""
        codes = np.ascontiguousarray(codes, dtype=np.int64)
        if codes.shape[-1] == 0:
            return np.zeros(0, dtype=np.float32)
        wav = self._run("codec_decoder", {"codes": codes})[0]
        return np.ascontiguousarray(wav.reshape(-1), dtype=np.float32)

    def check_phonemes(self, ids: Any) -> np.ndarray:
        """Ids as int64 [N], refusing empty input, non-integers, padding (0) and ids outside the table."""
        array = np.asarray(ids)
        if array.ndim == 2 and array.shape[0] == 1:
            array = array[0]
        if array.ndim != 1 or array.size == 0:
            raise PhonemeInputError(f"need a non-empty sequence of phoneme ids [N], got shape {array.shape}")
        if not np.issubdtype(array.dtype, np.integer):
            raise PhonemeInputError(f"phoneme ids must be integers, got dtype {array.dtype}")
        if array.size > MAX_PHONEMES:
            raise PhonemeInputError(
                f"{array.size} phonemes, over {MAX_PHONEMES}: split the text into sentences"
            )
        bad = (array < 1) | (array >= self.num_symbols)
        if bad.any():
            raise PhonemeInputError(
                f"phoneme ids must be in 1..{self.num_symbols - 1} (0 is padding), got {array[bad][:5].tolist()}"
            )
        return array.astype(np.int64)

    def _voice(self, voice: Voice | None) -> Voice:
        if voice is not None:
            return voice
        if self.default_voice is None:
            raise BundleError(f"bundle {self.name!r} has no default voice: pass a voice (voice_from_audio)")
        return self.default_voice

    # ---- sessions -------------------------------------------------------------------------------

    def session(self, graph_name: str) -> ort.InferenceSession:
        """The onnxruntime session of a graph (weights materialised), created on first use and checked."""
        if graph_name not in self._sessions:
            graph = self.bundle.graph(graph_name)
            _check_runtime(graph_name, graph)
            session = materialize(self.bundle, graph_name, num_threads=self.num_threads)
            _check_signature(graph_name, graph, session)
            self._sessions[graph_name] = session
        return self._sessions[graph_name]

    def __repr__(self) -> str:
        return (
            f"TTSRuntime({self.name!r}, sample_rate={self.sample_rate}, codebooks={self.num_codebooks}, "
            f"steps={self.default_steps}, zero_shot={self.zero_shot})"
        )


# ---- the decode schedule in numpy (speechkit.decoders.masked / sampling) --------------------------


def predicted_durations(log_durations: np.ndarray, speed: float = 1.0) -> np.ndarray:
    """Frames per phoneme from log(1 + frames): ``max(1, round(expm1(x) / speed))`` (float32, half to even).

    Example:
        >>> predicted_durations(np.log1p(np.array([2.4, 0.2, 5.0], dtype=np.float32))).tolist()
        [2, 1, 5]
    """
    frames = np.expm1(np.asarray(log_durations, dtype=np.float32)) / np.float32(speed)
    return np.maximum(np.round(frames), 1).astype(np.int64)


def masked_after_step(total: int, step: int, num_steps: int) -> int:
    """Tokens left masked after step ``step`` of ``num_steps``: floor(total * cos(pi/2 * (step+1)/S)), 0 at the end.

    Computed in float32 like the torch schedule (``cosine_schedule``).

    Example:
        >>> [masked_after_step(100, s, 4) for s in range(4)]
        [92, 70, 38, 0]
    """
    if step >= num_steps - 1:
        return 0
    progress = np.float32((step + 1) / num_steps)
    share = max(np.float32(0.0), np.cos(progress * np.float32(math.pi) / np.float32(2)))
    return int(np.floor(np.float32(total) * share))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log_softmax over the last axis (float32)."""
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def sample_tokens(
    logits: np.ndarray, temperature: float, top_k: int | None, rng: np.random.Generator
) -> np.ndarray:
    """One token per row of logits [T, V] -> [T] int64: argmax at temperature 0, else top-k sampling.

    Example:
        >>> sample_tokens(np.array([[0.0, 5.0, 1.0]], np.float32), 0.0, None, np.random.default_rng(0)).tolist()
        [1]
    """
    if temperature <= 0.0:
        return logits.argmax(-1).astype(np.int64)
    scaled = logits.astype(np.float32) / np.float32(temperature)
    if top_k is not None and 0 < top_k < scaled.shape[-1]:
        kth = np.partition(scaled, -top_k, axis=-1)[..., -top_k, None]
        scaled = np.where(scaled < kth, -np.inf, scaled)
    probs = np.exp(log_softmax(scaled).astype(np.float64))
    cdf = np.cumsum(probs, axis=-1)
    u = rng.random((probs.shape[0], 1)) * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(-1), probs.shape[-1] - 1).astype(np.int64)


def iterative_decode(
    logits_fn: Any,
    length: int,
    num_steps: int,
    temperature: float,
    top_k: int | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """Fill ``length`` masked tokens in ``num_steps`` confidence-ordered steps (MaskGIT), as
    ``speechkit.decoders.masked.iterative_decode`` does for one sequence.

    ``logits_fn(tokens [T], masked [T] bool) -> logits [T, V]``. Each step samples every masked
    position (temperature annealed linearly to 0 over the steps), scores it by the log-probability
    of its sample, and keeps the :func:`masked_after_step` least confident masked positions masked.

    Example:
        >>> fn = lambda tokens, masked: np.eye(3, dtype=np.float32)[np.arange(6) % 3]
        >>> iterative_decode(fn, 6, 3, 0.0, None, np.random.default_rng(0)).tolist()
        [0, 1, 2, 0, 1, 2]
    """
    tokens = np.zeros(length, dtype=np.int64)
    masked = np.ones(length, dtype=bool)
    for step in range(num_steps):
        if not masked.any():
            break
        logits = np.asarray(logits_fn(tokens, masked), dtype=np.float32)
        sampled = sample_tokens(logits, temperature * (1.0 - step / num_steps), top_k, rng)
        confidence = np.take_along_axis(log_softmax(logits), sampled[:, None], -1)[:, 0]
        confidence = np.where(masked, confidence, np.inf)  # known tokens are never re-masked
        keep_masked = masked_after_step(length, step, num_steps)
        rank = np.argsort(np.argsort(confidence, kind="stable"), kind="stable")
        still_masked = (rank < keep_masked) & masked
        tokens = np.where(masked & ~still_masked, sampled, tokens)
        masked = still_masked
    return tokens


def trim_silence(wav: np.ndarray, sample_rate: int, frame_seconds: float = 0.02) -> np.ndarray:
    """Cut leading and trailing 20 ms frames under -50 dBFS (``speechkit.tts.api._trim_silence``).

    Raises:
        AudioError: every frame is quiet.
    """
    hop = int(frame_seconds * sample_rate)
    frames = len(wav) // hop
    if frames == 0:
        return wav
    energy = (wav[: frames * hop].reshape(frames, hop) ** 2).mean(1)
    loud = np.flatnonzero(10 * np.log10(energy + 1e-12) > SILENCE_DBFS)
    if len(loud) == 0:
        raise AudioError("prompt is silent (no frame above -50 dBFS)")
    return wav[loud[0] * hop : (loud[-1] + 1) * hop]
