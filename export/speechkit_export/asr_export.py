"""The ASR side of :func:`speechkit_export.pipeline.export_model`: an E-Branchformer checkpoint to a bundle.

::

    model ──► graphs (asr_graphs: encoder, decoder_step) ──► quantisation ──► parity (torch vs ONNX)
          ──► runtime check (speechkit_rt.asr on the bundle's own files) ──► manifest ──► bundle_writer

The quantisation modes are the codec's (``pipeline.parse_quant``) minus ``int8-static`` and Core ML:
``none``, ``int8`` (onnxruntime dynamic int8 of Conv / MatMul weights), ``w4`` (MatMulNBits) and
the torch-side ``rtn/gptq/decoupleq-wB`` packed into ``weights.npz``. For the torch-side modes,
every Linear / Conv1d of >= 4096 weights is quantised except the depthwise convs (kept float16:
31 taps per channel leave a 4- or 2-bit grid nothing to average over); GPTQ / decoupleQ Hessians
come from the calibration clips, the decoder teacher-forced on each clip's own greedy CTC
transcript (so no reference text is needed). ``quantize_encoder=False`` keeps the encoder graph
float32. The STFT basis of the front-end is a derived initializer (rebuilt at load from its recipe).

The bundle holds ``encoder.onnx``, ``decoder_step.onnx``, ``vocabulary.json`` (the character table,
hash-checked like every file) and, for the packed modes, ``weights.npz``. ``manifest.metrics``:
``encoder_ctc_max_abs`` / ``encoder_memory_max_abs`` (max over the parity clips of the graph
against ``model.encode``), ``encoder_greedy_equal_fraction`` (clips whose greedy CTC transcript is
the torch one), ``decoder_step_max_abs`` (and ``_intermediate_``; against the KV-cached
``decoder.step`` on the torch memory), the same prefixed ``export_`` against the quantised torch
model (torch-side modes), ``runtime_greedy_equal_fraction`` / ``runtime_greedy_cer`` (the bundle
opened by ``speechkit_rt.asr.ASRRuntime`` against ``SpeechRecognizer`` greedy CTC of the float
model) and ``materialize_max_abs``.

Example:
    >>> import tempfile
    >>> from speechkit.asr.model import ASRConfig, EBranchformerASR
    >>> from speechkit_export.pipeline import export_model
    >>> report = export_model(EBranchformerASR(ASRConfig.tiny()), tempfile.mkdtemp() + "/asr",
    ...                       progress=False, corpus_dir="/no/corpus")
    >>> report.manifest["task"], sorted(report.manifest["graphs"]), report.metrics_ok()
    ('asr', ['decoder_step', 'encoder'], True)
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from speechkit.asr.api import SpeechRecognizer
from speechkit.asr.decoding import DecodingOptions
from speechkit.asr.model import EBranchformerASR
from speechkit.asr.scoring import character_error_rate
from speechkit.decoders.ctc import ctc_greedy
from speechkit.errors import ConfigError
from speechkit_export import evaluation
from speechkit_export.asr_graphs import ASR_GRAPHS, check_asr_parity, export_asr_graphs
from speechkit_export.bundle_writer import write_bundle
from speechkit_export.derived_initializers import recipes_for
from speechkit_export.onnx_graphs import GraphSpec
from speechkit_export.pipeline import ExportReport, QuantMode, _group, _Job, _mb
from speechkit_export.quant import LayerQuantization
from speechkit_export.quant.calibration import supports
from speechkit_export.weight_blobs import MIN_WEIGHT_ELEMENTS, graph_weight_bytes, quantize_layers

logger = logging.getLogger(__name__)

VOCABULARY_FILE = "vocabulary.json"
# Measured on the tiny random model (tests/export/test_asr_export.py): fp32 graphs within 3e-6 of
# torch; above this the export notes (and logs) that the float graphs disagree.
FP32_TOLERANCE = 1e-3


def quantize_asr_weights(
    model: EBranchformerASR,
    method: str,
    bits: int,
    group_size: int | None,
    clips: list[np.ndarray],
    quantize_encoder: bool = True,
    min_weight_elements: int = MIN_WEIGHT_ELEMENTS,
) -> dict[str, LayerQuantization]:
    """Quantise an ASR model's Linear / Conv1d weights in place (float16 scale / zero) and return them.

    Args:
        model: the model (modified: its weights become the dequantised ones).
        method: "rtn", "gptq" or "decoupleq".
        bits: bits per code, 2..8.
        group_size: columns per group (None: one group per output row).
        clips: calibration audio, float32 [T] at the model's rate (>= 0.1 s each).
        quantize_encoder: also quantise the encoder side (front-end, encoder, CTC head).
        min_weight_elements: smaller weights stay float.

    Returns:
        layer name -> LayerQuantization with the float16-rounded QuantizedWeight.

    Raises:
        ConfigError: no layer left to quantise.
    """

    def skip(name: str, module: nn.Module) -> bool:
        depthwise = isinstance(module, nn.Conv1d) and module.groups > 1
        encoder_side = not name.startswith("decoder.")
        return (
            depthwise
            or module.weight.numel() < min_weight_elements
            or (encoder_side and not quantize_encoder)
        )

    if not any(supports(m) and not skip(n, m) for n, m in model.named_modules()):
        raise ConfigError(
            f"{model.config.KIND}: no Linear/Conv1d weight of >= {min_weight_elements} values to quantise"
        )
    vocab = model.vocabulary
    batches = []
    with torch.no_grad():
        for clip in clips:
            wav = torch.from_numpy(np.asarray(clip, dtype=np.float32))[None]
            lp = model.ctc_log_probs(model.encode(wav)[0])[0].numpy()
            tokens = [vocab.sos_eos_id, *ctc_greedy(lp, vocab.blank_id).tokens]
            batches.append((wav, torch.tensor([tokens])))

    def run(net: EBranchformerASR) -> None:
        for wav, tokens in batches:
            encoded, _ = net.encode(wav)
            net.ctc_log_probs(encoded)
            net.decoder(tokens, None, encoded, None)  # teacher-forced on its own greedy transcript

    return quantize_layers(model, method, bits, group_size, run if batches else None, skip)


def vocabulary_json(model: EBranchformerASR) -> bytes:
    """``vocabulary.json``: the character table and its special ids, as ``speechkit_rt.asr`` reads it.

    Example:
        >>> from speechkit.asr.model import ASRConfig
        >>> table = json.loads(vocabulary_json(EBranchformerASR(ASRConfig.tiny())))
        >>> table["symbols"][:4], table["special_ids"], table["space_id"]
        (['<blank>', '<unk>', '<sos/eos>', ' '], [0, 1, 2], 3)
    """
    vocab = model.vocabulary
    table = {
        "version": vocab.version,
        "normalizer_version": model.config.normalizer_version,
        "symbols": list(vocab.symbols),
        "special_ids": [vocab.blank_id, vocab.unk_id, vocab.sos_eos_id],
        "blank_id": vocab.blank_id,
        "sos_eos_id": vocab.sos_eos_id,
        "space_id": vocab.space_id,
    }
    return (json.dumps(table, indent=1) + "\n").encode("utf-8")


@dataclass
class ASRExportReport(ExportReport):
    """:class:`~speechkit_export.pipeline.ExportReport` of an ASR bundle (its own summary)."""

    def summary(self) -> str:
        """A few lines for a terminal: size, parity per graph, the runtime check, notes."""
        m, q, metrics = self.manifest, self.manifest["quantization"], self.manifest["metrics"]
        memory = self.sizes.get("in_memory_bytes")
        clips = int(metrics.get("parity_clips", 0))
        lines = [
            f"bundle       {self.bundle}",
            f"size         {_mb(self.sizes['on_disk_bytes'])} on disk"
            + (f", {_mb(memory)} of weights in memory" if memory else "")
            + (f", {_mb(self.sizes['zip_bytes'])} zipped" if "zip_bytes" in self.sizes else ""),
            f"model        {m['model_name']} ({m['model_kind']}): {m['token_layout']['vocab_size']} characters, "
            f"{m['frame_rate']:g} frames/s, {m['sample_rate']} Hz audio",
            f"quant        {q['mode']} ({q['bits']}-bit{_group(q)}; {q['method'] or 'float'}), graphs "
            f"quantised: {', '.join(q['details'].get('quantized_graphs', [])) or 'none'}",
            f"parity       encoder        CTC log-probs max |error| {metrics['encoder_ctc_max_abs']:.2e}, greedy "
            f"transcripts equal on {round(metrics['encoder_greedy_equal_fraction'] * clips)}/{clips} clips",
            f"parity       decoder_step   next-token log-probs max |error| {metrics['decoder_step_max_abs']:.2e}",
            f"runtime      greedy transcripts equal to the SDK's on "
            f"{round(metrics['runtime_greedy_equal_fraction'] * clips)}/{clips} clips "
            f"(CER {100 * metrics['runtime_greedy_cer']:.2f} %)",
        ]
        lines += [f"note         {note}" for note in self.notes]
        lines.append(f"took         {self.seconds:.1f} s")
        return "\n".join(lines)

    def metrics_ok(self, tolerance: float = FP32_TOLERANCE) -> bool:
        """Whether the graphs match the torch model they were exported from within ``tolerance``
        (the quantised torch model for the packed modes; the float one otherwise, so only fp32)."""
        metrics = self.manifest["metrics"]
        prefix = "export_" if "export_encoder_ctc_max_abs" in metrics else ""
        if not prefix and self.manifest["quantization"]["mode"] != "none":
            return True
        keys = [f"{prefix}encoder_ctc_max_abs", f"{prefix}decoder_step_max_abs"]
        return all(metrics[key] < tolerance for key in keys)


def export_asr(
    model: EBranchformerASR,
    name: str,
    out_dir: str | Path,
    mode: QuantMode,
    group_size: int = 64,
    calibration_audio: list | None = None,
    zip: bool = False,
    progress: bool = True,
    quantize_encoder: bool = True,
    corpus_dir: str | Path = "data/speech",
) -> ASRExportReport:
    """Export an ASR model to a verified bundle and measure it (called by ``pipeline.export_model``).

    Args: as :func:`speechkit_export.pipeline.export_model`, with the mode already parsed.

    Raises:
        ConfigError: Core ML or int8-static (not supported for ASR), or nothing to quantise.
    """
    started = time.perf_counter()
    if mode.engine == "coreml" or mode.name == "int8-static":
        raise ConfigError(
            f"ASR export supports ONNX with quant none, int8, w4, rtn/gptq/decoupleq-wB; not {mode.name!r}"
            + (" in Core ML" if mode.engine == "coreml" else "")
        )
    audio = evaluation.select_audio(int(model.sample_rate), calibration_audio, corpus_dir)
    steps = ["export", "quantise", "measure", "write"]
    with (
        tempfile.TemporaryDirectory(prefix="speechkit-export-") as tmp,
        tqdm(total=len(steps), desc=f"export {name} {mode.name}", disable=not progress, unit="step") as bar,
    ):
        job = _ASRJob(model, name, mode, group_size, quantize_encoder, audio, Path(tmp), bar)
        report = job.run(Path(out_dir), zip)
    report = ASRExportReport(**{f.name: getattr(report, f.name) for f in fields(report)})
    report.seconds = time.perf_counter() - started
    logger.info("exported %s in %.1f s", report.bundle, report.seconds)
    return report


class _ASRJob(_Job):
    """``pipeline._Job`` with the ASR graphs, parity, runtime check and manifest (quantisation,
    packing and derived initializers are the codec's)."""

    def _onnx(self) -> tuple:
        self.step("export graphs")
        work, layers = self.model, {}
        if self.mode.engine == "weights":
            self.step(f"{self.mode.method} {self.mode.bits}-bit")
            work = copy.deepcopy(self.model)
            layers = quantize_asr_weights(work, self.mode.method, self.mode.bits, self.group_size,
                                          self.audio.calibration, self.quantize_encoder)  # fmt: skip
            errors = [layer.relative_error for layer in layers.values() if layer.relative_error is not None]
            self.details.update(
                layers=len(layers), mean_relative_output_error=float(np.mean(errors)) if errors else None
            )
        graphs = export_asr_graphs(work, self.tmp / "float")
        self.bar.update()
        if self.mode.engine == "onnxruntime":
            graphs = self._ort_quantize(graphs)
        scope = [g for g in graphs if self.quantize_encoder or g != "encoder"]
        self.details.setdefault("quantized_graphs", [] if self.mode.engine == "none" else scope)
        manifests = {graph: spec.to_manifest() for graph, spec in graphs.items()}
        files: dict[str, Path] = {spec.file: spec.path for spec in graphs.values()}
        recipes = recipes_for(self.model)
        if self.mode.engine == "weights":
            graphs, files, manifests = self._pack(graphs, layers, manifests, scope, recipes)
        files = self._strip_derived(graphs, files, manifests, recipes)
        files[VOCABULARY_FILE] = self.tmp / VOCABULARY_FILE
        files[VOCABULARY_FILE].write_bytes(vocabulary_json(self.model))
        self.bar.update()
        self.step("parity")
        memory = sum(graph_weight_bytes(spec.path) for spec in graphs.values())
        metrics = _parity(self.model, graphs, self.audio.parity)
        if self.mode.engine == "weights":
            metrics.update(_parity(work, graphs, self.audio.parity[:1], prefix="export_"))
        worst = max(metrics["encoder_ctc_max_abs"], metrics["decoder_step_max_abs"])
        if self.mode.name == "none" and worst > FP32_TOLERANCE:
            self.notes.append(
                f"float32 graphs differ from torch by {worst:.2e} (> {FP32_TOLERANCE}): check the export"
            )
            logger.warning("%s", self.notes[-1])
        metrics.update(self._measure_bundle(manifests, files, graphs))
        self.bar.update()
        parity = {graph: {k: v for k, v in metrics.items() if k.startswith(graph)} for graph in ASR_GRAPHS}
        return manifests, files, memory, parity, {}, metrics

    def _measure_bundle(self, manifests: dict, files: dict, graphs: dict[str, GraphSpec]) -> dict[str, float]:
        """Open the files as a bundle through ``speechkit_rt.asr`` and compare its greedy transcripts
        with the SDK's (float model), and its rebuilt encoder with the exported graph file."""
        from speechkit_rt.asr import ASRRuntime

        self.step("runtime check")
        probe = write_bundle(
            self.tmp / "probe", self._manifest(manifests, {"in_memory_bytes": None}, {}), files
        )
        sdk = SpeechRecognizer(self.model, DecodingOptions(method="ctc_greedy"))
        rate = int(self.model.sample_rate)
        with ASRRuntime.open(probe, num_threads=1) as runtime:
            ours = [runtime.transcribe(clip, rate).text for clip in self.audio.parity]
            clip = self.audio.parity[0][None]
            rebuilt = runtime.session("encoder").run(None, {"wav": clip})[0]
        theirs = [sdk.transcribe(clip, rate).text for clip in self.audio.parity]
        reference = evaluation.open_graph_files({"encoder": graphs["encoder"]})["encoder"].run(
            None, {"wav": clip}
        )[0]
        return {
            "runtime_greedy_equal_fraction": float(np.mean([a == b for a, b in zip(ours, theirs)])),
            "runtime_greedy_cer": float(character_error_rate(theirs, ours)),
            "materialize_max_abs": float(np.max(np.abs(rebuilt - reference))),
            "parity_clips": float(len(self.audio.parity)),
            "parity_audio_seconds": evaluation.seconds(self.audio.parity, rate),
            "calibration_audio_seconds": evaluation.seconds(self.audio.calibration, rate),
        }

    def _manifest(self, graphs: dict[str, dict], sizes: dict[str, Any], metrics: dict[str, float]) -> dict:
        model, mode = self.model, self.mode
        c = model.config
        shift = int(round(model.frame_shift_seconds * c.sample_rate))
        sizes_only = {k: v for k, v in sizes.items() if k in ("on_disk_bytes", "in_memory_bytes")}
        group = self.group_size if mode.engine == "weights" or mode.name == "w4" else None
        return {
            "task": "asr",
            "model_kind": c.KIND,
            "model_name": self.name,
            "sample_rate": int(c.sample_rate),
            "frame_rate": c.sample_rate / shift,
            "token_layout": {"num_codebooks": 0, "codebook_sizes": [], "vocab_size": int(c.vocab_size)},
            "graphs": graphs,
            "quantization": {
                "mode": mode.name,
                "bits": mode.bits,
                "group_size": group,
                "method": mode.method,
                "details": {**self.details, **sizes_only, "encoder_quantized": self.quantize_encoder},
            },
            "metrics": metrics,
            "extra": {
                "exporter": "speechkit_export.asr_export",
                "vocabulary_file": VOCABULARY_FILE,
                "frame_shift_samples": shift,
                "decoder_intermediate_layers": list(model.decoder.intermediate_layers),
                "audio": self.audio.sources,
                "notes": list(self.notes),
            },
        }


def _parity(
    model: EBranchformerASR, graphs: dict[str, GraphSpec], clips: list[np.ndarray], prefix: str = ""
) -> dict[str, float]:
    """:func:`check_asr_parity` over clips: max errors, mean agreement, keys named by graph."""
    sessions = evaluation.open_graph_files(graphs)
    reports = [check_asr_parity(model, graphs, clip, sessions) for clip in clips]
    out = {
        f"{prefix}encoder_ctc_max_abs": max(r["ctc_max_abs"] for r in reports),
        f"{prefix}encoder_memory_max_abs": max(r["memory_max_abs"] for r in reports),
        f"{prefix}encoder_frame_argmax_equal_fraction": float(
            np.mean([r["frame_argmax_equal_fraction"] for r in reports])
        ),
        f"{prefix}encoder_greedy_equal_fraction": float(np.mean([r["greedy_equal"] for r in reports])),
        f"{prefix}decoder_step_max_abs": max(r["decoder_step_max_abs"] for r in reports),
    }
    if "decoder_step_intermediate_max_abs" in reports[0]:
        out[f"{prefix}decoder_step_intermediate_max_abs"] = max(
            r["decoder_step_intermediate_max_abs"] for r in reports
        )
    return out
