"""Streaming step graphs of the causal RVQ codec: one step of n tokens, explicit state in and out.

:class:`~speechkit.codec.causal_rvq_codec.CausalRVQCodec` streams in torch with
:mod:`speechkit.codec.streaming`; these graphs are the same steps with static shapes and no Python
control flow, so a runtime keeps the state arrays and calls one graph per ``n`` tokens (n = 1: a
20 ms step)::

    encoder_step  wav f32 [1, n * hop_length], state_* -> codes i64 [1, K, n], next_state_*
    decoder_step  codes i64 [1, num_codebooks, n], state_* -> wav f32 [1, n * hop_length],
                  wav_tail f32 [1, n_fft - stft_hop], next_state_*

State (every tensor fixed-shape, zeros at the start of a stream): the encoder keeps the STFT's left
context [1, analysis_n_fft - stft_hop] and the cache of every causal conv with history; the decoder
keeps its convs' caches and the overlap-add tail [1, n_fft - stft_hop] (not yet normalised). The
manifest pairs each state input with the output that carries its next value
(``{"input": "state_conv_00", "output": "next_state_conv_00"}``, see ``speechkit_rt.bundle``).

Alignment (defaults: token hop 320, STFT hop 160, n_fft 320, so ``tail = n_fft - stft_hop = 160``):

* ``encoder_step`` call j takes samples ``[j * n * 320, (j + 1) * n * 320)`` and returns the codes of
  tokens ``j * n .. j * n + n - 1``, equal to the offline ``encode_codes``; a partial last step is
  zero-padded (the offline encoder pads with zeros too) and the codes past the end are dropped.
* ``decoder_step`` call j returns output samples ``[j * n * 320 - tail, (j + 1) * n * 320 - tail)``:
  a sample is final only once the next 100 Hz synthesis frame has been overlap-added, so the step
  output lags by ``tail`` samples. A runtime drops the first ``tail`` samples of a stream (negative
  time) and, at the end, emits the last step's ``wav_tail`` (the samples after ``wav``, normalised as
  ``CausalISTFT.flush`` does: the offline decode's last ``tail`` samples). The outputs add up to
  ``M * 320`` samples for M tokens, equal to the offline ``decode_codes`` when n divides M (always
  for n = 1). Otherwise the runtime pads the last step with code 0 and the last ``tail`` samples
  include the first padding frame's overlap (``wav_tail`` exists only for the end of a whole step).
* Algorithmic latency: ``n * hop_length + tail`` samples (480 = 30 ms for n = 1, the model's
  ``algorithmic_latency_samples``).

Example:
    >>> import tempfile
    >>> from speechkit.codec.causal_rvq_codec import CausalRVQCodec, CausalRVQCodecConfig
    >>> config = CausalRVQCodecConfig(dim=16, latent_dim=8, num_quantizers=2, codebook_size=16,
    ...                               encoder_blocks=(1, 1), decoder_blocks=(1, 1))
    >>> graphs = export_streaming_graphs(CausalRVQCodec(config).eval(), tempfile.mkdtemp())
    >>> graphs["encoder_step"].to_manifest()["state"][0]
    {'input': 'state_context', 'output': 'next_state_context'}
    >>> [spec.name for spec in graphs["decoder_step"].outputs[:2]], graphs["decoder_step"].extra
    (['wav', 'wav_tail'], {'tokens_per_step': 1, 'samples_per_step': 320, 'output_offset_samples': 160})
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.assets import sample_speech_path
from speechkit.audio import load_audio
from speechkit.codec.causal_rvq_codec import CausalRVQCodec, spectrum_from_head
from speechkit.errors import AudioError, ConfigError
from speechkit.features import ISTFT
from speechkit_export.bundle_writer import write_bundle
from speechkit_export.onnx_graphs import (
    GraphSpec,
    ResidualCodebookTable,
    TensorSpec,
    export_codec_graphs,
)
from speechkit_rt.streaming import StepGraph, StreamingDecoder, StreamingEncoder

logger = logging.getLogger(__name__)

STEP_GRAPHS = ("encoder_step", "decoder_step")


@dataclass(frozen=True)
class StatePair:
    """A graph input carrying state and the output that carries its next value."""

    input: str
    output: str

    def to_manifest(self) -> dict:
        return {"input": self.input, "output": self.output}


@dataclass(frozen=True)
class StepGraphSpec(GraphSpec):
    """A :class:`GraphSpec` with state pairs and step facts (the manifest's ``state`` and ``extra``)."""

    state: tuple[StatePair, ...] = ()
    extra: dict = field(default_factory=dict, compare=False)

    def to_manifest(self) -> dict:
        """The graph entry with ``state`` (``[{"input", "output"}]``) and ``extra``."""
        return {
            **super().to_manifest(),
            "state": [pair.to_manifest() for pair in self.state],
            "extra": dict(self.extra),
        }


# ---- export-only step modules ----------------------------------------------------------------------


class ExportCausalISTFT(nn.Module):
    """``CausalISTFT`` without complex tensors: the inverse real DFT as a transposed convolution.

    ``CausalISTFT`` calls ``torch.fft.irfft`` on a complex tensor, which the ONNX exporter rejects.
    Here the windowed inverse-DFT basis of :class:`speechkit.features.ISTFT` (Hermitian weights, the
    same window) is a fixed ``conv_transpose1d`` kernel with stride hop, which does the overlap-add in
    the same op; the squared-window envelope is periodic with period hop, so normalising is a reshape
    to [B, -1, hop] and a division (no length-dependent ``repeat``). Equal to ``CausalISTFT`` up to
    float summation order.

    Args:
        n_fft: frame size (a multiple of ``hop_length``), as the ``CausalISTFT`` it replaces.
        hop_length: frame shift.
        envelope: the steady-state squared-window envelope [hop_length] (``CausalISTFT.envelope``).

    Shapes:
        ``forward``: real, imag [B, F, N] -> audio [B, N * hop] (as ``CausalISTFT.forward``);
        ``step``: real, imag [B, F, N], tail [B, n_fft - hop] -> (audio [B, N * hop], tail, flushed
        [B, n_fft - hop]); ``flushed`` is what ``CausalISTFT.flush`` would return for the new tail.

    Example:
        >>> from speechkit.codec.causal_rvq_codec import CausalISTFT
        >>> istft = CausalISTFT(64, 16)
        >>> export = ExportCausalISTFT(64, 16, istft.envelope)
        >>> real, imag = torch.randn(1, 33, 6), torch.randn(1, 33, 6)
        >>> bool(torch.allclose(export(real, imag), istft(real, imag), atol=1e-5))
        True
    """

    def __init__(self, n_fft: int, hop_length: int, envelope: Tensor) -> None:
        super().__init__()
        if n_fft % hop_length:
            raise ConfigError(f"n_fft ({n_fft}) must be a multiple of hop_length ({hop_length})")
        self.n_fft, self.hop_length = n_fft, hop_length
        self.tail_length = n_fft - hop_length
        # The one definition of the windowed inverse-DFT basis [2F, 1, n_fft].
        self.register_buffer("basis", ISTFT(n_fft, hop_length).basis.clone())
        self.register_buffer("envelope", envelope.detach().float().clone().reshape(1, 1, hop_length))

    def overlap_add(self, real: Tensor, imag: Tensor) -> Tensor:
        """Windowed frames overlap-added, not normalised: [B, (N - 1) * hop + n_fft]."""
        spectrum = torch.cat([real.float(), imag.float()], dim=1)  # [B, 2F, N]
        return F.conv_transpose1d(spectrum, self.basis, stride=self.hop_length)[:, 0]

    def normalise(self, summed: Tensor) -> Tensor:
        """Divide samples [B, L] (L a multiple of hop, starting on a hop boundary) by the envelope."""
        return (summed.reshape(summed.shape[0], -1, self.hop_length) / self.envelope).flatten(1)

    def step(self, real: Tensor, imag: Tensor, tail: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One chunk of frames: (final audio, new tail, the new tail as ``flush`` would emit it)."""
        summed = self.overlap_add(real, imag)
        if not self.tail_length:
            return self.normalise(summed), tail, tail
        summed = torch.cat([summed[:, : self.tail_length] + tail, summed[:, self.tail_length :]], dim=-1)
        new_tail = summed[:, -self.tail_length :]
        return self.normalise(summed[:, : -self.tail_length]), new_tail, self.normalise(new_tail)

    def forward(self, real: Tensor, imag: Tensor) -> Tensor:
        return self.normalise(self.overlap_add(real, imag))[:, self.tail_length :]


class CausalRVQDecoderGraph(nn.Module):
    """The offline ``decoder`` graph of the causal codec: codes [1, k, N] -> wav [1, N * hop_length].

    ``decode_codes`` without complex tensors and for any 1 <= k <= K (``export_codec_graphs`` uses it).

    Args:
        model: the causal codec (read, not copied).

    Example:
        >>> from speechkit.codec.causal_rvq_codec import CausalRVQCodecConfig
        >>> config = CausalRVQCodecConfig(dim=16, latent_dim=8, num_quantizers=2, codebook_size=16,
        ...                               encoder_blocks=(1, 1), decoder_blocks=(1, 1))
        >>> model, codes = CausalRVQCodec(config).eval(), torch.randint(0, 16, (1, 1, 4))
        >>> bool(torch.allclose(CausalRVQDecoderGraph(model)(codes), model.decode_codes(codes), atol=1e-5))
        True
    """

    def __init__(self, model: CausalRVQCodec) -> None:
        super().__init__()
        self.model, self.table = model, ResidualCodebookTable(model.quantizer)
        self.istft = ExportCausalISTFT(model.istft.n_fft, model.istft.hop_length, model.istft.envelope)

    def forward(self, codes: Tensor) -> Tensor:
        return self.istft(*spectrum_from_head(self.model.decoder(self.table(codes))))


class EncoderStep(nn.Module):
    """One encoder step: (wav [1, n * hop_length], *state) -> (codes [1, K, n], *next_state).

    The state is the STFT's left context [1, analysis_n_fft - stft_hop] (when non-empty) followed by
    the encoder convs' caches (``encoder.initial_state`` order). Static shapes: the Python loops
    unroll over layers and codebooks, never over time.

    Args:
        model: the causal codec (read, not copied).

    Example:
        >>> from speechkit.codec.causal_rvq_codec import CausalRVQCodecConfig
        >>> config = CausalRVQCodecConfig(dim=16, latent_dim=8, num_quantizers=2, codebook_size=16,
        ...                               encoder_blocks=(1, 1), decoder_blocks=(1, 1))
        >>> model = CausalRVQCodec(config).eval()
        >>> step = EncoderStep(model)
        >>> wav = torch.randn(1, 640)
        >>> codes, *state = step(wav, *step.initial_state())
        >>> bool(torch.equal(codes, model.encode_codes(wav)))
        True
    """

    def __init__(self, model: CausalRVQCodec) -> None:
        super().__init__()
        self.model = model
        self.context_length = model.analysis_context

    def initial_state(self) -> list[Tensor]:
        """Zero state tensors in input order."""
        context = [torch.zeros(1, self.context_length)] if self.context_length else []
        return context + self.model.encoder.initial_state(1)

    def state_names(self) -> list[str]:
        """Names of the state tensors (``state_context``, ``state_conv_00``, ...), in input order."""
        context = ["context"] if self.context_length else []
        return context + [f"conv_{i:02d}" for i in range(self.model.encoder.num_states)]

    def forward(self, wav: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        if self.context_length:
            context, conv_state = state[0], list(state[1:])
            audio = torch.cat([context, wav], dim=-1)
            next_context = [audio[:, -self.context_length :]]
        else:
            audio, conv_state, next_context = wav, list(state), []
        latent, next_conv = self.model.encoder.step(self.model.log_magnitude(audio), conv_state)
        codes = self.model.quantizer.encode(latent, self.model.config.num_quantizers)
        return (codes, *next_context, *next_conv)


class DecoderStep(nn.Module):
    """One decoder step: (codes [1, k, n], *state) -> (wav [1, n * hop_length], wav_tail, *next_state).

    The state is the decoder convs' caches followed by the overlap-add tail [1, n_fft - stft_hop].
    ``wav`` lags the tokens by ``n_fft - stft_hop`` samples (module docstring); ``wav_tail`` is the
    next tail normalised, what ``CausalISTFT.flush`` would emit if the stream ended here. Any
    1 <= k <= K codebooks (a stacked codebook table, no Python loop over k).

    Args:
        model: the causal codec (read, not copied).

    Example:
        >>> from speechkit.codec.causal_rvq_codec import CausalRVQCodecConfig
        >>> config = CausalRVQCodecConfig(dim=16, latent_dim=8, num_quantizers=2, codebook_size=16,
        ...                               encoder_blocks=(1, 1), decoder_blocks=(1, 1))
        >>> model = CausalRVQCodec(config).eval()
        >>> step, codes = DecoderStep(model), torch.randint(0, 16, (1, 2, 1))
        >>> wav, wav_tail, *state = step(codes, *step.initial_state())
        >>> reference = model.decode_codes(codes)  # one token: 320 samples
        >>> bool(torch.allclose(torch.cat([wav, wav_tail], -1)[:, 160:], reference, atol=1e-5))
        True
    """

    def __init__(self, model: CausalRVQCodec) -> None:
        super().__init__()
        self.model = model
        self.table = ResidualCodebookTable(model.quantizer)
        istft = model.istft
        self.istft = ExportCausalISTFT(istft.n_fft, istft.hop_length, istft.envelope)

    def initial_state(self) -> list[Tensor]:
        """Zero state tensors in input order."""
        return self.model.decoder.initial_state(1) + [torch.zeros(1, self.istft.tail_length)]

    def state_names(self) -> list[str]:
        """Names of the state tensors (``state_conv_00``, ..., ``state_ola_tail``), in input order."""
        return [f"conv_{i:02d}" for i in range(self.model.decoder.num_states)] + ["ola_tail"]

    def forward(self, codes: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        conv_state, tail = list(state[:-1]), state[-1]
        head, next_conv = self.model.decoder.step(self.table(codes), conv_state)
        wav, next_tail, wav_tail = self.istft.step(*spectrum_from_head(head), tail)
        return (wav, wav_tail, *next_conv, next_tail)


# ---- export ----------------------------------------------------------------------------------------


def _state_specs(
    step: EncoderStep | DecoderStep,
) -> tuple[list[TensorSpec], list[TensorSpec], list[StatePair]]:
    inputs, outputs, pairs = [], [], []
    for name, tensor in zip(step.state_names(), step.initial_state(), strict=True):
        shape = tuple(int(size) for size in tensor.shape)
        inputs.append(TensorSpec(f"state_{name}", "float32", shape))
        outputs.append(TensorSpec(f"next_state_{name}", "float32", shape))
        pairs.append(StatePair(f"state_{name}", f"next_state_{name}"))
    return inputs, outputs, pairs


def export_streaming_graphs(
    model: CausalRVQCodec, out_dir: str | Path, opset: int = 18, tokens_per_step: int = 1
) -> dict[str, StepGraphSpec]:
    """Export ``encoder_step`` and ``decoder_step`` of a causal codec to ``out_dir/<name>.onnx``.

    Args:
        model: the causal codec; exported in eval mode, left unchanged.
        out_dir: folder for the graph files (created if missing).
        opset: ONNX opset (>= 17 for LayerNormalization).
        tokens_per_step: n, tokens per step (n * hop_length samples, n * 20 ms with the defaults).

    Returns:
        graph name -> :class:`StepGraphSpec` (``to_manifest()`` gives the manifest entry, with the
        ``state`` pairs and ``extra`` = tokens_per_step, samples_per_step[, output_offset_samples]).

    Raises:
        ConfigError: not a :class:`CausalRVQCodec`, ``tokens_per_step < 1`` or an opset below 17.
    """
    if not isinstance(model, CausalRVQCodec):
        raise ConfigError(f"streaming step graphs need a CausalRVQCodec, got {type(model).__name__}")
    if tokens_per_step < 1:
        raise ConfigError(f"tokens_per_step must be >= 1, got {tokens_per_step}")
    if opset < 17:
        raise ConfigError(f"opset must be >= 17 (LayerNormalization), got {opset}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n, hop, num = tokens_per_step, int(model.hop_length), int(model.config.num_quantizers)
    was_training = model.training
    model.eval()
    try:
        encoder, decoder = EncoderStep(model), DecoderStep(model)
        enc_in, enc_out, enc_pairs = _state_specs(encoder)
        dec_in, dec_out, dec_pairs = _state_specs(decoder)
        wav = TensorSpec("wav", "float32", (1, n * hop))
        codes_out = TensorSpec("codes", "int64", (1, num, n))
        codes_in = TensorSpec("codes", "int64", (1, "num_codebooks", n))
        wav_tail = TensorSpec("wav_tail", "float32", (1, decoder.istft.tail_length))
        step_facts = {"tokens_per_step": n, "samples_per_step": n * hop}
        generator = torch.Generator().manual_seed(0)  # local: exporting leaves the global RNG alone
        example_wav = 0.1 * torch.randn(1, n * hop, generator=generator)
        example_codes = torch.randint(0, model.config.codebook_size, (1, num, n), generator=generator)
        return {
            "encoder_step": _export_step(
                "encoder_step",
                encoder,
                (example_wav, *encoder.initial_state()),
                (wav, *enc_in),
                (codes_out, *enc_out),
                enc_pairs,
                step_facts,
                out_dir,
                opset,
            ),
            "decoder_step": _export_step(
                "decoder_step",
                decoder,
                (example_codes, *decoder.initial_state()),
                (codes_in, *dec_in),
                (wav, wav_tail, *dec_out),
                dec_pairs,
                {**step_facts, "output_offset_samples": decoder.istft.tail_length},
                out_dir,
                opset,
            ),
        }
    finally:
        model.train(was_training)


def _export_step(
    name: str,
    module: nn.Module,
    example: tuple[Tensor, ...],
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
    pairs: list[StatePair],
    extra: dict,
    out_dir: Path,
    opset: int,
) -> StepGraphSpec:
    path = out_dir / f"{name}.onnx"
    dynamic_axes = {
        spec.name: {axis: size for axis, size in enumerate(spec.shape) if isinstance(size, str)}
        for spec in inputs + outputs
    }
    with torch.no_grad(), warnings.catch_warnings():
        # Tracer warnings concern Python shape arithmetic; every shape here is static but k.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            example,
            str(path),
            input_names=[spec.name for spec in inputs],
            output_names=[spec.name for spec in outputs],
            dynamic_axes={k: v for k, v in dynamic_axes.items() if v},
            opset_version=opset,
            dynamo=False,
        )
    onnx.checker.check_model(str(path))
    logger.info("exported %s (%.1f kB, %d state tensors)", path, path.stat().st_size / 1e3, len(pairs))
    return StepGraphSpec(path.name, inputs, outputs, path=path.resolve(), state=tuple(pairs), extra=extra)


# ---- parity and bundle -----------------------------------------------------------------------------


def _step_graph(spec: GraphSpec, name: str, num_threads: int) -> StepGraph:
    return StepGraph(name, spec.to_manifest(), str(spec.path), num_threads)


def _errors(reference: np.ndarray, test: np.ndarray) -> tuple[float, float]:
    """(max |difference|, SNR in dB of ``test`` against ``reference``); inf when equal."""
    error = test.astype(np.float64) - reference.astype(np.float64)
    noise, signal = float(np.sum(error**2)), float(np.sum(reference.astype(np.float64) ** 2))
    snr = float("inf") if noise == 0 else float(10 * np.log10(max(signal, 1e-30) / noise))
    return float(np.max(np.abs(error), initial=0.0)), snr


@torch.no_grad()
def check_streaming_parity(
    model: CausalRVQCodec, graphs: dict[str, GraphSpec], wav: np.ndarray, num_threads: int = 1
) -> dict[str, float]:
    """Run the step graphs step by step (``speechkit_rt.streaming``) and compare with offline torch.

    The decoder is fed the torch encoder's codes, so its error is its own. When ``graphs`` also holds
    the offline ``encoder`` / ``decoder`` graphs (``export_codec_graphs``), the step graphs are
    compared with them too (the issue's "step graphs chunk by chunk equal the offline graph").

    Args:
        model: the causal codec the graphs came from.
        graphs: ``encoder_step`` and ``decoder_step`` (and optionally ``encoder``, ``decoder``).
        wav: [T] float audio at ``model.sample_rate`` (any length: the end exercises ``flush``).
        num_threads: onnxruntime intra-op threads.

    Returns:
        ``codes_equal_fraction`` (all K codebooks, vs torch ``encode_codes``), ``decoder_max_abs`` and
        ``decoder_snr_db`` (vs torch ``decode_codes``), ``partial_decoder_max_abs`` (first K // 2
        codebooks, when K > 1), ``flush_max_abs`` (the last ``output_offset_samples``, which only
        ``flush`` emits), ``num_frames``; with offline graphs also ``offline_graph_codes_equal_fraction``
        and ``offline_graph_max_abs``.
    """
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1 or wav.size == 0 or not np.all(np.isfinite(wav)):
        raise AudioError(f"check_streaming_parity takes finite mono audio [T], got shape {wav.shape}")
    model.eval()
    encoder = StreamingEncoder(_step_graph(graphs["encoder_step"], "encoder_step", num_threads))
    decoder = StreamingDecoder(
        _step_graph(graphs["decoder_step"], "decoder_step", num_threads), model.codebook_sizes
    )
    # One push: the encoder cuts it into steps itself, one graph call each, and flush pads the end.
    codes = np.concatenate([encoder.push(wav), encoder.flush()], axis=1)  # [K, M]
    reference_codes = model.encode_codes(torch.from_numpy(wav)[None])[0].numpy()
    same_shape = codes.shape == reference_codes.shape
    report = {
        "num_frames": float(reference_codes.shape[-1]),
        "codes_equal_fraction": float(np.mean(codes == reference_codes)) if same_shape else 0.0,
    }
    audio, reference = _stream_decode(decoder, reference_codes), _torch_decode(model, reference_codes)
    max_abs, snr = _errors(reference, audio)
    tail = decoder.offset
    report.update(decoder_max_abs=max_abs, decoder_snr_db=snr)
    report["flush_max_abs"] = _errors(reference[-tail:], audio[-tail:])[0] if tail else 0.0
    if reference_codes.shape[0] > 1:
        half = reference_codes[: reference_codes.shape[0] // 2]
        report["partial_decoder_max_abs"] = _errors(
            _torch_decode(model, half), _stream_decode(decoder, half)
        )[0]
    if "encoder" in graphs and "decoder" in graphs:
        padded = np.pad(wav, (0, (-len(wav)) % int(model.hop_length)))[None]
        offline_codes = _session(graphs["encoder"], num_threads).run(None, {"wav": padded})[0][0]
        decoder_session = _session(graphs["decoder"], num_threads)
        offline_audio = decoder_session.run(None, {"codes": reference_codes[None]})[0][0]
        report["offline_graph_codes_equal_fraction"] = float(np.mean(offline_codes == codes))
        report["offline_graph_max_abs"] = _errors(offline_audio, audio)[0]
    return report


def _stream_decode(decoder: StreamingDecoder, codes: np.ndarray) -> np.ndarray:
    return np.concatenate([decoder.push(codes), decoder.flush()])


def _torch_decode(model: CausalRVQCodec, codes: np.ndarray) -> np.ndarray:
    return model.decode_codes(torch.from_numpy(np.ascontiguousarray(codes))[None])[0].numpy()


def _session(spec: GraphSpec, num_threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(spec.path), options, providers=["CPUExecutionProvider"])


def write_streaming_bundle(
    model: CausalRVQCodec,
    out_dir: str | Path,
    wav: np.ndarray | None = None,
    tokens_per_step: int = 1,
    model_name: str | None = None,
    zip: bool = False,
    offline_graphs: bool = True,
) -> Path:
    """Export a causal codec's offline and step graphs, check parity, write a verified bundle.

    The bundle holds ``encoder`` / ``decoder`` (whole clips, for ``speechkit_rt.CodecRuntime``) and
    ``encoder_step`` / ``decoder_step`` with their state pairs (for
    ``speechkit_rt.streaming.StreamingCodecRuntime``); ``metrics`` records
    :func:`check_streaming_parity` (prefixed ``streaming_``) and ``algorithmic_latency_ms``.

    Args:
        model: the causal codec (float weights; exported in eval mode).
        out_dir: the bundle folder.
        wav: [T] audio at the model's rate for the parity check (default: the first 3 s of
            ``speechkit/assets/sample_speech.wav``).
        tokens_per_step: tokens per step graph call.
        model_name: the manifest's ``model_name`` (default ``"<kind>-stream"``).
        zip: also write ``out_dir.with_suffix(".zip")`` (returned instead of the folder).
        offline_graphs: also ship the whole-clip ``encoder`` / ``decoder`` (doubles the size: each
            graph holds its own copy of the weights).

    Returns:
        The bundle folder (or .zip).

    Example:
        >>> import tempfile
        >>> from speechkit.codec.causal_rvq_codec import CausalRVQCodecConfig
        >>> from speechkit_rt.streaming import StreamingCodecRuntime
        >>> config = CausalRVQCodecConfig(dim=16, latent_dim=8, num_quantizers=2, codebook_size=16,
        ...                               encoder_blocks=(1, 1), decoder_blocks=(1, 1))
        >>> wav = np.sin(np.arange(1000) / 7.0).astype(np.float32)
        >>> out = write_streaming_bundle(CausalRVQCodec(config), Path(tempfile.mkdtemp()) / "b", wav)
        >>> with StreamingCodecRuntime.open(out) as codec:
        ...     codec.encoder.push(wav[:700]).shape, codec.algorithmic_latency_samples
        ((2, 2), 480)
    """
    if wav is None:
        wav, _ = load_audio(sample_speech_path(), target_sample_rate=model.sample_rate)
        wav = wav[: 3 * model.sample_rate]
    with tempfile.TemporaryDirectory(prefix="speechkit-stream-") as tmp:
        graphs: dict[str, GraphSpec] = dict(export_codec_graphs(model, tmp)) if offline_graphs else {}
        graphs.update(export_streaming_graphs(model, tmp, tokens_per_step=tokens_per_step))
        parity = check_streaming_parity(model, graphs, wav)
        latency = tokens_per_step * model.hop_length + model.istft.tail_length
        metrics = {f"streaming_{key}": value for key, value in parity.items() if np.isfinite(value)}
        metrics.update(
            algorithmic_latency_ms=1000.0 * latency / model.sample_rate,
            parity_audio_seconds=len(wav) / model.sample_rate,
        )
        return write_bundle(
            out_dir, _manifest_fields(model, graphs, metrics, model_name), _files(graphs), zip=zip
        )


def _files(graphs: dict[str, GraphSpec]) -> dict[str, Path]:
    return {spec.file: spec.path for spec in graphs.values() if spec.path is not None}


def _manifest_fields(
    model: CausalRVQCodec, graphs: dict[str, GraphSpec], metrics: dict[str, float], model_name: str | None
) -> dict:
    sizes = list(model.codebook_sizes)
    bits = [int(np.ceil(np.log2(size))) for size in sizes]
    extra = {
        "hop_length": int(model.hop_length),
        "exporter": "speechkit_export.streaming_graphs",
        "tokens_per_step": graphs["encoder_step"].extra["tokens_per_step"],
    }
    if getattr(model, "fingerprint", None):
        extra["fingerprint"] = model.fingerprint
    return {
        "task": "codec",
        "model_kind": model.config.KIND,
        "model_name": model_name or f"{model.config.KIND.replace('_', '-')}-stream",
        "sample_rate": int(model.sample_rate),
        "frame_rate": float(model.frame_rate),
        "token_layout": {
            "num_codebooks": len(sizes),
            "codebook_sizes": sizes,
            "bitrates_bps": [float(model.frame_rate) * sum(bits[:k]) for k in range(1, len(sizes) + 1)],
        },
        "graphs": {name: spec.to_manifest() for name, spec in graphs.items()},
        "quantization": {"mode": "none"},
        "metrics": metrics,
        "extra": extra,
    }
