"""Streaming codec runtime: a causal codec bundle's step graphs run chunk by chunk with explicit state.

A streaming bundle (``speechkit_export.streaming_graphs``) holds two step graphs, each processing a
fixed ``tokens_per_step`` (n) tokens per call, with the state tensors the manifest pairs::

    encoder_step  wav f32 [1, n * hop_length] + state -> codes i64 [1, K, n] + next state
    decoder_step  codes i64 [1, k, n] + state -> wav f32 [1, n * hop_length], wav_tail + next state

State convention (``graphs.<name>.state``, checked by :mod:`speechkit_rt.bundle`): a list of
``{"input": name, "output": name}`` pairs; every state input starts as zeros of its declared fixed
shape and dtype, and after each call the paired output becomes the next call's input.
:class:`StepGraph` implements exactly that and nothing model-specific.

:class:`StreamingEncoder` and :class:`StreamingDecoder` accept chunks of any size, buffer them to
whole steps and return only what is final, as ``speechkit.codec.streaming`` does in torch: joined
with ``flush()``, the outputs equal the offline encode / decode of the whole stream. The decoder's
step output lags by ``extra.output_offset_samples`` (the overlap-add tail, 10 ms for the shipped
codec); the decoder drops that many samples at the start and ``flush()`` emits the last
``wav_tail``. Audio must already be mono float at the bundle's sample rate (a resampler would need
state of its own).

Example:
    >>> StreamingCodecRuntime.open("/no/such/bundle")
    Traceback (most recent call last):
    ...
    speechkit_rt.errors.BundleError: /no/such/bundle: no such bundle folder or .zip
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from speechkit_rt.bundle import Bundle
from speechkit_rt.errors import AudioError, BitstreamError, BundleError
from speechkit_rt.token_file import check_code_range

logger = logging.getLogger(__name__)

ENCODER_STEP, DECODER_STEP = "encoder_step", "decoder_step"
_DTYPES = {
    "float32": np.float32, "float16": np.float16, "float64": np.float64, "int8": np.int8,
    "uint8": np.uint8, "int16": np.int16, "int32": np.int32, "int64": np.int64, "bool": np.bool_,
}  # fmt: skip


class StepGraph:
    """One step graph with its state arrays: ``run`` feeds the state in and keeps the next state.

    Args:
        name: the graph's name (for messages).
        entry: its manifest entry (``inputs``, ``outputs``, ``state`` pairs, validated by the bundle).
        model: the ONNX model (bytes or a file path).
        num_threads: onnxruntime intra-op threads (None: onnxruntime's default).

    Example:
        >>> entry = {"inputs": [{"name": "x", "dtype": "float32", "shape": [1]}], "outputs": [],
        ...          "state": []}
        >>> StepGraph("demo", entry, b"")
        Traceback (most recent call last):
        ...
        speechkit_rt.errors.BundleError: graph 'demo' declares no state pairs: not a step graph
    """

    def __init__(self, name: str, entry: dict, model: bytes | str, num_threads: int | None = 1) -> None:
        self.name = name
        self.pairs = [(pair["input"], pair["output"]) for pair in entry.get("state", [])]
        if not self.pairs:
            raise BundleError(f"graph {name!r} declares no state pairs: not a step graph")
        self.inputs = {tensor["name"]: tensor for tensor in entry["inputs"]}
        self.outputs = {tensor["name"]: tensor for tensor in entry["outputs"]}
        self.output_names = list(self.outputs)
        self.extra = dict(entry.get("extra", {}))
        unsupported = [s for s, _ in self.pairs if self.inputs[s]["dtype"] not in _DTYPES]
        if unsupported:
            raise BundleError(f"graph {name!r}: state {unsupported} has a dtype numpy cannot hold")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if num_threads is not None:
            options.intra_op_num_threads = int(num_threads)
        try:
            self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own (non-Python-hierarchy) errors
            raise BundleError(f"graph {name!r}: onnxruntime cannot load it ({err})") from err
        actual = [t.name for t in self.session.get_inputs()], [t.name for t in self.session.get_outputs()]
        if actual != (list(self.inputs), self.output_names):
            raise BundleError(
                f"graph {name!r}: the file's inputs/outputs {actual} differ from the manifest's"
            )
        self.state: dict[str, np.ndarray] = {}
        self.reset()

    def reset(self) -> None:
        """Zero state: zeros of every state input's declared shape and dtype."""
        self.state = {
            source: np.zeros(self.inputs[source]["shape"], dtype=_DTYPES[self.inputs[source]["dtype"]])
            for source, _ in self.pairs
        }

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One call: ``feeds`` (the non-state inputs) -> the non-state outputs by name; state advances."""
        results = dict(zip(self.output_names, self.session.run(self.output_names, {**feeds, **self.state})))
        self.state = {source: results.pop(sink) for source, sink in self.pairs}
        return results

    def step_fact(self, key: str) -> int:
        """A non-negative integer from the entry's ``extra`` (``tokens_per_step``, ...)."""
        value = self.extra.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise BundleError(f"graph {self.name!r}: extra.{key} must be an integer >= 0, got {value!r}")
        return value

    def tokens_and_hop(self) -> tuple[int, int]:
        """(tokens_per_step, samples per token) from ``extra``, checked to divide."""
        tokens, samples = self.step_fact("tokens_per_step"), self.step_fact("samples_per_step")
        if not tokens or not samples or samples % tokens:
            raise BundleError(f"graph {self.name!r}: {samples} samples_per_step for {tokens} tokens_per_step")
        return tokens, samples // tokens

    def require(self, name: str, outputs: bool = False) -> dict:
        """The declared input (or output) ``name``; a graph without it cannot be this step."""
        tensors = self.outputs if outputs else self.inputs
        if name not in tensors:
            what = "output" if outputs else "input"
            raise BundleError(f"graph {self.name!r} has no {what} {name!r} (it has {sorted(tensors)})")
        return tensors[name]


class StreamingEncoder:
    """Audio chunks of any length -> codes of every token whose samples have all arrived.

    Args:
        graph: the ``encoder_step`` graph.
        num_codebooks: codebooks to emit, 1..K (default all K).

    ``push(wav [T]) -> codes [k, F_new]`` int64 (F_new may be 0); ``flush() -> codes [k, 0 or more]``
    zero-pads the last partial step, as the offline encoder pads, and keeps only the tokens that hold
    real samples. Tokens come out in whole steps of ``tokens_per_step``.
    """

    def __init__(self, graph: StepGraph, num_codebooks: int | None = None) -> None:
        self.graph = graph
        self.tokens_per_step, self.hop_length = graph.tokens_and_hop()
        self.samples_per_step = self.tokens_per_step * self.hop_length
        graph.require("wav")
        total = graph.require("codes", outputs=True)["shape"][1]
        if num_codebooks is not None and not 1 <= num_codebooks <= total:
            raise ValueError(f"num_codebooks must be in 1..{total}, got {num_codebooks}")
        self.total_codebooks, self.num_codebooks = total, num_codebooks or total
        self.pending = np.zeros(0, dtype=np.float32)

    def reset(self) -> None:
        """Forget the stream: zero state, drop buffered samples."""
        self.graph.reset()
        self.pending = np.zeros(0, dtype=np.float32)

    def push(self, wav: np.ndarray) -> np.ndarray:
        """Add mono audio [T] at the bundle's sample rate; returns new codes [k, F_new] int64."""
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1:
            raise AudioError(f"push takes mono audio [T], got shape {wav.shape}")
        if not np.all(np.isfinite(wav)):
            raise AudioError(f"audio chunk contains {int(np.sum(~np.isfinite(wav)))} NaN or Inf samples")
        self.pending = np.concatenate([self.pending, wav])
        size, steps = self.samples_per_step, len(self.pending) // self.samples_per_step
        codes = [self._step(self.pending[i * size : (i + 1) * size]) for i in range(steps)]
        self.pending = self.pending[steps * size :]
        return np.concatenate(codes, axis=1) if codes else np.zeros((self.num_codebooks, 0), dtype=np.int64)

    def flush(self) -> np.ndarray:
        """End the stream: codes [k, ceil(buffered / hop_length)] of the zero-padded rest; then reset."""
        tokens = -(-len(self.pending) // self.hop_length)
        codes = np.zeros((self.num_codebooks, 0), dtype=np.int64)
        if tokens:
            padded = np.pad(self.pending, (0, self.samples_per_step - len(self.pending)))
            codes = self._step(padded)[:, :tokens]
        self.reset()
        return codes

    def _step(self, samples: np.ndarray) -> np.ndarray:
        codes = self.graph.run({"wav": samples[None]})["codes"]  # [1, K, n]
        return codes[0, : self.num_codebooks]


class StreamingDecoder:
    """Code chunks [k, n_any] -> the audio samples that are final (later tokens cannot change them).

    Args:
        graph: the ``decoder_step`` graph.
        codebook_sizes: sizes of all K codebooks (codes are range-checked).

    ``push(codes [k, F]) -> audio [S]`` float32, the same k (1 <= k <= K) for the whole stream;
    ``flush() -> audio``: the rest. Over M tokens the outputs add up to ``M * hop_length`` samples.
    Exact (equal to the offline decode) when M is a multiple of ``tokens_per_step`` (always for one
    token per step); otherwise the last step is padded with code 0 and the last
    ``output_offset_samples`` samples include the overlap of the padding's first frame.
    """

    def __init__(self, graph: StepGraph, codebook_sizes: Sequence[int]) -> None:
        self.graph = graph
        self.codebook_sizes = tuple(int(size) for size in codebook_sizes)
        self.tokens_per_step, self.hop_length = graph.tokens_and_hop()
        self.samples_per_step = self.tokens_per_step * self.hop_length
        self.offset = graph.step_fact("output_offset_samples")
        for name, outputs in (("codes", False), ("wav", True), ("wav_tail", True)):
            graph.require(name, outputs)
        self.reset()

    def reset(self) -> None:
        """Forget the stream."""
        self.graph.reset()
        self.pending: np.ndarray | None = None  # codes [k, < tokens_per_step] of the unfinished step
        self.tail = np.zeros(0, dtype=np.float32)  # wav_tail of the last step
        self.to_drop = self.offset  # the first step output starts before time 0

    def push(self, codes: np.ndarray) -> np.ndarray:
        """Add codes [k, F] (or [1, k, F]) of any F >= 0; returns the newly final audio [S] float32."""
        codes = self._check(codes)
        self.pending = codes if self.pending is None else np.concatenate([self.pending, codes], axis=1)
        n = self.tokens_per_step
        steps = self.pending.shape[1] // n
        audio = [self._step(self.pending[:, i * n : (i + 1) * n]) for i in range(steps)]
        self.pending = self.pending[:, steps * n :]
        return self._drop(np.concatenate(audio) if audio else np.zeros(0, dtype=np.float32))

    def flush(self) -> np.ndarray:
        """End the stream: the samples still held back (normalised as the offline decode ends); reset."""
        rest = self.tail
        if self.pending is not None and self.pending.shape[1]:
            real = self.pending.shape[1]
            padded = np.pad(self.pending, ((0, 0), (0, self.tokens_per_step - real)))
            wav = np.concatenate([self._step(padded), self.tail])
            rest = wav[: real * self.hop_length + self.offset]
        audio = self._drop(rest)
        self.reset()
        return audio

    def _step(self, codes: np.ndarray) -> np.ndarray:
        out = self.graph.run({"codes": np.ascontiguousarray(codes[None], dtype=np.int64)})
        self.tail = out["wav_tail"][0].astype(np.float32)
        return out["wav"][0].astype(np.float32)

    def _drop(self, audio: np.ndarray) -> np.ndarray:
        drop = min(self.to_drop, len(audio))
        self.to_drop -= drop
        return audio[drop:]

    def _check(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes)
        if codes.ndim == 3 and codes.shape[0] == 1:
            codes = codes[0]
        if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
            raise BitstreamError(f"push takes integer codes [k, F], got {codes.dtype} {codes.shape}")
        k = codes.shape[0]
        if not 1 <= k <= len(self.codebook_sizes):
            raise BitstreamError(f"codes have {k} codebooks; this codec has 1..{len(self.codebook_sizes)}")
        if self.pending is not None and k != self.pending.shape[0]:
            raise BitstreamError(
                f"codes have {k} codebooks, earlier chunks of this stream had {self.pending.shape[0]}"
            )
        check_code_range(codes, self.codebook_sizes[:k])
        return codes.astype(np.int64)


class StreamingCodecRuntime:
    """A streaming codec bundle: its step graphs as a :class:`StreamingEncoder` and :class:`StreamingDecoder`.

    Attributes:
        bundle: the opened, verified :class:`~speechkit_rt.bundle.Bundle`.
        sample_rate, frame_rate, hop_length: audio rate (Hz), tokens per second, samples per token.
        codebook_sizes: the K codebook sizes.
        encoder, decoder: the streaming halves (each holds its own state; reset by ``flush``).
        algorithmic_latency_samples: input samples that must have arrived before an output sample is
            final: ``tokens_per_step * hop_length + output_offset_samples`` (480 = 30 ms for the
            shipped codec at one token per step).

    Example:
        >>> StreamingCodecRuntime.open("/no/such/bundle.zip")
        Traceback (most recent call last):
        ...
        speechkit_rt.errors.BundleError: /no/such/bundle.zip: no such bundle folder or .zip
    """

    def __init__(self, bundle: Bundle, num_threads: int | None = 1, num_codebooks: int | None = None) -> None:
        manifest = bundle.manifest
        if manifest["task"] != "codec":
            raise BundleError(
                f"bundle {manifest['model_name']!r} is a {manifest['task']!r} bundle, not a codec"
            )
        self.bundle = bundle
        self.sample_rate = int(manifest["sample_rate"])
        self.frame_rate = float(manifest["frame_rate"])
        self.codebook_sizes = tuple(int(size) for size in manifest["token_layout"]["codebook_sizes"])
        graphs = {name: self._graph(name, num_threads) for name in (ENCODER_STEP, DECODER_STEP)}
        self.encoder = StreamingEncoder(graphs[ENCODER_STEP], num_codebooks)
        self.decoder = StreamingDecoder(graphs[DECODER_STEP], self.codebook_sizes)
        self.hop_length = self.encoder.hop_length
        if self.decoder.hop_length != self.hop_length:
            raise BundleError(
                f"encoder_step makes a token per {self.hop_length} samples, decoder_step per "
                f"{self.decoder.hop_length}"
            )
        if self.encoder.total_codebooks != len(self.codebook_sizes):
            raise BundleError(
                f"encoder_step emits {self.encoder.total_codebooks} codebooks, token_layout lists "
                f"{len(self.codebook_sizes)}"
            )
        if abs(self.sample_rate / self.hop_length - self.frame_rate) > 1e-6 * self.frame_rate:
            raise BundleError(
                f"step graphs make a token per {self.hop_length} samples, but sample_rate / frame_rate "
                f"= {self.sample_rate / self.frame_rate:g}"
            )
        self.algorithmic_latency_samples = self.decoder.samples_per_step + self.decoder.offset

    @classmethod
    def open(
        cls, path: str | os.PathLike, *, num_threads: int | None = 1, num_codebooks: int | None = None
    ) -> StreamingCodecRuntime:
        """Open and verify a streaming codec bundle (folder or .zip) and load its two step graphs.

        Args:
            path: the bundle folder or .zip.
            num_threads: onnxruntime intra-op threads per graph (1 by default: a stream is one core's job).
            num_codebooks: codebooks the encoder emits (default all).

        Raises:
            BundleError: the bundle is refused, is not a codec, or lacks valid step graphs.
        """
        bundle = Bundle.open(path)
        try:
            return cls(bundle, num_threads, num_codebooks)
        except BaseException:
            bundle.close()
            raise

    def _graph(self, name: str, num_threads: int | None) -> StepGraph:
        entry = self.bundle.graph(name)
        if entry["runtime"] != "onnxruntime" or entry.get("extra", {}).get("weights_file") or entry.get("derived"):
            raise BundleError(
                f"graph {name!r}: streaming runs plain onnxruntime graphs only (no packed or derived weights)"
            )
        # From hash-checked bytes, not the path: the folder may have changed since it was opened.
        return StepGraph(name, entry, self.bundle.read_bytes(entry["file"]), num_threads)

    def close(self) -> None:
        """Close the bundle (removing a zip's temporary folder)."""
        self.bundle.close()

    def __enter__(self) -> StreamingCodecRuntime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
