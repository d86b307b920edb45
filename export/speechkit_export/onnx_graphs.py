"""ONNX graphs of the speechkit codecs: which graphs each codec kind exports, the export, a parity check.

Every codec exports a stateless ``encoder`` and ``decoder`` with dynamic time axes (batch of one)::

    rvq_codec      encoder  wav f32 [1, num_samples]            -> codes i64 [1, K, num_frames]
                   decoder  codes i64 [1, num_codebooks, num_frames] -> wav f32 [1, num_samples]
    mel_rvq_codec  encoder  as rvq_codec
                   decoder  codes, initial_phase f32 [1, F, num_frames + 1] -> wav   (Griffin-Lim start)
    single_codec   encoder  wav -> codes i64 [1, 1, num_frames]
                   global_encoder  wav -> global_codes i64 [1, G]   (any length, once per utterance)
                   decoder  codes [1, 1, num_frames], global_codes [1, G] -> wav
    causal_rvq_codec  as rvq_codec (streaming step graphs: ``speechkit_export.streaming_graphs``)
    esc_codec      not exported (see ``CODEC_GRAPHS``)

``num_samples`` must be a multiple of the codec's ``hop_length`` (the runtime pads, as
:meth:`speechkit.codec.api.Codec.encode` does) and decoders return ``num_frames * hop_length`` samples.
The encoder always emits all K codebooks: residual VQ stage i quantizes what stages < i left, so the
codes of the first k stages do not depend on how many stages run, and a lower bitrate is the slice
``codes[:, :k]``. The decoder takes any 1 <= k <= K (a stacked codebook table, no Python loop).

Example:
    >>> import tempfile
    >>> from speechkit.codec.rvq_codec import RVQCodec, RVQCodecConfig
    >>> config = RVQCodecConfig(dim=16, latent_dim=8, num_quantizers=2, codebook_size=8,
    ...                         encoder_blocks=(1, 1), decoder_blocks=(1, 1))
    >>> model = RVQCodec(config).eval()
    >>> graphs = export_codec_graphs(model, tempfile.mkdtemp())
    >>> graphs["decoder"].to_manifest()["inputs"]
    [{'name': 'codes', 'dtype': 'int64', 'shape': [1, 'num_codebooks', 'num_frames']}]
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.codec.hybrid_sampling import HybridDownsample, HybridUpsample
from speechkit.errors import AudioError, ConfigError
from speechkit.tokenizers.residual_vq import ResidualVQ

logger = logging.getLogger(__name__)

# Graph names each codec kind exports; an empty tuple says the kind is known but not exportable yet.
# ESC: its window attention decides shifts and padding from the grid size in Python
# (``speechkit.codec.esc.window_attention``) and its decoder skips streams with Python ``if``s, so a
# traced graph would be right only at the traced length and codebook count.
CODEC_GRAPHS: dict[str, tuple[str, ...]] = {
    "rvq_codec": ("encoder", "decoder"),
    "mel_rvq_codec": ("encoder", "decoder"),
    "single_codec": ("encoder", "global_encoder", "decoder"),
    "esc_codec": (),
    "causal_rvq_codec": ("encoder", "decoder"),
}


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of a graph input or output; a str in ``shape`` names a dynamic axis."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    def to_manifest(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class GraphSpec:
    """One exported graph as the bundle manifest records it.

    Attributes:
        file: file name relative to the bundle folder.
        inputs, outputs: the graph's tensors, in order.
        runtime: the engine that runs it.
        path: where the file is now (not part of the manifest).
    """

    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    runtime: str = "onnxruntime"
    path: Path | None = field(default=None, compare=False)

    def to_manifest(self) -> dict:
        """``{"file", "runtime", "inputs": [{"name", "dtype", "shape"}], "outputs": [...]}``."""
        return {
            "file": self.file,
            "runtime": self.runtime,
            "inputs": [spec.to_manifest() for spec in self.inputs],
            "outputs": [spec.to_manifest() for spec in self.outputs],
        }


# ---- export-only modules ---------------------------------------------------------------------------


class ResidualCodebookTable(nn.Module):
    """``ResidualVQ.decode`` for a dynamic number of stages: codes [B, k, N] -> features [B, D, N].

    ``ResidualVQ.decode`` loops over ``codes.shape[1]`` in Python, which tracing freezes. Here the K
    unit-norm codebooks are one table [K * S, Dc] (stage i's codes offset by i * S), one gather
    looks up all k stages and a batched matmul applies each stage's ``project_out`` 1x1 conv
    (sliced to the first k stages), so k is a graph dimension. Equal to ``ResidualVQ.decode`` up to
    float summation order.

    Args:
        quantizer: the trained residual VQ (read once; later changes to it are not seen).

    Example:
        >>> rvq = ResidualVQ(dim=8, num_quantizers=3, codebook_size=16, codebook_dim=4).eval()
        >>> codes = torch.randint(0, 16, (1, 2, 5))
        >>> table = ResidualCodebookTable(rvq)
        >>> bool(torch.allclose(table(codes), rvq.decode(codes), atol=1e-6))
        True
    """

    def __init__(self, quantizer: ResidualVQ) -> None:
        super().__init__()
        layers = list(quantizer.layers)
        size = quantizer.codebook_size
        with torch.no_grad():
            table = torch.cat([layer.codebook_vectors.float() for layer in layers])  # [K * S, Dc]
        self.register_buffer("table", table.clone())
        self.register_buffer("offsets", torch.arange(len(layers)) * size)  # [K]
        self.register_buffer("weight", None)
        self.register_buffer("bias", None)
        if isinstance(layers[0].project_out, nn.Conv1d):
            # Conv1d weight [D, Dc, 1] -> [Dc, D] per stage, stacked [K, Dc, D]; bias [K, D].
            weight = torch.stack([layer.project_out.weight[:, :, 0].t() for layer in layers])
            bias = torch.stack([layer.project_out.bias for layer in layers])
            self.register_buffer("weight", weight.detach().clone())
            self.register_buffer("bias", bias.detach().clone())

    def forward(self, codes: Tensor) -> Tensor:
        k = codes.shape[1]
        vectors = F.embedding(codes + self.offsets[:k].view(1, -1, 1), self.table)  # [B, k, N, Dc]
        if self.weight is not None:
            vectors = torch.matmul(vectors, self.weight[:k].unsqueeze(0))  # [B, k, N, D]
            vectors = vectors + self.bias[:k].unsqueeze(0).unsqueeze(2)
        return vectors.sum(dim=1).transpose(1, 2)  # [B, D, N]


class _Encoder(nn.Module):
    """wav [1, T] -> codes [1, K, N] of every codebook (rvq_codec, mel_rvq_codec)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, wav: Tensor) -> Tensor:
        return self.model.encode_codes(wav, len(self.model.codebook_sizes))


class _RVQDecoder(nn.Module):
    """codes [1, k, N] -> wav [1, N * hop_length] for the RVQ codec."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.table = model, ResidualCodebookTable(model.quantizer)

    def forward(self, codes: Tensor) -> Tensor:
        return self.model.synthesise(self.table(codes))


class _MelRVQDecoder(nn.Module):
    """(codes [1, k, N], initial_phase [1, F, N + 1]) -> wav [1, N * hop_length] for mel-rvq.

    ``MelRVQCodec.decode_codes`` draws Griffin-Lim's initial phase from a seeded torch generator,
    which no runtime reproduces; the graph takes the phase as an input instead, so its output is
    deterministic and equals torch's when fed torch's phase (see :func:`mel_rvq_initial_phase`).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        model = copy.deepcopy(model)
        # Each of the 2 x iterations STFT calls would inline its own copy of the non-persistent DFT
        # bases as a Constant (4 MB each at n_fft 1024: a 140 MB graph); persistent buffers become one
        # shared initializer each.
        for module in model.modules():
            for name, buffer in list(module.named_buffers(recurse=False)):
                module.register_buffer(name, buffer, persistent=True)
        self.model, self.table = model, ResidualCodebookTable(model.quantizer)

    def forward(self, codes: Tensor, initial_phase: Tensor) -> Tensor:
        m = self.model
        mel = self.table(codes) * m.feature_std[:, None] + m.feature_mean[:, None]
        mel = torch.cat([mel, mel[..., -1:]], dim=-1)  # as MelRVQCodec.decode_codes: N + 1 frames
        magnitude = torch.clamp(torch.matmul(m.inverse_filterbank, torch.exp(mel)), min=0.0)
        return _griffin_lim(magnitude, initial_phase, m.stft, m.istft, m.config.griffin_lim_iters)


def _griffin_lim(
    magnitude: Tensor,
    angle: Tensor,
    stft: nn.Module,
    istft: nn.Module,
    num_iters: int,
    momentum: float = 0.99,
) -> Tensor:
    """``speechkit.features.griffin_lim`` with the initial phase given (the same iterations)."""
    real, imag = magnitude * torch.cos(angle), magnitude * torch.sin(angle)
    prev_real, prev_imag = torch.zeros_like(real), torch.zeros_like(imag)
    for _ in range(num_iters):
        est_real, est_imag = stft(istft(real, imag))
        acc_real = est_real + momentum * (est_real - prev_real)
        acc_imag = est_imag + momentum * (est_imag - prev_imag)
        prev_real, prev_imag = est_real, est_imag
        norm = torch.sqrt(acc_real**2 + acc_imag**2).clamp_min(1e-8)
        real, imag = magnitude * acc_real / norm, magnitude * acc_imag / norm
    return istft(real, imag)


def mel_rvq_initial_phase(num_bins: int, num_frames: int, seed: int = 0) -> np.ndarray:
    """The Griffin-Lim start phase [1, num_bins, num_frames + 1] that ``MelRVQCodec`` draws in torch.

    Feeding it to the mel-rvq decoder graph reproduces ``decode_codes``; any other phase (e.g. a
    numpy draw on device) gives an equally valid but different reconstruction.

    Example:
        >>> mel_rvq_initial_phase(513, 10).shape
        (1, 513, 11)
    """
    generator = torch.Generator().manual_seed(seed)
    angle = torch.rand((1, num_bins, num_frames + 1), generator=generator) * 2 * torch.pi
    return angle.numpy()


class _ExportHybridDownsample(nn.Module):
    """``HybridDownsample`` without the Python ``if`` on the length, which tracing would freeze.

    Padding factor - 1 copies of the last frame (a constant amount) and average-pooling (floor)
    gives the same last window as padding the partial block with copies, and drops the copies when
    the length divides.
    """

    def __init__(self, inner: HybridDownsample) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        factor = self.inner.factor
        pooled = F.avg_pool1d(F.pad(x, (0, factor - 1), mode="replicate"), factor)
        if self.inner.pool_proj is not None:
            pooled = self.inner.pool_proj(pooled)
        return self.inner.conv(x) + pooled


class _ExportHybridUpsample(nn.Module):
    """``HybridUpsample`` with frame repetition as stack + flatten: the exporter turns
    ``repeat_interleave`` into a Tile whose output length is frozen at the traced length."""

    def __init__(self, inner: HybridUpsample) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        repeated = x if self.inner.repeat_proj is None else self.inner.repeat_proj(x)
        repeated = torch.stack([repeated] * self.inner.factor, dim=-1).flatten(2)  # [B, C, T * factor]
        return self.inner.conv(x) + repeated


class _GlobalEncoder(nn.Module):
    """wav [1, T] -> global codes [1, G] for Single-Codec.

    A graph of its own, not a second output of the encoder: traced together, the TorchScript
    exporter (torch 2.13) wires the reference encoder's pooling ``expand`` to a wrong constant
    shape and onnxruntime refuses the graph at every length. A prompt also needs only these codes.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, wav: Tensor) -> Tensor:
        return self.model.encode_global(wav)


class _SingleCodecDecoder(nn.Module):
    """(codes [1, 1, N], global_codes [1, G]) -> wav [1, N * hop_length] for Single-Codec."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, codes: Tensor, global_codes: Tensor) -> Tensor:
        return self.model.decode_codes(codes, global_codes=global_codes)


# ---- plans: module, example inputs and specs of each graph ----------------------------------------


@dataclass
class _GraphPlan:
    module: nn.Module
    example: tuple[Tensor, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


_WAV = TensorSpec("wav", "float32", (1, "num_samples"))


def _example_codes(model: nn.Module, frames: int) -> Tensor:
    sizes = torch.tensor(model.codebook_sizes)[None, :, None]
    noise = torch.rand(1, len(model.codebook_sizes), frames, generator=torch.Generator().manual_seed(0))
    return (noise * sizes).long()


def _example_wav(model: nn.Module, frames: int) -> Tensor:
    # A local generator: exporting must not move the caller's global random state.
    return 0.1 * torch.randn(1, frames * model.hop_length, generator=torch.Generator().manual_seed(0))


def _plan_rvq(model: nn.Module, frames: int) -> dict[str, _GraphPlan]:
    num = len(model.codebook_sizes)
    wav = _example_wav(model, frames)
    decoder = _MelRVQDecoder(model) if model.config.KIND == "mel_rvq_codec" else _RVQDecoder(model)
    codes_in = TensorSpec("codes", "int64", (1, "num_codebooks", "num_frames"))
    dec_inputs: tuple[TensorSpec, ...] = (codes_in,)
    dec_example: tuple[Tensor, ...] = (_example_codes(model, frames),)
    if isinstance(decoder, _MelRVQDecoder):
        bins = model.stft.num_bins
        dec_inputs += (TensorSpec("initial_phase", "float32", (1, bins, "num_stft_frames")),)
        dec_example += (torch.from_numpy(mel_rvq_initial_phase(bins, frames)),)
    return {
        "encoder": _GraphPlan(
            _Encoder(model), (wav,), (_WAV,), (TensorSpec("codes", "int64", (1, num, "num_frames")),)
        ),
        "decoder": _GraphPlan(decoder, dec_example, dec_inputs, (_WAV,)),
    }


def _plan_causal_rvq(model: nn.Module, frames: int) -> dict[str, _GraphPlan]:
    """As ``rvq_codec``, with a decoder whose causal overlap-add avoids the complex iFFT."""
    # Imported here: streaming_graphs (which holds the export-only causal iSTFT) imports this module.
    from speechkit_export.streaming_graphs import CausalRVQDecoderGraph

    plans = _plan_rvq(model, frames)
    plans["decoder"].module = CausalRVQDecoderGraph(model)
    return plans


def _plan_single_codec(model: nn.Module, frames: int) -> dict[str, _GraphPlan]:
    model = copy.deepcopy(model)
    _replace_modules(model, HybridDownsample, _ExportHybridDownsample)
    _replace_modules(model, HybridUpsample, _ExportHybridUpsample)
    groups = len(model.global_codebook_sizes)
    codes = TensorSpec("codes", "int64", (1, 1, "num_frames"))
    global_codes = TensorSpec("global_codes", "int64", (1, groups))
    wav = _example_wav(model, frames)
    example_global = torch.zeros(1, groups, dtype=torch.long)
    return {
        "encoder": _GraphPlan(_Encoder(model), (wav,), (_WAV,), (codes,)),
        "global_encoder": _GraphPlan(_GlobalEncoder(model), (wav,), (_WAV,), (global_codes,)),
        "decoder": _GraphPlan(
            _SingleCodecDecoder(model),
            (_example_codes(model, frames), example_global),
            (codes, global_codes),
            (_WAV,),
        ),
    }


_PLANNERS: dict[str, Callable[[nn.Module, int], dict[str, _GraphPlan]]] = {
    "rvq_codec": _plan_rvq,
    "mel_rvq_codec": _plan_rvq,
    "single_codec": _plan_single_codec,
    "causal_rvq_codec": _plan_causal_rvq,
}


def _replace_modules(root: nn.Module, kind: type, wrap: Callable[[nn.Module], nn.Module]) -> None:
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, kind):
                setattr(parent, name, wrap(child))


# ---- export and parity -----------------------------------------------------------------------------


def export_codec_graphs(
    model: nn.Module, out_dir: str | Path, opset: int = 18, example_frames: int = 20
) -> dict[str, GraphSpec]:
    """Export every graph ``CODEC_GRAPHS`` lists for the model's kind to ``out_dir/<name>.onnx``.

    Args:
        model: a codec model (``speechkit.codec``); exported in eval mode, left unchanged.
        out_dir: folder for the graph files (created if missing).
        opset: ONNX opset (>= 17 for LayerNormalization).
        example_frames: token frames of the example input traced (time axes stay dynamic).

    Returns:
        graph name -> :class:`GraphSpec` (``to_manifest()`` gives the manifest entry).

    Raises:
        ConfigError: a codec kind that has no export, or an opset below 17.
    """
    kind = model.config.KIND
    if not CODEC_GRAPHS.get(kind) or kind not in _PLANNERS:
        known = sorted(k for k, names in CODEC_GRAPHS.items() if names)
        raise ConfigError(f"codec kind {kind!r} has no ONNX export (exportable kinds: {known})")
    if opset < 17:
        raise ConfigError(f"opset must be >= 17 (LayerNormalization), got {opset}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        plans = _PLANNERS[kind](model, example_frames)
        return {name: _export_plan(name, plan, out_dir, opset) for name, plan in plans.items()}
    finally:
        model.train(was_training)


def _export_plan(name: str, plan: _GraphPlan, out_dir: Path, opset: int) -> GraphSpec:
    path = out_dir / f"{name}.onnx"
    dynamic_axes = {
        spec.name: {axis: size for axis, size in enumerate(spec.shape) if isinstance(size, str)}
        for spec in plan.inputs + plan.outputs
    }
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is deprecated but exact; its tracer warnings are about the
        # Python shape arithmetic that the dynamic-length parity tests check.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            plan.module.eval(),
            plan.example,
            str(path),
            input_names=[spec.name for spec in plan.inputs],
            output_names=[spec.name for spec in plan.outputs],
            dynamic_axes={k: v for k, v in dynamic_axes.items() if v},
            opset_version=opset,
            dynamo=False,
        )
    onnx.checker.check_model(str(path))
    logger.info("exported %s (%.1f kB)", path, path.stat().st_size / 1e3)
    return GraphSpec(path.name, plan.inputs, plan.outputs, path=path.resolve())


def _session(spec: GraphSpec, num_threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(spec.path), options, providers=["CPUExecutionProvider"])


def _audio_errors(reference: np.ndarray, test: np.ndarray) -> tuple[float, float]:
    """(max |difference|, SNR in dB of ``test`` against ``reference``)."""
    error = test.astype(np.float64) - reference.astype(np.float64)
    signal = float(np.sum(reference.astype(np.float64) ** 2))
    noise = float(np.sum(error**2))
    snr = float("inf") if noise == 0 else float(10 * np.log10(max(signal, 1e-30) / noise))
    return float(np.max(np.abs(error))), snr


@torch.no_grad()
def check_parity(
    model: nn.Module, graphs: dict[str, GraphSpec], wav: np.ndarray, num_threads: int = 1
) -> dict[str, float]:
    """Run the ONNX graphs with onnxruntime and the model in torch on the same audio and compare.

    The decoder graph gets the torch encoder's codes, so its error is its own. Audio is padded to a
    multiple of ``model.hop_length``; use a length other than the export's to test the time axes.

    Args:
        model: the codec the graphs came from (or whose quantised graphs ``graphs`` point to).
        graphs: ``{"encoder": spec, "decoder": spec}`` as :func:`export_codec_graphs` returns.
        wav: [T] float audio at ``model.sample_rate``.
        num_threads: onnxruntime intra-op threads.

    Returns:
        ``codes_equal_fraction`` (all K codebooks), ``first_codebook_equal_fraction``,
        ``decoder_max_abs`` and ``decoder_snr_db`` (ORT vs torch on torch's codes), the same two
        for the first half of the codebooks (``partial_*``, when K > 1), ``global_codes_equal_fraction``
        for a codec with global codes, and ``num_frames``.
    """
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1 or wav.size == 0 or not np.all(np.isfinite(wav)):
        raise AudioError(f"check_parity takes finite mono audio [T], got shape {wav.shape}")
    model.eval()
    hop = int(model.hop_length)
    padded = np.pad(wav, (0, (-len(wav)) % hop))[None]
    encoder, decoder = _session(graphs["encoder"], num_threads), _session(graphs["decoder"], num_threads)
    ort_out = encoder.run(None, {"wav": padded})
    codes = model.encode_codes(torch.from_numpy(padded)).numpy()
    report = {
        "num_frames": float(codes.shape[-1]),
        "codes_equal_fraction": float(np.mean(ort_out[0] == codes)),
        "first_codebook_equal_fraction": float(np.mean(ort_out[0][:, 0] == codes[:, 0])),
    }
    extra: dict[str, np.ndarray] = {}
    if getattr(model, "global_codebook_sizes", ()):
        global_codes = model.encode_global(torch.from_numpy(padded)).numpy()
        ort_global = _session(graphs["global_encoder"], num_threads).run(None, {"wav": padded})[0]
        report["global_codes_equal_fraction"] = float(np.mean(ort_global == global_codes))
        extra["global_codes"] = global_codes
    counts = {"": codes.shape[1]}
    if codes.shape[1] > 1:
        counts["partial_"] = codes.shape[1] // 2
    for prefix, k in counts.items():
        reference = _torch_decode(model, codes[:, :k], extra)
        feeds = {"codes": codes[:, :k], **extra}
        if model.config.KIND == "mel_rvq_codec":
            feeds["initial_phase"] = mel_rvq_initial_phase(model.stft.num_bins, codes.shape[-1])
        max_abs, snr = _audio_errors(reference, decoder.run(None, feeds)[0])
        report[f"{prefix}decoder_max_abs"], report[f"{prefix}decoder_snr_db"] = max_abs, snr
    return report


def calibration_feeds(
    graphs: dict[str, GraphSpec], clips: list[np.ndarray], hop_length: int, num_threads: int = 1
) -> dict[str, list[dict[str, np.ndarray]]]:
    """Calibration inputs for every graph of a codec from real audio clips (for int8-static).

    Encoders get the clips (padded to a multiple of ``hop_length``); decoders get what the fp32
    encoder graphs make of them (codes, global codes) and, for mel-rvq, a uniform random phase.

    Args:
        graphs: as :func:`export_codec_graphs` returns (fp32 graphs).
        clips: float32 mono clips [T] at the codec's sample rate.
        hop_length: the codec's token hop in samples.
        num_threads: onnxruntime intra-op threads.

    Returns:
        graph name -> list of feeds (input name -> array), one per clip.
    """
    rng = np.random.default_rng(0)
    feeds: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in graphs}
    sessions = {
        name: _session(graphs[name], num_threads) for name in ("encoder", "global_encoder") if name in graphs
    }
    for clip in clips:
        clip = np.asarray(clip, dtype=np.float32).reshape(-1)
        wav = np.pad(clip, (0, (-len(clip)) % hop_length))[None]
        codes = sessions["encoder"].run(None, {"wav": wav})[0]
        decoder_feed = {"codes": codes}
        if "global_encoder" in sessions:
            decoder_feed["global_codes"] = sessions["global_encoder"].run(None, {"wav": wav})[0]
        phase = next((spec for spec in graphs["decoder"].inputs if spec.name == "initial_phase"), None)
        if phase is not None:
            shape = (1, int(phase.shape[1]), codes.shape[-1] + 1)
            decoder_feed["initial_phase"] = rng.uniform(0, 2 * np.pi, shape).astype(np.float32)
        for name in sessions:
            feeds[name].append({"wav": wav})
        feeds["decoder"].append(decoder_feed)
    return feeds


def _torch_decode(model: nn.Module, codes: np.ndarray, extra: dict[str, np.ndarray]) -> np.ndarray:
    tensors = {name: torch.from_numpy(value) for name, value in extra.items()}
    return model.decode_codes(torch.from_numpy(np.ascontiguousarray(codes)), **tensors).numpy()
