"""One call from a codec checkpoint to a verified, measured bundle: export, quantise, check, write.

:func:`export_model` runs the whole path::

    model ──► graphs (ONNX: onnx_graphs / Core ML: coreml) ──► quantisation ──► parity and quality
          ──► manifest (token layout, graphs, quantisation, metrics) ──► bundle_writer

Quantisation modes (``quant``):

==================  =======================================================================
none                float32 ONNX (Core ML: float16)
int8, int8-dynamic  onnxruntime dynamic int8: uint8 per-channel Conv/MatMul weights (ort_quant)
int8-static         onnxruntime QDQ int8 weights and activations, MinMax-calibrated on audio
w4                  onnxruntime MatMulNBits: 4-bit MatMul weights, blocks of ``group_size``
rtn-wB              round to nearest, B = 2..8 bits, groups of ``group_size`` (quant.rtn)
gptq-wB             GPTQ with Hessians from calibration audio (quant.gptq)
decoupleq-wB        decoupleQ, integer / float parts solved alternately (quant.decoupleq)
palettize4/2        Core ML only: k-means look-up tables of 16 / 4 entries
==================  =======================================================================

ONNX cannot hold 2- or 3-bit weights, so the ``rtn/gptq/decoupleq`` modes ship them packed in
``weights.npz`` and the runtime rebuilds them (:mod:`speechkit_export.weight_blobs`,
:mod:`speechkit_rt.weights`). Core ML supports none / int8 / palettize4 / palettize2.

Scope: by default every graph is quantised, the encoder included. An encoder's rounding errors flip
codes (a flipped code in RVQ stage i changes the residual every later stage quantises), so its tokens
are no longer bit-identical to the torch model's (38-59 % equal on codec-rvq at 4 bits), but the codes
it picks are nearly as good: over 12 modes the round trip's PESQ-WB moved by -0.06 .. +0.05 against
the decoder-only export (mean +0.01, within the noise of 12 utterances), while the bundle shrank 2.6x
at 4 bits (16.7 -> 6.4 MiB: the float32 encoder is half of codec-rvq). ``quantize_encoder=False``
keeps the encoder float32 (float16 in Core ML) for bit-exact tokens. Measured with
``bench/export.py``, see ``export/README.md``.

Example:
    >>> import tempfile
    >>> from speechkit.codec.rvq_codec import RVQCodec, RVQCodecConfig
    >>> config = RVQCodecConfig(n_fft=64, hop_length=16, dim=64, latent_dim=8, num_quantizers=2,
    ...                         codebook_size=8, encoder_blocks=(1, 1), decoder_blocks=(1, 1))
    >>> report = export_model(RVQCodec(config), tempfile.mkdtemp() + "/tiny", quant="rtn-w4",
    ...                       progress=False, corpus_dir="/no/corpus")
    >>> report.manifest["quantization"]["bits"], sorted(report.manifest["graphs"])
    (4, ['decoder', 'encoder'])
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn
from tqdm import tqdm

from speechkit.errors import ConfigError
from speechkit_export import evaluation
from speechkit_export.bundle_writer import size_on_disk, write_bundle
from speechkit_export.derived_initializers import recipes_for
from speechkit_export.graph_files import pack_graph_weights, strip_derived_graphs
from speechkit_export.onnx_graphs import GraphSpec, calibration_feeds, export_codec_graphs
from speechkit_export.ort_quant import quantize_graph
from speechkit_export.speaker_graphs import SPEAKER_GRAPHS
from speechkit_export.weight_blobs import (
    METHODS,
    graph_weight_bytes,
    quantize_codec_weights,
)

logger = logging.getLogger(__name__)

FORMATS = ("onnx", "coreml")
ORT_MODES = {"int8": "int8-dynamic", "int8-dynamic": "int8-dynamic", "int8-static": "int8-static", "w4": "w4"}
WEIGHT_MODES = tuple(f"{method}-w{bits}" for method in METHODS for bits in (4, 3, 2))
ONNX_QUANT_MODES = ("none", *ORT_MODES, *WEIGHT_MODES)
COREML_QUANT_MODES = ("none", "int8", "palettize4", "palettize2")
_WEIGHT_MODE = re.compile(rf"({'|'.join(METHODS)})-w([2-8])")
_ENCODER_SIDE = ("encoder", "global_encoder")


@dataclass(frozen=True)
class QuantMode:
    """A parsed ``quant`` argument.

    Attributes:
        name: the mode as the manifest records it ("int8" becomes "int8-dynamic").
        engine: "none", "onnxruntime" (ort_quant), "weights" (torch-side, packed) or "coreml".
        bits: bits per weight (32 float32, 16 Core ML float16).
        method: the algorithm, e.g. "decoupleq" or "onnxruntime MatMulNBits".
    """

    name: str
    engine: str
    bits: int
    method: str | None


def parse_quant(format: str, quant: str) -> QuantMode:
    """Check a (format, quant) pair and describe it.

    Raises:
        ConfigError: an unknown format or mode, or one the format does not support.

    Example:
        >>> parse_quant("onnx", "decoupleq-w2")
        QuantMode(name='decoupleq-w2', engine='weights', bits=2, method='decoupleq')
        >>> parse_quant("coreml", "gptq-w4")
        Traceback (most recent call last):
        ...
        speechkit.errors.ConfigError: Core ML export supports quant modes none, int8, palettize4, palettize2 (coremltools compression), not 'gptq-w4'
    """
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; choose one of {FORMATS}")
    if format == "coreml":
        if quant not in COREML_QUANT_MODES:
            raise ConfigError(
                f"Core ML export supports quant modes {', '.join(COREML_QUANT_MODES)} (coremltools "
                f"compression), not {quant!r}"
            )
        bits = {"none": 16, "int8": 8, "palettize4": 4, "palettize2": 2}[quant]
        return QuantMode(quant, "coreml", bits, f"coremltools {'fp16' if quant == 'none' else quant}")
    if quant == "none":
        return QuantMode("none", "none", 32, None)
    if quant in ORT_MODES:
        name = ORT_MODES[quant]
        method = {
            "int8-dynamic": "quantize_dynamic",
            "int8-static": "quantize_static QDQ",
            "w4": "MatMulNBits",
        }
        return QuantMode(name, "onnxruntime", 4 if name == "w4" else 8, f"onnxruntime {method[name]}")
    match = _WEIGHT_MODE.fullmatch(quant)
    if match:
        return QuantMode(quant, "weights", int(match.group(2)), match.group(1))
    hint = " (a Core ML mode: pass format='coreml')" if quant.startswith("palettize") else ""
    raise ConfigError(
        f"unknown quant mode {quant!r}{hint}; ONNX modes: {', '.join(ONNX_QUANT_MODES)} "
        "(rtn/gptq/decoupleq take -w2 .. -w8)"
    )


@dataclass
class ExportReport:
    """What :func:`export_model` wrote and measured.

    Attributes:
        bundle: the bundle folder (or .zip).
        manifest: the manifest as written.
        parity: graph name -> its parity numbers against the float32 torch model (empty for Core ML).
        quality: PESQ-WB / STOI of the bundle's round trip and of the torch model's (when measured).
        sizes: ``on_disk_bytes`` (files of the bundle), ``in_memory_bytes`` (weights once loaded;
            None for Core ML), ``zip_bytes`` with ``zip=True``, and ``files`` (name -> bytes).
        notes: caveats (missing corpus, graphs left float, ...).
        seconds: wall time of the export.
    """

    bundle: Path
    manifest: dict[str, Any]
    parity: dict[str, dict[str, float]]
    quality: dict[str, float]
    sizes: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        """A few lines for a terminal: bundle size, per-graph parity, quality, notes."""
        m, q = self.manifest, self.manifest["quantization"]
        layout = m["token_layout"]
        memory = self.sizes.get("in_memory_bytes")
        lines = [
            f"bundle       {self.bundle}",
            f"size         {_mb(self.sizes['on_disk_bytes'])} on disk"
            + (f", {_mb(memory)} of weights in memory" if memory else "")
            + (f", {_mb(self.sizes['zip_bytes'])} zipped" if "zip_bytes" in self.sizes else ""),
            f"model        {m['model_name']} ({m['model_kind']}): {layout['num_codebooks']} codebooks at "
            f"{m['frame_rate']:g} Hz, {m['sample_rate']} Hz audio",
            f"quant        {q['mode']} ({q['bits']}-bit{_group(q)}; {q['method'] or 'float'}), graphs "
            f"quantised: {', '.join(q['details'].get('quantized_graphs', [])) or 'none'}",
        ]
        for graph, numbers in self.parity.items():
            lines.append(f"parity       {graph:<15}{_parity_text(graph, numbers)}")
        if self.quality:
            qa = self.quality
            lines.append(
                f"quality      PESQ-WB {qa.get('pesq_wb', float('nan')):.2f} (torch fp32 "
                f"{qa.get('torch_fp32_pesq_wb', float('nan')):.2f}), STOI {qa.get('stoi', float('nan')):.3f} "
                f"(torch fp32 {qa.get('torch_fp32_stoi', float('nan')):.3f})"
            )
        lines += [f"note         {note}" for note in self.notes]
        lines.append(f"took         {self.seconds:.1f} s")
        return "\n".join(lines)


def _mb(size: int) -> str:
    return f"{size / 2**20:.2f} MiB"


def _group(quantization: dict) -> str:
    return f", groups of {quantization['group_size']}" if quantization.get("group_size") else ""


def _parity_text(graph: str, numbers: dict[str, float]) -> str:
    if graph == "decoder":
        text = f"SNR {numbers['decoder_snr_db']:.1f} dB (min {numbers['decoder_snr_db_min']:.1f}), "
        return text + f"max |error| {numbers['decoder_max_abs']:.2e}"
    key = "global_codes_equal_fraction" if graph == "global_encoder" else "encoder_codes_equal_fraction"
    return f"codes equal to torch {100 * numbers[key]:.2f} %"


def resolve_model(model_or_name: Any) -> tuple[nn.Module, str]:
    """(model in eval mode, bundle name) from a shipped name / checkpoint folder, a task API object
    (``Codec``, ``SpeakerEncoder``: its ``.model``) or a module."""
    if isinstance(model_or_name, (str, Path)):
        from speechkit.checkpoint import load_model, resolve_checkpoint

        model = load_model(resolve_checkpoint(model_or_name))  # the model alone, not its task API
    else:
        model = getattr(model_or_name, "model", model_or_name)
    if not isinstance(model, nn.Module) or not hasattr(model, "config"):
        raise ConfigError(
            f"export_model takes a model name, checkpoint folder, task API object (Codec, SpeakerEncoder) "
            f"or model, got {type(model_or_name)}"
        )
    name = getattr(model, "checkpoint_name", None) or f"{model.config.KIND.replace('_', '-')}-unsaved"
    return model.eval(), str(name)


def check_output_dir(out_dir: Path) -> None:
    """Fail before any work when the bundle cannot be written at ``out_dir`` (a file in the way, no
    permission), naming the path and the reason.

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile() as handle:
        ...     check_output_dir(Path(handle.name) / "bundle")
        Traceback (most recent call last):
        ...
        speechkit.errors.ConfigError: cannot write a bundle to ...
    """
    parent = out_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        if not parent.is_dir():
            raise NotADirectoryError(f"{parent} is not a directory")
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".speechkit-write-test-"):
            pass
    except OSError as err:
        raise ConfigError(f"cannot write a bundle to {out_dir}: {err}") from err
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"cannot write a bundle to {out_dir}: a file of that name exists")


def export_model(
    model_or_name: Any,
    out_dir: str | Path,
    format: str = "onnx",
    quant: str = "none",
    group_size: int = 64,
    calibration_audio: list[np.ndarray | str | Path] | None = None,
    zip: bool = False,
    progress: bool = True,
    quantize_encoder: bool = True,
    corpus_dir: str | Path = "data/speech",
) -> ExportReport:
    """Export a codec to a quantised, verified bundle and measure it (see the module docstring).

    Speaker models (``ecapa_tdnn``, ``msdd_diarizer``) go to
    :func:`speechkit_export.speaker_pipeline.export_speaker`, with the same arguments and bundle format.

    Args:
        model_or_name: a shipped name ("codec-rvq", "ecapa-tdnn"), a checkpoint folder, a ``Codec`` /
            ``SpeakerEncoder`` or the model.
        out_dir: the bundle folder (replaced if it holds a bundle).
        format: "onnx" or "coreml".
        quant: a mode of :data:`ONNX_QUANT_MODES` or :data:`COREML_QUANT_MODES`.
        group_size: weights per scale for rtn/gptq/decoupleq and for w4 (a power of two >= 16 there).
        calibration_audio: clips at the model's rate or audio files; default: the corpus' valid split.
        zip: also write ``<out_dir>.zip``.
        progress: show a tqdm bar.
        quantize_encoder: quantise the encoder side too (default); False keeps it float for
            tokens bit-identical to the torch model's.
        corpus_dir: the speech corpus folder for calibration and parity clips.

    Returns:
        The :class:`ExportReport`.

    Raises:
        ConfigError: an unknown or unsupported mode, format or codec kind, or nothing to quantise.
        CheckpointError: an unknown model name.
    """
    started = time.perf_counter()
    mode = parse_quant(format, quant)
    if not isinstance(group_size, int) or group_size < 1:
        raise ConfigError(f"group_size must be a positive integer, got {group_size!r}")
    if mode.name == "w4" and (group_size < 16 or group_size & (group_size - 1)):
        raise ConfigError(
            f"w4 (MatMulNBits) needs a group_size that is a power of two >= 16, got {group_size}"
        )
    check_output_dir(Path(out_dir))
    model, name = resolve_model(model_or_name)
    if model.config.KIND in SPEAKER_GRAPHS:
        if not quantize_encoder:
            raise ConfigError(
                "--float-encoder (quantize_encoder=False) applies to codecs, not speaker models"
            )
        from speechkit_export.speaker_pipeline import export_speaker  # it imports this module

        report = export_speaker(
            model, name, Path(out_dir), mode, group_size, calibration_audio, corpus_dir, zip, progress
        )
        report.seconds = time.perf_counter() - started
        logger.info("exported %s in %.1f s", report.bundle, report.seconds)
        return report
    if model.config.KIND == "mobilespeech_tts":  # TTS bundles: speechkit_export.tts_graphs
        from speechkit_export.tts_graphs import export_tts

        if format != "onnx":
            raise ConfigError(f"TTS export writes ONNX bundles only, not {format!r}")
        return export_tts(
            model, out_dir, name, quant, zip=zip, progress=progress, quantize_encoder=quantize_encoder
        )
    if model.config.KIND == "ebranchformer_asr":  # ASR bundles: speechkit_export.asr_export
        from speechkit_export.asr_export import export_asr  # it imports this module

        return export_asr(
            model, name, Path(out_dir), mode, group_size, calibration_audio, zip, progress,
            quantize_encoder, corpus_dir,
        )  # fmt: skip
    audio = evaluation.select_audio(int(model.sample_rate), calibration_audio, corpus_dir)
    steps = ["export", "quantise", "measure", "write"]
    with (
        tempfile.TemporaryDirectory(prefix="speechkit-export-") as tmp,
        tqdm(total=len(steps), desc=f"export {name} {mode.name}", disable=not progress, unit="step") as bar,
    ):
        job = _Job(model, name, mode, group_size, quantize_encoder, audio, Path(tmp), bar)
        report = job.run(Path(out_dir), zip)
    report.seconds = time.perf_counter() - started
    logger.info("exported %s in %.1f s", report.bundle, report.seconds)
    return report


@dataclass
class _Job:
    """The state of one export while it runs (kept off the public API)."""

    model: nn.Module
    name: str
    mode: QuantMode
    group_size: int
    quantize_encoder: bool
    audio: evaluation.AudioSets
    tmp: Path
    bar: Any
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def step(self, label: str) -> None:
        self.bar.set_postfix_str(label)

    def run(self, out_dir: Path, zip: bool) -> ExportReport:
        self.notes += self.audio.notes
        if self.mode.engine == "coreml":
            graphs, files, memory = self._coreml()
            parity, quality, metrics = {}, {}, {}
            self.notes.append("parity and quality not measured: Core ML prediction needs macOS/iOS")
        else:
            graphs, files, memory, parity, quality, metrics = self._onnx()
        sizes = {
            "on_disk_bytes": sum(size_on_disk(path) for path in files.values()),
            "in_memory_bytes": memory,
        }
        sizes["files"] = {rel: size_on_disk(path) for rel, path in files.items()}
        fields = self._manifest(graphs, sizes, {**metrics, **_size_metrics(sizes)})
        self.step("write bundle")
        bundle = write_bundle(out_dir, fields, files, zip=zip)
        self.bar.update()
        if zip:
            sizes["zip_bytes"] = bundle.stat().st_size
        return ExportReport(bundle, _read_manifest(out_dir), parity, quality, sizes, self.notes)

    # ---- ONNX --------------------------------------------------------------------------------------

    def _onnx(self) -> tuple:
        self.step("export graphs")
        work, layers = self.model, {}
        if self.mode.engine == "weights":
            self.step(f"{self.mode.method} {self.mode.bits}-bit")
            work = copy.deepcopy(self.model)
            layers = quantize_codec_weights(
                work,
                self.mode.method,
                self.mode.bits,
                self.group_size,
                self.audio.calibration,
                self.quantize_encoder,
            )
            errors = [layer.relative_error for layer in layers.values() if layer.relative_error is not None]
            self.details.update(
                layers=len(layers), mean_relative_output_error=float(np.mean(errors)) if errors else None
            )
        graphs = export_codec_graphs(work, self.tmp / "float")
        self.bar.update()
        if self.mode.engine == "onnxruntime":
            graphs = self._ort_quantize(graphs)
        scope = [g for g in graphs if self.quantize_encoder or g not in _ENCODER_SIDE]
        self.details.setdefault("quantized_graphs", [] if self.mode.engine == "none" else scope)
        manifests = {name: spec.to_manifest() for name, spec in graphs.items()}
        files: dict[str, Path] = {spec.file: spec.path for spec in graphs.values()}
        recipes = recipes_for(self.model)
        if self.mode.engine == "weights":  # graphs become the full graphs as the runtime rebuilds them
            graphs, files, manifests = self._pack(graphs, layers, manifests, scope, recipes)
        files = self._strip_derived(graphs, files, manifests, recipes)
        self.bar.update()
        self.step("parity")
        memory = sum(graph_weight_bytes(spec.path) for spec in graphs.values())
        parity_flat = evaluation.graph_parity(self.model, graphs, self.audio.parity)
        metrics = dict(parity_flat)
        if self.mode.engine == "weights":
            metrics.update(evaluation.graph_parity(work, graphs, self.audio.parity[:1], prefix="export_"))
        quality, extra_metrics = self._measure_bundle(manifests, files, graphs)
        metrics.update(extra_metrics)
        self.bar.update()
        return manifests, files, memory, _split_parity(parity_flat, graphs), quality, metrics

    def _ort_quantize(self, graphs: dict[str, GraphSpec]) -> dict[str, GraphSpec]:
        self.step(self.mode.name)
        scope = [g for g in graphs if self.quantize_encoder or g not in _ENCODER_SIDE]
        feeds = None
        if self.mode.name == "int8-static":
            feeds = calibration_feeds(graphs, self.audio.calibration, int(self.model.hop_length))
        out, reports, done = dict(graphs), {}, []
        (self.tmp / "quant").mkdir()
        for name in scope:
            dst = self.tmp / "quant" / graphs[name].file
            try:
                with _quiet_root_logger():
                    report = quantize_graph(
                        graphs[name].path,
                        dst,
                        self.mode.name,
                        feeds[name] if feeds else None,
                        block_size=self.group_size,
                    )
            except ConfigError as err:  # a graph without weights large enough stays float
                self.notes.append(f"{name} left float32: {err}")
                continue
            out[name] = dataclasses.replace(graphs[name], path=dst)
            reports[name] = {k: v for k, v in report.items() if k not in ("mode", "src_bytes", "dst_bytes")}
            done.append(name)
        if not done:
            raise ConfigError(
                f"{self.mode.name}: no graph of {self.name} has weights to quantise ({self.notes[-1]})"
            )
        self.details.update(quantized_graphs=done, graph_reports=reports)
        return out

    def _strip_derived(
        self, graphs: dict[str, GraphSpec], files: dict[str, Path], manifests: dict[str, dict], recipes: list
    ) -> dict[str, Path]:
        """Replace the DFT bases and windows of every graph file by recipes (derived_initializers)."""
        files, self.details["derived_bytes"] = strip_derived_graphs(
            graphs, files, manifests, recipes, self.tmp
        )
        return files

    def _pack(
        self,
        graphs: dict[str, GraphSpec],
        layers: dict,
        manifests: dict[str, dict],
        scope: list[str],
        recipes: list,
    ) -> tuple[dict[str, GraphSpec], dict[str, Path], dict[str, dict]]:
        """Move the quantised weights out of the graphs into weights.npz (see :func:`pack_graph_weights`)."""
        full, files, missing, details = pack_graph_weights(
            graphs, layers, manifests, scope, recipes, self.tmp
        )
        if missing:
            self.notes.append(
                f"{len(missing)} quantised layers not found in any graph, kept float: {missing[:3]}"
            )
        self.details.update(details)
        return full, files, manifests

    def _measure_bundle(self, manifests: dict, files: dict[str, Path], graphs: dict[str, GraphSpec]) -> tuple:
        """Open the files as a bundle (through the runtime) and measure quality and materialisation."""
        self.step("quality")
        probe = write_bundle(
            self.tmp / "probe", self._manifest(manifests, {"in_memory_bytes": None}, {}), files
        )
        bundle, sessions = evaluation.open_sessions(probe)
        metrics: dict[str, float] = {}
        try:
            hop = int(self.model.hop_length)
            decoded = [
                evaluation.session_round_trip(sessions, manifests, clip, hop)[1] for clip in self.audio.parity
            ]
            rebuilt = self.mode.engine == "weights" or any("derived" in m for m in manifests.values())
            if rebuilt:  # the rebuilt (packed, derived) weights must give the exported graph's output
                full = evaluation.open_graph_files(graphs)
                reference = evaluation.session_round_trip(full, manifests, self.audio.parity[0], hop)[1]
                metrics["materialize_max_abs"] = float(np.max(np.abs(decoded[0] - reference)))
        finally:
            bundle.close()
        sample_rate = int(self.model.sample_rate)
        ours = evaluation.quality(self.audio.parity, decoded, sample_rate)
        torch_audio = [evaluation.torch_round_trip(self.model, clip) for clip in self.audio.parity]
        theirs = evaluation.quality(self.audio.parity, torch_audio, sample_rate)
        quality = {**ours, **{f"torch_fp32_{k}": v for k, v in theirs.items()}}
        if not quality:
            self.notes.append("PESQ/STOI not measured (needs pesq + pystoi and 16 kHz audio)")
        metrics.update(quality)
        metrics["parity_audio_seconds"] = evaluation.seconds(self.audio.parity, sample_rate)
        metrics["calibration_audio_seconds"] = evaluation.seconds(self.audio.calibration, sample_rate)
        return quality, metrics

    # ---- Core ML -----------------------------------------------------------------------------------

    def _coreml(self) -> tuple:
        from speechkit_export.coreml import COREML_GRAPHS, export_coreml

        kind = self.model.config.KIND
        if kind not in COREML_GRAPHS:
            raise ConfigError(
                f"codec kind {kind!r} has no Core ML export (exportable kinds: {sorted(COREML_GRAPHS)})"
            )
        self.step("convert")
        graphs: dict[str, GraphSpec] = {}
        scope = []
        for name in COREML_GRAPHS[kind]:
            quantized = self.quantize_encoder or name not in _ENCODER_SIDE
            compression = self.mode.name if quantized else "none"
            scope += [name] if quantized and compression != "none" else []
            graphs.update(export_coreml(self.model, self.tmp / name, graphs=(name,), compression=compression))
        self.bar.update(2)
        self.details.update(quantized_graphs=scope)
        files = {spec.file: spec.path for spec in graphs.values()}
        self.bar.update()
        return {name: spec.to_manifest() for name, spec in graphs.items()}, files, None

    # ---- manifest ----------------------------------------------------------------------------------

    def _manifest(self, graphs: dict[str, dict], sizes: dict[str, Any], metrics: dict[str, float]) -> dict:
        model, mode = self.model, self.mode
        sizes_only = {k: v for k, v in sizes.items() if k in ("on_disk_bytes", "in_memory_bytes")}
        sizes_per_codebook = list(model.codebook_sizes)
        layout: dict[str, Any] = {
            "num_codebooks": len(sizes_per_codebook),
            "codebook_sizes": sizes_per_codebook,
            "bitrates_bps": [
                float(model.frame_rate) * sum(int(np.ceil(np.log2(s))) for s in sizes_per_codebook[:k])
                for k in range(1, len(sizes_per_codebook) + 1)
            ],
        }
        if getattr(model, "global_codebook_sizes", ()):
            layout["global_codebook_sizes"] = list(model.global_codebook_sizes)
        weight_modes = mode.engine in ("weights", "onnxruntime") and mode.name != "int8-dynamic"
        group = self.group_size if weight_modes and mode.name != "int8-static" else None
        extra = {
            "hop_length": int(model.hop_length),
            "exporter": "speechkit_export.pipeline",
            "audio": self.audio.sources,
            "notes": list(self.notes),
        }
        if getattr(model, "fingerprint", None):
            extra["fingerprint"] = model.fingerprint
        return {
            "task": "codec",
            "model_kind": model.config.KIND,
            "model_name": self.name,
            "sample_rate": int(model.sample_rate),
            "frame_rate": float(model.frame_rate),
            "token_layout": layout,
            "graphs": graphs,
            "quantization": {
                "mode": mode.name,
                "bits": mode.bits,
                "group_size": group,
                "method": mode.method,
                "details": {**self.details, **sizes_only, "encoder_quantized": self.quantize_encoder},
            },
            "metrics": metrics,
            "extra": extra,
        }


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Drop onnxruntime.quantization's advice to pre-process, which it logs on the root logger per graph."""

    def keep(record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _split_parity(flat: dict[str, float], graphs: dict[str, GraphSpec]) -> dict[str, dict[str, float]]:
    """Flat parity numbers grouped by the graph they measure."""
    out: dict[str, dict[str, float]] = {}
    for key, value in flat.items():
        graph = "global_encoder" if key.startswith("global_") else key.split("_", 1)[0]
        graph = "decoder" if key.startswith("partial_decoder") else graph
        if graph in graphs:
            out.setdefault(graph, {})[key] = value
    return out


def _size_metrics(sizes: dict[str, Any]) -> dict[str, float]:
    out = {"bundle_bytes": float(sizes["on_disk_bytes"])}
    if sizes.get("in_memory_bytes") is not None:
        out["weights_in_memory_bytes"] = float(sizes["in_memory_bytes"])
    return out


def _read_manifest(folder: Path) -> dict:
    from speechkit_rt.bundle import read_manifest

    return read_manifest(folder)
