"""ONNX graphs of the E-Branchformer ASR model: a whole-utterance encoder and a decoder step.

::

    encoder       wav f32 [1, num_samples]
                  -> ctc_log_probs f32 [1, num_frames, V], memory f32 [1, num_frames, D]
    decoder_step  tokens i64 [num_hypotheses, num_tokens], memory f32 [1, num_frames, D]
                  -> log_probs f32 [num_hypotheses, V]                        (final head)
                     intermediate_log_probs f32 [num_hypotheses, H, V]        (DeCRED heads, when H > 0)

``encoder`` holds the whole front-end: log-mel with the DFT-matmul STFT (a conv1d with the
windowed DFT basis, which the bundle ships as a derived initializer, as the codec bundles do), the
model's own normalisation statistics, the 4x conv2d subsampling, the E-Branchformer blocks (full
context, no padding: one utterance per call) and the CTC head. ``num_frames = ((1 + T // 160) - 1)
// 2 - 1) // 2`` for the default 10 ms mel hop (40 ms per frame); audio under 960 samples (fewer than
the subsampling's 7 mel frames) is outside the traced shapes, and the runtime refuses audio under
0.1 s as the SDK does.

``decoder_step`` recomputes the whole prefix each call (no KV cache): ``tokens`` starts with
``<sos/eos>`` and all hypotheses of a step have the same length, as in the synchronous beam search,
so one call scores every running hypothesis. Only the last position's distributions are returned.
The memory is given once (batch 1) and broadcast over the hypotheses inside the graph.

Example:
    >>> import tempfile
    >>> from speechkit.asr.model import ASRConfig, EBranchformerASR
    >>> graphs = export_asr_graphs(EBranchformerASR(ASRConfig.tiny()).eval(), tempfile.mkdtemp())
    >>> [t.name for t in graphs["decoder_step"].outputs]
    ['log_probs', 'intermediate_log_probs']
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import Tensor, nn

from speechkit.asr.model import EBranchformerASR
from speechkit.decoders.ctc import ctc_greedy
from speechkit.errors import AudioError, ConfigError
from speechkit_export.onnx_graphs import GraphSpec, TensorSpec

logger = logging.getLogger(__name__)

ASR_GRAPHS = ("encoder", "decoder_step")
MIN_GRAPH_SAMPLES = 960  # 7 mel frames at the 160-sample hop: the subsampling's receptive field


class ASREncoderGraph(nn.Module):
    """wav [1, T] -> (CTC log-probs [1, N, V], encoder memory [1, N, D]) of one utterance.

    ``EBranchformerASR.encode`` without lengths: a single unpadded utterance needs no padding mask,
    so every block runs on full context (the SDK's offline default, ``chunk_frames=None``). The STFT
    takes its conv1d (DFT-matmul) path under export.

    Args:
        model: the ASR model (read, not copied; eval mode).

    Example:
        >>> from speechkit.asr.model import ASRConfig
        >>> model = EBranchformerASR(ASRConfig.tiny()).eval()
        >>> wav = torch.randn(1, 4000)
        >>> log_probs, memory = ASREncoderGraph(model)(wav)
        >>> encoded, _ = model.encode(wav)
        >>> bool(torch.allclose(memory, encoded, atol=1e-5)), tuple(log_probs.shape)
        (True, (1, 5, 31))
    """

    def __init__(self, model: EBranchformerASR) -> None:
        super().__init__()
        self.model = model

    def forward(self, wav: Tensor) -> tuple[Tensor, Tensor]:
        m = self.model
        mel, mel_lengths = m.frontend(wav)  # [1, N_mel, n_mels], normalised with the model's statistics
        x, _ = m.subsampling(mel, mel_lengths)  # [1, N, D]
        for block in m.encoder.blocks:
            x = block(x)
        return m.ctc_log_probs(x), x


class ASRDecoderStepGraph(nn.Module):
    """(tokens [B, L], memory [1, N, D]) -> next-token log-probs of the last position, every head.

    Full-prefix recomputation with the teacher-forced ``AttentionDecoder.forward`` (causal
    self-attention, no padding), keeping position L - 1. Returns the final head [B, V] and, when the
    decoder has DeCRED intermediate classifiers, their log-probs [B, H, V] (intermediate-first, the
    order ``speechkit.asr.decred.combine_layer_log_probs`` takes).

    Args:
        model: the ASR model (read, not copied; eval mode).

    Example:
        >>> from speechkit.asr.model import ASRConfig
        >>> model = EBranchformerASR(ASRConfig.tiny()).eval()
        >>> memory, tokens = torch.randn(1, 6, 32), torch.tensor([[2, 7, 9]])
        >>> final, intermediate = ASRDecoderStepGraph(model)(tokens, memory)
        >>> state = model.decoder.initial_state(1)
        >>> for t in range(3):
        ...     heads, state = model.decoder.step(tokens[:, t], state, memory, None)
        >>> bool(torch.allclose(final, heads[-1], atol=1e-5)), tuple(intermediate.shape)
        (True, (1, 1, 31))
    """

    def __init__(self, model: EBranchformerASR) -> None:
        super().__init__()
        self.decoder = model.decoder

    def forward(self, tokens: Tensor, memory: Tensor) -> tuple[Tensor, ...]:
        memory = memory.expand(tokens.shape[0], -1, -1)  # [B, N, D]: one utterance, B hypotheses
        heads = self.decoder(tokens, None, memory, None)  # each [B, L, V]
        final = heads[-1][:, -1]
        if len(heads) == 1:
            return (final,)
        return final, torch.stack([h[:, -1] for h in heads[:-1]], dim=1)


def _plans(model: EBranchformerASR, example_seconds: float) -> dict[str, tuple]:
    """(module, example inputs, input specs, output specs) of each graph."""
    c = model.config
    vocab, heads = c.vocab_size, len(model.decoder.intermediate_layers)
    generator = torch.Generator().manual_seed(0)  # local: exporting leaves the global RNG alone
    wav = 0.1 * torch.randn(1, int(example_seconds * c.sample_rate), generator=generator)
    with torch.no_grad():
        _, memory = ASREncoderGraph(model)(wav)
    tokens = torch.randint(3, vocab, (2, 4), generator=generator)
    tokens[:, 0] = model.vocabulary.sos_eos_id
    memory_spec = TensorSpec("memory", "float32", (1, "num_frames", c.dim))
    step_outputs = [TensorSpec("log_probs", "float32", ("num_hypotheses", vocab))]
    if heads:
        step_outputs.append(TensorSpec("intermediate_log_probs", "float32", ("num_hypotheses", heads, vocab)))
    return {
        "encoder": (
            ASREncoderGraph(model),
            (wav,),
            (TensorSpec("wav", "float32", (1, "num_samples")),),
            (TensorSpec("ctc_log_probs", "float32", (1, "num_frames", vocab)), memory_spec),
        ),
        "decoder_step": (
            ASRDecoderStepGraph(model),
            (tokens, memory),
            (TensorSpec("tokens", "int64", ("num_hypotheses", "num_tokens")), memory_spec),
            tuple(step_outputs),
        ),
    }


def export_asr_graphs(
    model: EBranchformerASR, out_dir: str | Path, opset: int = 18, example_seconds: float = 1.5
) -> dict[str, GraphSpec]:
    """Export ``encoder`` and ``decoder_step`` of an ASR model to ``out_dir/<name>.onnx``.

    Args:
        model: the ASR model; exported in eval mode, left unchanged.
        out_dir: folder for the graph files (created if missing).
        opset: ONNX opset (>= 17 for LayerNormalization).
        example_seconds: length of the traced example audio (the time axes stay dynamic).

    Returns:
        graph name -> :class:`~speechkit_export.onnx_graphs.GraphSpec`.

    Raises:
        ConfigError: not an :class:`EBranchformerASR`, or an opset below 17.
    """
    if not isinstance(model, EBranchformerASR):
        raise ConfigError(f"ASR graphs need an EBranchformerASR, got {type(model).__name__}")
    if opset < 17:
        raise ConfigError(f"opset must be >= 17 (LayerNormalization), got {opset}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        plans = _plans(model, example_seconds)
        return {name: _export(name, *plan, out_dir, opset) for name, plan in plans.items()}
    finally:
        model.train(was_training)


def _export(
    name: str,
    module: nn.Module,
    example: tuple[Tensor, ...],
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
    out_dir: Path,
    opset: int,
) -> GraphSpec:
    path = out_dir / f"{name}.onnx"
    dynamic_axes = {
        spec.name: {axis: size for axis, size in enumerate(spec.shape) if isinstance(size, str)}
        for spec in inputs + outputs
    }
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is deprecated but exact; its tracer warnings concern the Python
        # shape arithmetic (lengths, the subsampling's short-input branch) the parity tests cover.
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
    logger.info("exported %s (%.1f kB)", path, path.stat().st_size / 1e3)
    return GraphSpec(path.name, inputs, outputs, path=path.resolve())


# ---- parity ----------------------------------------------------------------------------------------


def _session(path: Path, num_threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def greedy_prefix(ctc_log_probs: np.ndarray, blank: int, sos: int, max_tokens: int = 12) -> np.ndarray:
    """A decoder-step test prefix [1, L]: ``<sos>`` and the first greedy CTC characters of a clip.

    Example:
        >>> lp = np.log(np.array([[0.1, 0.1, 0.1, 0.7], [0.7, 0.1, 0.1, 0.1]]))
        >>> greedy_prefix(lp, blank=0, sos=2).tolist()
        [[2, 3]]
    """
    tokens = ctc_greedy(ctc_log_probs, blank).tokens[: max_tokens - 1]
    return np.array([[sos, *tokens]], dtype=np.int64)


@torch.no_grad()
def check_asr_parity(
    model: EBranchformerASR,
    graphs: dict[str, GraphSpec],
    wav: np.ndarray,
    sessions: dict[str, ort.InferenceSession] | None = None,
    num_threads: int = 1,
) -> dict[str, float]:
    """Run the graphs with onnxruntime and the model in torch on one clip and compare.

    The references are the SDK's own paths: ``model.encode`` (with its lengths and padding mask)
    and the KV-cached ``model.decoder.step``. The decoder step gets the torch encoder's memory and
    a prefix of the torch greedy CTC output (each of its lengths 1..L is scored), so its error is
    its own.

    Args:
        model: the ASR model the graphs came from (or whose quantised graphs they are).
        graphs: ``{"encoder": spec, "decoder_step": spec}`` as :func:`export_asr_graphs` returns.
        wav: [T] float audio at ``model.sample_rate`` (at least ``MIN_GRAPH_SAMPLES``).
        sessions: sessions to use instead of opening ``graphs``' files (e.g. a bundle's, materialised).
        num_threads: onnxruntime intra-op threads.

    Returns:
        ``ctc_max_abs`` (CTC log-probs), ``memory_max_abs``, ``decoder_step_max_abs`` (final head),
        ``decoder_step_intermediate_max_abs`` (DeCRED heads, when present), ``greedy_equal``
        (1.0 when the greedy CTC transcripts agree), ``frame_argmax_equal_fraction`` and
        ``num_frames``.

    Raises:
        AudioError: audio that is not finite mono, or too short for the encoder graph.
    """
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1 or len(wav) < MIN_GRAPH_SAMPLES or not np.all(np.isfinite(wav)):
        raise AudioError(
            f"check_asr_parity takes finite mono audio of >= {MIN_GRAPH_SAMPLES} samples, got {wav.shape}"
        )
    model.eval()
    if sessions is None:
        sessions = {name: _session(graphs[name].path, num_threads) for name in ASR_GRAPHS}
    encoded, _ = model.encode(torch.from_numpy(wav)[None])  # the SDK's path (padding mask, lengths)
    torch_lp, torch_memory = model.ctc_log_probs(encoded).numpy(), encoded.numpy()
    ort_lp, ort_memory = sessions["encoder"].run(None, {"wav": wav[None]})
    vocab = model.vocabulary
    report = {
        "num_frames": float(torch_lp.shape[1]),
        "ctc_max_abs": _max_abs(torch_lp, ort_lp),
        "memory_max_abs": _max_abs(torch_memory, ort_memory),
        "frame_argmax_equal_fraction": float(np.mean(torch_lp.argmax(-1) == ort_lp.argmax(-1))),
        "greedy_equal": float(
            ctc_greedy(torch_lp[0], vocab.blank_id).tokens == ctc_greedy(ort_lp[0], vocab.blank_id).tokens
        ),
    }
    prefix = greedy_prefix(torch_lp[0], vocab.blank_id, vocab.sos_eos_id)
    state = model.decoder.initial_state(1)  # the SDK's KV-cached step, one token at a time
    final_error, intermediate_error = 0.0, 0.0
    for length in range(1, prefix.shape[1] + 1):
        heads, state = model.decoder.step(torch.from_numpy(prefix[:, length - 1]), state, encoded, None)
        feeds = {"tokens": prefix[:, :length], "memory": torch_memory}
        outputs = sessions["decoder_step"].run(None, feeds)
        final_error = max(final_error, _max_abs(heads[-1].numpy(), outputs[0]))
        if len(heads) > 1:
            reference = torch.stack(heads[:-1], dim=1).numpy()  # [1, H, V]
            intermediate_error = max(intermediate_error, _max_abs(reference, outputs[1]))
    report["decoder_step_max_abs"] = final_error
    if model.decoder.intermediate_layers:
        report["decoder_step_intermediate_max_abs"] = intermediate_error
    return report


def _max_abs(reference: np.ndarray, test: np.ndarray) -> float:
    if reference.shape != test.shape:
        raise ConfigError(f"graph output of shape {test.shape}, torch gives {reference.shape}")
    return float(np.max(np.abs(reference.astype(np.float64) - test.astype(np.float64)), initial=0.0))
