"""ONNX graphs of MobileSpeech TTS and the export of a TTS bundle (``task: "tts"``).

A MobileSpeech bundle holds these graphs (batch of one; D = model width, K = token layers the TTS
predicts, V = codebook size, P = prompt frames, N = phonemes, T = token frames)::

    tts_encoder         phonemes i64 [1, N], prompt_memory f32 [1, P, D]
                        -> text f32 [1, N, D], log_durations f32 [1, N]        (log(1 + frames))
    tts_decoder_step    codes i64 [1, K, T] (``mask_id`` = V where unknown), layer i64 [1],
                        frames f32 [1, T, D] (text rows repeated by the durations), prompt_memory
                        -> logits f32 [1, T, V] for codec layer ``layer``
    codec_decoder       the codec export's ``decoder`` (onnx_graphs): codes i64 [1, k, T] -> wav [1, T * hop]
    tts_prompt_encoder  prompt_codes i64 [1, K, P] -> prompt_memory f32 [1, P, D]    (zero-shot only)
    codec_encoder       the codec export's ``encoder``: wav [1, S] -> codes [1, Kc, S / hop]  (zero-shot only)

plus ``default_voice.npz``: the shipped voice's ``prompt_memory`` [1, P, D] (computed by the float32
torch prompt encoder) and ``prompt_codes`` [1, K, P], hash-checked like every bundle file. The decode
loop (length regulation, confidence-ordered unmasking, sampling) is not a graph: the runtime runs it
in numpy (``speechkit_rt.tts``) exactly as ``MobileSpeech.generate`` does in torch, calling
``tts_decoder_step`` once per step (``default_steps`` for layer 1, one step per higher layer).

The graph modules below re-express three model pieces for export, all equal to the model's up to
float summation order: the code embedding as one gather over the stacked tables (the model loops
over layers in Python), the output heads as a gather plus MatMul (no Einsum), and the padding masks
dropped (a batch of one has none). With ``--quant int8`` the embedding tables and heads, which are
Gather inputs that onnxruntime's dynamic quantiser leaves float, are stored as uint8 rows with a
float32 scale and zero point per row; every MatMul weight goes through ``quantize_dynamic``
(``ort_quant``), the codec graphs as in the codec export.

Example:
    >>> import tempfile
    >>> from speechkit.tts.mobilespeech import MobileSpeech, MobileSpeechConfig
    >>> config = MobileSpeechConfig(dim=16, num_heads=2, text_layers=1, prompt_layers=1, duration_layers=1,
    ...                             decoder_layers=1, num_codebooks=2, codebook_size=8)
    >>> graphs = export_tts_graphs(MobileSpeech(config), tempfile.mkdtemp())
    >>> sorted(graphs), [t.name for t in graphs["tts_decoder_step"].inputs]
    (['tts_decoder_step', 'tts_encoder', 'tts_prompt_encoder'], ['codes', 'layer', 'frames', 'prompt_memory'])
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from speechkit.errors import ConfigError
from speechkit.text.symbols import ALL_SYMBOLS, SYMBOLS_VERSION
from speechkit.tts.mobilespeech import CodeEmbedding, MobileSpeech
from speechkit_export.bundle_writer import size_on_disk, write_bundle
from speechkit_export.derived_initializers import recipes_for, strip_derived
from speechkit_export.onnx_graphs import GraphSpec, TensorSpec, _export_plan, _GraphPlan, export_codec_graphs
from speechkit_export.ort_quant import quantize_graph
from speechkit_export.pipeline import ExportReport, _quiet_root_logger
from speechkit_export.weight_blobs import graph_weight_bytes

logger = logging.getLogger(__name__)

TTS_KINDS = ("mobilespeech_tts",)
TTS_QUANT_MODES = {"none": "none", "int8": "int8-dynamic", "int8-dynamic": "int8-dynamic"}
VOICE_FILE = "default_voice.npz"
ZERO_SHOT_GRAPHS = ("tts_prompt_encoder", "codec_encoder")
# A sentence of the Harvard lists, for the parity checks (phonemised by the SDK's text frontend).
PARITY_TEXT = "The birch canoe slid on the smooth planks."


# ---- export-only modules ---------------------------------------------------------------------------


class RowTable(nn.Module):
    """Rows of a float table [..., D] looked up by index; optionally stored as uint8 per row.

    With ``int8`` each row r (last axis) is ``scale[r] * (code[r] - zero[r])``, uint8 codes with a
    float32 scale and zero point (asymmetric, round to nearest): the table shrinks 4x and a row's
    error is at most half a step, ``(max - min) / 510``.

    Example:
        >>> table = torch.randn(5, 8)
        >>> index = torch.tensor([[4, 0]])
        >>> bool(torch.equal(RowTable(table, int8=False)(index), table[index]))
        True
        >>> bool((RowTable(table, int8=True)(index) - table[index]).abs().max() < 0.02)
        True
    """

    def __init__(self, table: Tensor, int8: bool) -> None:
        super().__init__()
        table = table.detach().float().clone()
        self.int8 = int8
        if not int8:
            self.register_buffer("table", table)
            return
        low, high = table.amin(-1, keepdim=True), table.amax(-1, keepdim=True)
        scale = ((high - low) / 255).clamp_min(1e-12)
        zero = torch.round(-low / scale).clamp(0, 255)
        self.register_buffer("codes", torch.round(table / scale + zero).clamp(0, 255).to(torch.uint8))
        self.register_buffer("scale", scale)
        self.register_buffer("zero", zero)

    def forward(self, index: Tensor) -> Tensor:
        if not self.int8:
            return self.table[index]
        return (self.codes[index].float() - self.zero[index]) * self.scale[index]


class ExportCodeEmbedding(nn.Module):
    """:class:`~speechkit.tts.mobilespeech.CodeEmbedding` as one gather: codes [1, K, T] -> [1, T, D].

    The K tables [K, V + 1, D] are stacked into [K * (V + 1), D] and layer i's codes offset by
    i * (V + 1), so the graph has one Gather instead of K (the model loops over layers in Python).
    """

    def __init__(self, embedding: CodeEmbedding, int8: bool) -> None:
        super().__init__()
        k, rows, dim = embedding.tables.shape
        self.table = RowTable(embedding.tables.reshape(k * rows, dim), int8)
        self.register_buffer("offsets", torch.arange(k) * rows)
        self.register_buffer("layer_weights", embedding.layer_weights.detach().clone())

    def forward(self, codes: Tensor) -> Tensor:
        vectors = self.table(codes + self.offsets.view(1, -1, 1))  # [1, K, T, D]
        return (vectors * self.layer_weights.view(1, -1, 1, 1)).sum(1)


class TTSEncoderGraph(nn.Module):
    """(phonemes [1, N], prompt_memory [1, P, D]) -> (text [1, N, D], log_durations [1, N])."""

    def __init__(self, model: MobileSpeech) -> None:
        super().__init__()
        self.model = model

    def forward(self, phonemes: Tensor, prompt_memory: Tensor) -> tuple[Tensor, Tensor]:
        text, valid = self.model.encode_text(phonemes)  # valid = phonemes != 0, as in generate
        return text, self.model.predict_log_durations(text, valid, prompt_memory, None)


class TTSPromptEncoderGraph(nn.Module):
    """prompt_codes [1, K, P] -> prompt_memory [1, P, D] (``MobileSpeech.encode_prompt`` without prompt phonemes)."""

    def __init__(self, model: MobileSpeech, int8: bool) -> None:
        super().__init__()
        self.model, self.embedding = model, ExportCodeEmbedding(model.code_embedding, int8)

    def forward(self, prompt_codes: Tensor) -> Tensor:
        x = self.embedding(prompt_codes.clamp(0, self.model.mask_id))
        return self.model.prompt_encoder(x, None)


class TTSDecoderStepGraph(nn.Module):
    """One masked-decoding step: ``MobileSpeech.decoder_logits`` for a batch of one.

    (codes [1, K, T], layer [1], frames [1, T, D], prompt_memory [1, P, D]) -> logits [1, T, V].
    """

    def __init__(self, model: MobileSpeech, int8: bool) -> None:
        super().__init__()
        self.model = model
        self.embedding = ExportCodeEmbedding(model.code_embedding, int8)
        self.heads = RowTable(model.heads, int8)  # [K, V, D]: per-vocabulary-row scales with int8

    def forward(self, codes: Tensor, layer: Tensor, frames: Tensor, prompt_memory: Tensor) -> Tensor:
        m = self.model
        x = frames + self.embedding(codes) + m.target_layer_embedding(layer)[:, None, :]
        h = m.decoder(x, None, prompt_memory, None)  # [1, T, D]
        logits = torch.matmul(h, self.heads(layer).transpose(1, 2))  # [1, T, D] @ [1, D, V]
        return logits + m.head_bias[layer][:, None, :]


# ---- the graphs --------------------------------------------------------------------------------------


def _plans(model: MobileSpeech, int8_tables: bool, frames: int) -> dict[str, _GraphPlan]:
    c = model.config
    k, d, v = c.num_codebooks, c.dim, c.codebook_size
    g = torch.Generator().manual_seed(0)
    phonemes = torch.randint(4, c.num_symbols, (1, max(2, frames // 4)), generator=g)
    memory = torch.randn(1, frames + 3, d, generator=g)
    codes = torch.randint(0, v + 1, (1, k, frames), generator=g)
    memory_spec = TensorSpec("prompt_memory", "float32", (1, "num_prompt_frames", d))
    return {
        "tts_encoder": _GraphPlan(
            TTSEncoderGraph(model),
            (phonemes, memory),
            (TensorSpec("phonemes", "int64", (1, "num_phonemes")), memory_spec),
            (
                TensorSpec("text", "float32", (1, "num_phonemes", d)),
                TensorSpec("log_durations", "float32", (1, "num_phonemes")),
            ),
        ),
        "tts_decoder_step": _GraphPlan(
            TTSDecoderStepGraph(model, int8_tables),
            (codes, torch.tensor([k - 1]), torch.randn(1, frames, d, generator=g), memory),
            (
                TensorSpec("codes", "int64", (1, k, "num_frames")),
                TensorSpec("layer", "int64", (1,)),
                TensorSpec("frames", "float32", (1, "num_frames", d)),
                memory_spec,
            ),
            (TensorSpec("logits", "float32", (1, "num_frames", v)),),
        ),
        "tts_prompt_encoder": _GraphPlan(
            TTSPromptEncoderGraph(model, int8_tables),
            (codes[:, :, : frames - 1].clamp_max(v - 1),),
            (TensorSpec("prompt_codes", "int64", (1, k, "num_prompt_frames")),),
            (memory_spec,),
        ),
    }


def export_tts_graphs(
    model: MobileSpeech,
    out_dir: str | Path,
    int8_tables: bool = False,
    opset: int = 18,
    example_frames: int = 20,
) -> dict[str, GraphSpec]:
    """Export ``tts_encoder``, ``tts_decoder_step`` and ``tts_prompt_encoder`` to ``out_dir/<name>.onnx``.

    Args:
        model: a MobileSpeech model (exported in eval mode, left unchanged).
        out_dir: folder for the graph files (created if missing).
        int8_tables: store the code embedding tables and the output heads as uint8 rows (see
            :class:`RowTable`); the MatMul weights are left to ``ort_quant``.
        opset: ONNX opset (>= 17 for LayerNormalization).
        example_frames: frames of the example inputs traced (every time axis stays dynamic).

    Returns:
        graph name -> :class:`~speechkit_export.onnx_graphs.GraphSpec`.
    """
    if model.config.KIND not in TTS_KINDS:
        raise ConfigError(f"model kind {model.config.KIND!r} has no TTS export (exportable: {TTS_KINDS})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        plans = _plans(model, int8_tables, example_frames)
        return {name: _export_plan(name, plan, out_dir, opset) for name, plan in plans.items()}
    finally:
        model.train(was_training)


def _codec_graphs(codec: nn.Module, out_dir: Path, zero_shot: bool) -> dict[str, GraphSpec]:
    """The codec export's graphs (onnx_graphs), named ``codec_decoder`` (and ``codec_encoder``)."""
    graphs = export_codec_graphs(codec, out_dir)
    names = {"decoder": "codec_decoder", **({"encoder": "codec_encoder"} if zero_shot else {})}
    return {new: dataclasses.replace(graphs[old], file=f"{new}.onnx") for old, new in names.items()}


def resolve_codec(model: MobileSpeech, codec: Any = None) -> nn.Module:
    """The codec model whose tokens ``model`` predicts: ``codec`` (a model, a ``Codec`` or a name) or
    the one the config names, checked against the config (fingerprint, rates, codebooks).

    Raises:
        ConfigError: a codec of other weights, rates or codebook sizes, or of a kind with no decoder export.
    """
    from speechkit.registry import load

    c = model.config
    codec = load(c.codec) if codec is None else load(codec) if isinstance(codec, (str, Path)) else codec
    codec = getattr(codec, "model", codec)
    fingerprint = getattr(codec, "fingerprint", None)
    if c.codec_fingerprint and fingerprint and fingerprint != c.codec_fingerprint:
        raise ConfigError(
            f"the TTS model predicts tokens of {c.codec} weights {c.codec_fingerprint}, the codec has {fingerprint}"
        )
    sizes = tuple(getattr(codec, "codebook_sizes", ()))
    if len(sizes) < c.num_codebooks or any(size != c.codebook_size for size in sizes[: c.num_codebooks]):
        raise ConfigError(
            f"the TTS model needs {c.num_codebooks} codebooks of size {c.codebook_size}; the codec has {sizes}"
        )
    if int(codec.sample_rate) != c.sample_rate or abs(float(codec.frame_rate) - c.frame_rate) > 1e-6:
        raise ConfigError(
            f"codec rates {codec.sample_rate} Hz / {float(codec.frame_rate):g} frames/s differ from the TTS "
            f"model's {c.sample_rate} Hz / {c.frame_rate:g}"
        )
    return codec.eval()


# ---- the bundle --------------------------------------------------------------------------------------


class TTSExportReport(ExportReport):
    """:class:`~speechkit_export.pipeline.ExportReport` of a TTS bundle (parity per graph, no PESQ)."""

    def summary(self) -> str:
        m, q = self.manifest, self.manifest["quantization"]
        tts = m["extra"]["tts"]
        memory = self.sizes.get("in_memory_bytes")
        lines = [
            f"bundle       {self.bundle}",
            f"size         {self.sizes['on_disk_bytes'] / 2**20:.2f} MiB on disk"
            + (f", {memory / 2**20:.2f} MiB of weights in memory" if memory else ""),
            f"model        {m['model_name']} ({m['model_kind']}): {m['token_layout']['num_codebooks']} codec "
            f"layers at {m['frame_rate']:g} Hz, {m['sample_rate']} Hz audio, steps {tts['default_steps']}",
            f"quant        {q['mode']} ({q['bits']}-bit; {q['method'] or 'float'}), graphs quantised: "
            f"{', '.join(q['details'].get('quantized_graphs', [])) or 'none'}",
        ]
        for graph, numbers in self.parity.items():
            text = ", ".join(f"{key} {value:.3g}" for key, value in numbers.items())
            lines.append(f"parity       {graph:<19}{text}")
        lines += [f"note         {note}" for note in self.notes]
        lines.append(f"took         {self.seconds:.1f} s")
        return "\n".join(lines)


def export_tts(
    model: MobileSpeech,
    out_dir: str | Path,
    name: str,
    quant: str = "none",
    codec: Any = None,
    zip: bool = False,
    progress: bool = True,
    zero_shot: bool = True,
    quantize_encoder: bool = True,
) -> TTSExportReport:
    """Export a MobileSpeech model and its codec's graphs to a verified ``tts`` bundle and measure it.

    Args:
        model: the TTS model (never modified).
        out_dir: the bundle folder (replaced if it holds a bundle).
        name: the bundle's ``model_name``.
        quant: ``none`` (float32) or ``int8`` (= ``int8-dynamic``).
        codec: the codec (model, ``Codec`` or name); default: the one the config names.
        zip: also write ``<out_dir>.zip``.
        progress: show a tqdm bar.
        zero_shot: include ``codec_encoder`` and ``tts_prompt_encoder`` (voices from prompt audio).
        quantize_encoder: with int8, quantise the codec encoder too (False keeps its codes the SDK's).

    Returns:
        The report; ``parity`` holds torch-vs-bundle numbers per graph (also in ``manifest.metrics``).
    """
    started = time.perf_counter()
    if quant not in TTS_QUANT_MODES:
        raise ConfigError(f"TTS export supports --quant none or int8, not {quant!r}")
    mode = TTS_QUANT_MODES[quant]
    model = model.eval()
    codec_model = resolve_codec(model, codec)
    notes: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="speechkit-tts-export-") as tmp_name,
        tqdm(total=4, desc=f"export {name} {mode}", disable=not progress, unit="step") as bar,
    ):
        tmp = Path(tmp_name)
        graphs = export_tts_graphs(model, tmp / "float", int8_tables=mode != "none")
        if not zero_shot:
            del graphs["tts_prompt_encoder"]
        graphs.update(_codec_graphs(codec_model, tmp / "codec", zero_shot))
        bar.update()
        details: dict[str, Any] = {"quantized_graphs": [], "zero_shot": zero_shot}
        if mode != "none":
            graphs = _quantize(graphs, tmp / "quant", quantize_encoder, details, notes)
            details["tables"] = "uint8 rows, float32 scale and zero point per row"
        bar.update()
        manifests = {graph: spec.to_manifest() for graph, spec in graphs.items()}
        files: dict[str, Path | bytes] = {spec.file: spec.path for spec in graphs.values()}
        _strip_codec_bases(codec_model, graphs, files, manifests, tmp / "derived")
        voice = _default_voice(model)
        if voice is None:
            notes.append("the model has no default voice: synthesis needs a prompt (zero-shot)")
        else:
            files[VOICE_FILE] = _npz_bytes(voice)
        memory = sum(graph_weight_bytes(spec.path) for spec in graphs.values())
        fields = _manifest(model, codec_model, name, mode, manifests, details, notes, voice is not None)
        probe = write_bundle(tmp / "probe", fields, files)
        parity = measure_parity(model, codec_model, probe)
        bar.update()
        sizes: dict[str, Any] = {"files": {rel: _size(src) for rel, src in files.items()}}
        sizes["on_disk_bytes"] = sum(sizes["files"].values())
        sizes["in_memory_bytes"] = memory
        details.update(on_disk_bytes=sizes["on_disk_bytes"], in_memory_bytes=memory)
        flat = {
            f"{graph}_{key}": value for graph, numbers in parity.items() for key, value in numbers.items()
        }
        fields["metrics"] = {
            **flat,
            "bundle_bytes": float(sizes["on_disk_bytes"]),
            "weights_in_memory_bytes": memory,
        }
        bundle = write_bundle(out_dir, fields, files, zip=zip)
        bar.update()
    from speechkit_rt.bundle import read_manifest

    report = TTSExportReport(bundle, read_manifest(Path(out_dir)), parity, {}, sizes, notes)
    report.seconds = time.perf_counter() - started
    logger.info("exported %s in %.1f s", bundle, report.seconds)
    return report


def _quantize(
    graphs: dict[str, GraphSpec], folder: Path, quantize_encoder: bool, details: dict, notes: list[str]
) -> dict[str, GraphSpec]:
    folder.mkdir()
    out = dict(graphs)
    for graph, spec in graphs.items():
        if graph == "codec_encoder" and not quantize_encoder:
            continue
        dst = folder / spec.file
        try:
            with _quiet_root_logger():
                quantize_graph(spec.path, dst, "int8-dynamic")
        except ConfigError as err:  # nothing large enough to quantise: the graph stays float
            notes.append(f"{graph} left float32: {err}")
            continue
        out[graph] = dataclasses.replace(spec, path=dst)
        details["quantized_graphs"].append(graph)
    return out


def _strip_codec_bases(
    codec: nn.Module, graphs: dict[str, GraphSpec], files: dict, manifests: dict, folder: Path
) -> None:
    """The codec graphs' DFT bases and windows become recipes (derived_initializers), as in the codec export."""
    folder.mkdir()
    recipes = recipes_for(codec)
    for graph in ("codec_decoder", "codec_encoder"):
        if graph in graphs:
            dst = folder / graphs[graph].file
            section = strip_derived(graphs[graph].path, dst, graph, recipes)
            if section is not None:
                files[graphs[graph].file], manifests[graph]["derived"] = dst, section


@torch.no_grad()
def _default_voice(model: MobileSpeech) -> dict[str, np.ndarray] | None:
    if int(model.default_prompt_length) == 0:
        return None
    codes = model.default_prompt()
    memory, _ = model.encode_prompt(codes)
    return {"prompt_memory": memory.float().numpy(), "prompt_codes": codes.long().numpy()}


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # plain arrays: the runtime loads with allow_pickle=False
    return buffer.getvalue()


def _size(source: Path | bytes) -> int:
    return len(source) if isinstance(source, (bytes, bytearray)) else size_on_disk(source)


def _manifest(
    model: MobileSpeech,
    codec: nn.Module,
    name: str,
    mode: str,
    graphs: dict[str, dict],
    details: dict,
    notes: list[str],
    has_voice: bool,
) -> dict[str, Any]:
    c = model.config
    defaults = inspect.signature(MobileSpeech.generate).parameters
    tts = {
        "dim": c.dim,
        "mask_id": model.mask_id,
        "num_symbols": c.num_symbols,
        "symbols_version": c.symbols_version,
        "default_steps": list(c.default_steps),
        "default_temperature": defaults["temperature"].default,
        "default_top_k": defaults["top_k"].default,
        "default_prompt_frames": c.default_prompt_frames,
    }
    if c.num_symbols == len(ALL_SYMBOLS) and c.symbols_version == SYMBOLS_VERSION:
        tts["symbols"] = list(ALL_SYMBOLS)  # id -> symbol, so an app's frontend can map its phonemes
    extra: dict[str, Any] = {
        "hop_length": int(codec.hop_length),
        "exporter": "speechkit_export.tts_graphs",
        "notes": list(notes),
        "tts": tts,
        "codec": {
            "name": str(getattr(codec, "checkpoint_name", c.codec)),
            "kind": codec.config.KIND,
            "fingerprint": str(getattr(codec, "fingerprint", c.codec_fingerprint or "unknown")),
            "num_codebooks": len(codec.codebook_sizes),
        },
    }
    if has_voice:
        extra["default_voice"] = {"file": VOICE_FILE, "num_prompt_frames": int(model.default_prompt_length)}
    return {
        "task": "tts",
        "model_kind": c.KIND,
        "model_name": name,
        "sample_rate": int(c.sample_rate),
        "frame_rate": float(c.frame_rate),
        "token_layout": {
            "num_codebooks": c.num_codebooks,
            "codebook_sizes": [c.codebook_size] * c.num_codebooks,
        },
        "graphs": graphs,
        "quantization": {
            "mode": mode,
            "bits": 32 if mode == "none" else 8,
            "group_size": None,
            "method": None if mode == "none" else "onnxruntime quantize_dynamic + uint8 table rows",
            "details": details,
        },
        "metrics": {},
        "extra": extra,
    }


# ---- parity --------------------------------------------------------------------------------------


def parity_phonemes(model: MobileSpeech) -> np.ndarray:
    """Phoneme ids [N] of :data:`PARITY_TEXT` (random ids for a model with another symbol table)."""
    from speechkit.text import TextFrontend

    if model.config.num_symbols == len(ALL_SYMBOLS):
        return np.array(TextFrontend().phonemize(PARITY_TEXT).ids, dtype=np.int64)
    return np.random.default_rng(0).integers(4, model.config.num_symbols, 30).astype(np.int64)


@torch.no_grad()
def measure_parity(
    model: MobileSpeech, codec: nn.Module, bundle: str | Path, phonemes: np.ndarray | None = None
) -> dict[str, dict[str, float]]:
    """Torch against the bundle (through ``speechkit_rt.tts.TTSRuntime``), per graph.

    ``tts_prompt_encoder`` / ``tts_encoder`` / ``tts_decoder_step``: max |difference| of their outputs
    (the decoder step at a half-masked first layer and at the last layer); ``greedy``: argmax decoding
    of :func:`parity_phonemes` in the runtime against ``generate(temperature=0)`` given the runtime's
    durations (``tokens_equal_fraction``) and the durations against torch's own
    (``durations_equal_fraction``); ``codec_decoder``: SNR and max |error| of the audio decoded from
    torch's tokens.
    """
    from speechkit_export.onnx_graphs import _audio_errors
    from speechkit_rt.tts import TTSRuntime

    c = model.config
    ids = parity_phonemes(model) if phonemes is None else np.asarray(phonemes, dtype=np.int64)
    out: dict[str, dict[str, float]] = {}
    with TTSRuntime.open(bundle, num_threads=1) as runtime:
        if runtime.default_voice is not None:
            prompt = torch.from_numpy(runtime.default_voice.prompt_codes)
        else:
            prompt = torch.randint(0, c.codebook_size, (1, c.num_codebooks, c.default_prompt_frames))
        memory, _ = model.encode_prompt(prompt)
        voice = runtime.voice_from_memory(memory.numpy())
        if runtime.zero_shot:
            ort_memory = runtime.voice_from_codes(prompt.numpy()).prompt_memory
            out["tts_prompt_encoder"] = {"max_abs": _max_abs(ort_memory, memory)}
        phonemes_t = torch.from_numpy(ids)[None]
        text, valid = model.encode_text(phonemes_t)
        log_durations = model.predict_log_durations(
            text, valid, memory, torch.ones(memory.shape[:2], dtype=torch.bool)
        )
        ort_text, ort_log_durations = runtime.encode(ids, voice)
        out["tts_encoder"] = {
            "text_max_abs": _max_abs(ort_text, text),
            "log_durations_max_abs": _max_abs(ort_log_durations, log_durations),
        }
        out["tts_decoder_step"] = {"logits_max_abs": _decoder_step_error(model, runtime, text, memory)}
        torch_durations = model.generate(phonemes_t, prompt, temperature=0.0).durations
        result = runtime.synthesize_codes(ids, voice, temperature=0.0)
        reference = model.generate(
            phonemes_t, prompt, temperature=0.0, durations=torch.from_numpy(result.durations)[None]
        )
        out["greedy"] = {
            "tokens_equal_fraction": float(np.mean(result.codes == reference.codes.numpy())),
            "durations_equal_fraction": float(np.mean(result.durations == torch_durations[0].numpy())),
            "num_frames": float(result.codes.shape[-1]),
        }
        wav = runtime.decode_codes(reference.codes.numpy())
        max_abs, snr = _audio_errors(codec.decode_codes(reference.codes).numpy()[0], wav)
        out["codec_decoder"] = {"snr_db": min(snr, 200.0), "max_abs": max_abs}
    return out


def _decoder_step_error(model: MobileSpeech, runtime: Any, text: Tensor, memory: Tensor) -> float:
    c = model.config
    durations = torch.full((1, text.shape[1]), 2)
    frames = torch.repeat_interleave(text, durations[0], dim=1)
    num_frames = frames.shape[1]
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, c.codebook_size, (1, c.num_codebooks, num_frames), generator=g)
    worst = 0.0
    for layer in sorted({0, c.num_codebooks - 1}):
        inputs = codes.clone()
        inputs[:, layer + 1 :] = model.mask_id
        inputs[:, layer, ::2] = model.mask_id  # half of the target layer still masked
        ones = torch.ones(1, num_frames, dtype=torch.bool)
        layer_t = torch.tensor([layer])
        expected = model.decoder_logits(
            inputs, layer_t, frames, ones, memory, torch.ones(memory.shape[:2], dtype=torch.bool)
        )
        got = runtime.decoder_logits(inputs.numpy(), layer, frames.numpy(), memory.numpy())
        worst = max(worst, _max_abs(got, expected))
    return worst


def _max_abs(ours: np.ndarray, reference: Tensor) -> float:
    return float(np.max(np.abs(np.asarray(ours, dtype=np.float64) - reference.double().numpy())))
