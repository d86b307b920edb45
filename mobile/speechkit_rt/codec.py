"""``CodecRuntime``: a codec bundle run with onnxruntime, with the call shapes of ``speechkit``'s ``Codec``.

The call sequence (the same an app follows on Android or iOS, see ``mobile/README.md``)::

    encode: audio [T] or [T, C] at any rate
            -> mono, resampled to the bundle's sample_rate, checked (empty / NaN / Inf / silence)
            -> zero-padded to a multiple of hop_length = sample_rate / frame_rate
            -> graph "encoder": wav f32 [1, T'] -> codes i64 [1, K, N]   (always all K codebooks)
            -> codes[:, :k] for a lower bitrate (residual VQ: the first k stages do not depend on k)
            -> graph "global_encoder" (Single-Codec only): wav -> global codes i64 [1, G]
    decode: codes [1, k, N] (+ global codes; + a Griffin-Lim start phase for mel-rvq)
            -> graph "decoder" -> wav f32 [1, N * hop_length] -> trimmed to num_samples

This class runs whole clips. Streaming (chunk-by-chunk encode/decode through per-step graphs with
explicit state tensors in and out) is :class:`speechkit_rt.streaming.StreamingCodecRuntime`, for
bundles of the causal codec written by ``speechkit_export.streaming_graphs.write_streaming_bundle``.

A graph whose manifest entry names a packed-weights file (``extra.weights_file``: 2/3/4-bit
weight-only quantisation) or derived initializers (``derived``: DFT bases and windows rebuilt from
recipes) is materialised by ``speechkit_rt.weights.materialize``; any other graph opens as a plain
``onnxruntime.InferenceSession`` on the bundle's file.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
from typing import Any

import numpy as np
import onnxruntime as ort

from speechkit_rt.audio_io import prepare_input
from speechkit_rt.bundle import Bundle
from speechkit_rt.errors import BitstreamError, BundleError
from speechkit_rt.lifetime import BundleLifetime
from speechkit_rt.token_file import (
    RuntimeTokens,
    bits_per_code,
    check_code_range,
    read_token_file,
    write_token_file,
)

logger = logging.getLogger(__name__)

REQUIRED_GRAPHS = ("encoder", "decoder")
UNKNOWN_FINGERPRINT = "unknown"
_PHASE_INPUT = "initial_phase"


class CodecRuntime(BundleLifetime):
    """Encode audio to tokens and decode tokens to audio with a verified codec bundle; use :meth:`open`.

    Attributes:
        bundle: the opened :class:`~speechkit_rt.bundle.Bundle` (its ``manifest`` is read-only).
        kind: the codec kind (``model_kind``), e.g. ``"rvq_codec"``; tokens of another kind are refused.
        name: the bundle's ``model_name`` (what token files name).
        fingerprint: the weights fingerprint from ``extra.fingerprint`` (``"unknown"`` when absent).
        sample_rate, frame_rate, hop_length: audio rate (Hz), token rate (frames/s), samples per frame.
        codebook_sizes: sizes of all K codebooks; global_codebook_sizes: of the G global codes (or ()).

    Example:
        >>> CodecRuntime.open("/no/such/bundle")
        Traceback (most recent call last):
        ...
        speechkit_rt.errors.BundleError: /no/such/bundle: no such bundle folder or .zip
    """

    def __init__(self, bundle: Bundle, num_threads: int | None = None) -> None:
        manifest = bundle.manifest
        if manifest["task"] != "codec":
            raise BundleError(
                f"bundle {manifest['model_name']!r} is a {manifest['task']!r} bundle, not a codec"
            )
        for name in REQUIRED_GRAPHS:
            _check_runtime(name, bundle.graph(name))  # bundle.graph raises, naming the graphs it has
        layout = manifest["token_layout"]
        self.bundle = bundle
        self.kind: str = manifest["model_kind"]
        self.name: str = manifest["model_name"]
        self.fingerprint: str = str(manifest["extra"].get("fingerprint", UNKNOWN_FINGERPRINT))
        self.sample_rate: int = int(manifest["sample_rate"])
        self.frame_rate: float = float(manifest["frame_rate"])
        self.hop_length: int = _hop_length(manifest)
        self.codebook_sizes: tuple[int, ...] = tuple(int(s) for s in layout["codebook_sizes"])
        self.global_codebook_sizes: tuple[int, ...] = tuple(
            int(s) for s in layout.get("global_codebook_sizes", ())
        )
        if not self.codebook_sizes:
            raise BundleError("manifest.json: token_layout.codebook_sizes is empty for a codec")
        if self.global_codebook_sizes:
            _check_runtime("global_encoder", bundle.graph("global_encoder"))
        self.num_threads = num_threads
        self._sessions: dict[str, ort.InferenceSession] = {}

    @classmethod
    def open(cls, path: str | os.PathLike, *, num_threads: int | None = None) -> CodecRuntime:
        """Open and verify a codec bundle (folder or .zip): manifest, version, every file's sha256.

        Args:
            path: the bundle folder or .zip.
            num_threads: onnxruntime intra-op threads per graph (None: onnxruntime's default).

        Returns:
            The runtime; close it (or use ``with``) to release a zip's temporary folder.

        Raises:
            BundleError: the bundle is refused (tampered, unknown version, not a codec, graphs missing).
        """
        bundle = Bundle.open(path)
        try:
            return cls(bundle, num_threads)
        except BaseException:
            bundle.close()
            raise

    # ---- what the SDK's Codec offers ---------------------------------------------------------------

    def bitrate(self, num_codebooks: int | None = None) -> float:
        """Bits per second of the frame tokens with the first ``num_codebooks`` codebooks (all by default)."""
        sizes = self.codebook_sizes[: num_codebooks or len(self.codebook_sizes)]
        return self.frame_rate * sum(bits_per_code(size) for size in sizes)

    def num_codebooks_for(self, kbps: float) -> int:
        """The number of codebooks whose bitrate is nearest ``kbps`` (ties go to fewer), as the SDK."""
        wanted = kbps * 1000 / self.bitrate(1)
        return int(min(len(self.codebook_sizes), max(1, np.floor(wanted + 0.5 - 1e-9))))

    def encode(self, wav: np.ndarray, sample_rate: int, num_codebooks: int | None = None) -> RuntimeTokens:
        """Audio [T] or [T, C] at ``sample_rate`` -> tokens with codes [1, K, N] (K = ``num_codebooks``).

        Channels are averaged and other rates resampled (each logged); the audio is zero-padded to a
        multiple of :attr:`hop_length`, so N = ceil(T / hop_length) at the codec's rate.

        Raises:
            AudioError: empty, NaN/Inf, all-zero audio, or an implausible ``sample_rate``.
            ValueError: ``num_codebooks`` outside 1..K.
        """
        k = self._check_num_codebooks(num_codebooks)
        wav = prepare_input(wav, sample_rate, self.sample_rate)
        padded = np.pad(wav, (0, (-len(wav)) % self.hop_length))[None]  # [1, T']
        codes = self._run("encoder", {"wav": padded})[0]
        expected = (1, len(self.codebook_sizes), padded.shape[1] // self.hop_length)
        if codes.shape != expected:
            raise BundleError(f"graph 'encoder' returned codes of shape {codes.shape}, expected {expected}")
        global_codes = None
        if self.global_codebook_sizes:
            global_codes = self._run("global_encoder", {"wav": padded})[0].astype(np.int64)
        return RuntimeTokens(
            codes[:, :k].astype(np.int64), self.frame_rate, self.codebook_sizes[:k], self.kind, len(wav),
            global_codes, self.global_codebook_sizes,
        )  # fmt: skip

    def decode(self, tokens: RuntimeTokens, *, phase_seed: int = 0) -> np.ndarray:
        """Tokens of this codec -> float32 audio [T] at :attr:`sample_rate`, trimmed to ``num_samples``.

        Args:
            tokens: from :meth:`encode` or :meth:`from_bytes` (any 1 <= k <= K codebooks).
            phase_seed: seed of the uniform Griffin-Lim start phase, for a decoder graph that takes
                one (mel-rvq). The SDK draws its phase with torch, so such audio is an equally valid
                reconstruction but not the SDK's samples.

        Raises:
            BitstreamError: tokens of another codec kind or codebook layout, or lacking global codes.
        """
        self._check_tokens(tokens)
        feeds: dict[str, np.ndarray] = {"codes": np.ascontiguousarray(tokens.codes, dtype=np.int64)}
        if self.global_codebook_sizes:
            feeds["global_codes"] = np.ascontiguousarray(tokens.global_codes, dtype=np.int64)
        phase = next((t for t in self.bundle.graph("decoder")["inputs"] if t["name"] == _PHASE_INPUT), None)
        if phase is not None:
            shape = (1, int(phase["shape"][1]), tokens.num_frames + 1)
            feeds[_PHASE_INPUT] = (
                np.random.default_rng(phase_seed).uniform(0, 2 * np.pi, shape).astype(np.float32)
            )
        wav = self._run("decoder", feeds)[0].reshape(-1)
        if tokens.num_samples is not None:
            wav = wav[: tokens.num_samples]
        return np.ascontiguousarray(wav, dtype=np.float32)

    def to_bytes(self, tokens: RuntimeTokens) -> bytes:
        """Tokens -> the ``.sktk`` token file ``speechkit decode`` reads (see :mod:`speechkit_rt.token_file`)."""
        return write_token_file(
            tokens, model=self.name, fingerprint=self.fingerprint, sample_rate=self.sample_rate
        )

    def from_bytes(self, data: bytes) -> RuntimeTokens:
        """Token file -> tokens, refusing files of another codec kind or other weights."""
        header, tokens = read_token_file(data)
        same_weights = self.fingerprint == UNKNOWN_FINGERPRINT or header["fingerprint"] == self.fingerprint
        if header["kind"] != self.kind or not same_weights:
            raise BitstreamError(
                f"token file was written by model {header['model']!r} ({header['kind']}, weights "
                f"{header['fingerprint']}); this bundle is {self.name!r} ({self.kind}, weights {self.fingerprint})"
            )
        if self.fingerprint == UNKNOWN_FINGERPRINT:
            logger.warning(
                "bundle %s records no weights fingerprint: token file weights not checked", self.name
            )
        return tokens

    # ---- sessions ---------------------------------------------------------------------------------

    def session(self, graph_name: str) -> ort.InferenceSession:
        """The onnxruntime session of a graph, created on first use and checked against the manifest."""
        if graph_name not in self._sessions:
            self._sessions[graph_name] = self._create_session(graph_name)
        return self._sessions[graph_name]

    def _create_session(self, graph_name: str) -> ort.InferenceSession:
        graph = self.bundle.graph(graph_name)
        _check_runtime(graph_name, graph)
        if needs_materializing(self.bundle.manifest, graph_name):
            # Lazy: only bundles with packed or derived weights need it (and it may not be installed).
            try:
                weights = importlib.import_module("speechkit_rt.weights")
            except ModuleNotFoundError as err:
                if err.name != "speechkit_rt.weights":
                    raise
                raise BundleError(
                    f"graph {graph_name!r} has packed or derived weights, and this speechkit_rt has no "
                    "speechkit_rt.weights to materialise them: upgrade speechkit_rt"
                ) from err
            session = weights.materialize(self.bundle, graph_name, num_threads=self.num_threads)
        else:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            if self.num_threads is not None:
                options.intra_op_num_threads = int(self.num_threads)
            # From hash-checked bytes, not the path: the folder may have changed since it was opened.
            model_bytes = self.bundle.read_bytes(graph["file"])
            try:
                session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
            except Exception as err:  # onnxruntime raises its own (non-Python-hierarchy) errors
                raise BundleError(f"{graph['file']}: onnxruntime cannot load it ({err})") from err
        _check_signature(graph_name, graph, session)
        return session

    def _run(self, graph_name: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session(graph_name).run(None, feeds)

    # ---- checks -----------------------------------------------------------------------------------

    def _check_num_codebooks(self, num_codebooks: int | None) -> int:
        total = len(self.codebook_sizes)
        if num_codebooks is None:
            return total
        if not 1 <= int(num_codebooks) <= total:
            raise ValueError(f"num_codebooks must be in 1..{total}, got {num_codebooks}")
        return int(num_codebooks)

    def _check_tokens(self, tokens: RuntimeTokens) -> None:
        if not isinstance(tokens, RuntimeTokens):
            raise BitstreamError(f"decode takes RuntimeTokens, got {type(tokens).__name__}")
        if tokens.kind != self.kind:
            raise BitstreamError(f"tokens were made by a {tokens.kind!r} model, this codec is {self.kind!r}")
        if tokens.codebook_sizes != self.codebook_sizes[: tokens.num_codebooks]:
            raise BitstreamError(
                f"token codebook sizes {tokens.codebook_sizes} do not match this codec's {self.codebook_sizes}"
            )
        if self.global_codebook_sizes:
            if tokens.global_codes is None:
                raise BitstreamError(
                    f"tokens lack global codes: a {self.kind!r} codec needs the per-utterance global codes "
                    f"({len(self.global_codebook_sizes)} codes) that its encode() returns"
                )
            if tokens.global_codebook_sizes != self.global_codebook_sizes:
                raise BitstreamError(
                    f"global codebook sizes {tokens.global_codebook_sizes} do not match this codec's "
                    f"{self.global_codebook_sizes}"
                )
        check_code_range(tokens.codes[0], tokens.codebook_sizes)

    # ---- lifetime ---------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return (
            f"CodecRuntime({self.name!r}, kind={self.kind!r}, sample_rate={self.sample_rate}, "
            f"frame_rate={self.frame_rate}, codebooks={len(self.codebook_sizes)})"
        )


def needs_materializing(manifest: dict[str, Any], graph_name: str) -> bool:
    """Whether some of a graph's weights are not in its ONNX file: packed (2/3/4-bit) in a weights file
    (``graphs.<name>.extra.weights_file``, :mod:`speechkit_rt.weights`) or rebuilt from recipes
    (``graphs.<name>.derived``: DFT bases and windows, :mod:`speechkit_rt.derived`).

    Example:
        >>> needs_materializing({"graphs": {"decoder": {"extra": {"weights_file": "weights.npz"}}}}, "decoder")
        True
    """
    graph = manifest["graphs"][graph_name]
    return bool(graph.get("extra", {}).get("weights_file") or graph.get("derived"))


def _hop_length(manifest: dict[str, Any]) -> int:
    """Samples per token frame: ``extra.hop_length`` when recorded, else sample_rate / frame_rate."""
    ratio = manifest["sample_rate"] / manifest["frame_rate"]
    hop = manifest["extra"].get("hop_length", round(ratio))
    if (
        isinstance(hop, bool)
        or not isinstance(hop, int)
        or hop < 1
        or not math.isclose(hop, ratio, rel_tol=1e-6)
    ):
        raise BundleError(
            f"manifest.json: hop length {hop!r} does not match sample_rate / frame_rate = {ratio:g} "
            "(a codec's frames must be a whole number of samples)"
        )
    return hop


def _check_runtime(graph_name: str, graph: dict) -> None:
    if graph["runtime"] != "onnxruntime":
        raise BundleError(
            f"graph {graph_name!r} is a {graph['runtime']} graph; this runtime runs onnxruntime graphs "
            "(load Core ML packages with Core ML on iOS/macOS)"
        )


def _check_signature(graph_name: str, graph: dict, session: ort.InferenceSession) -> None:
    """The loaded graph has the inputs and outputs the manifest declares (names, in order)."""
    for what, declared, actual in (
        ("inputs", graph["inputs"], session.get_inputs()),
        ("outputs", graph["outputs"], session.get_outputs()),
    ):
        names = [t["name"] for t in declared]
        if names != [t.name for t in actual]:
            raise BundleError(
                f"graph {graph_name!r} ({graph['file']}): {what} are {[t.name for t in actual]}, "
                f"manifest.json declares {names}"
            )
