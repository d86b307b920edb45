"""Speaker models to bundles: the ECAPA-TDNN embedder and the MSDD diarization decoder.

:func:`speechkit_export.pipeline.export_model` hands models of a kind in
:data:`~speechkit_export.speaker_graphs.SPEAKER_GRAPHS` to :func:`export_speaker`, which runs the
codec path's steps on the speaker graphs::

    model ──► graph (speaker_graphs) ──► quantisation ──► derived DFT basis ──► parity through the runtime
          ──► manifest (task "speaker", extra.speaker / extra.diarization) ──► bundle_writer

Modes: the embedder takes every ONNX mode (``none``; ``int8`` / ``int8-static`` / ``w4`` with
onnxruntime, which quantise its Conv and MatMul weights; ``rtn/gptq/decoupleq-wB``, torch-side, with
Hessians from ``model.embed`` on the calibration clips). The MSDD decoder (66k parameters, most in
its LSTM, which no mode touches) takes ``none`` and ``int8``.

What the bundle holds besides the graph: ``extra.speaker`` (embedding_dim, the calibrated
``threshold`` of the score and ``cosine_threshold`` of plain cosines, ``asnorm_top_k``, the runtime's
piece lengths) and, when ``asnorm_top_k > 0``,
``cohort.npy``: the model's unit class prototypes (``ECAPATDNN.cohort()``), listed and hashed like
every file; or ``extra.diarization`` (scales, threshold, the speaker model it expects).

Measured (``manifest.metrics``): the bundle's embeddings (``speechkit_rt.SpeakerRuntime.embed`` on
the parity clips) against the float32 torch ``model.embed``: ``embedding_cosine_min`` /
``_mean``, ``embedding_max_abs``, and ``pair_score_max_abs``, how far the cosine score of every
pair of parity clips moves (what verification sees); ``export_*`` the same against the quantised
torch model (torch-side modes); ``materialize_max_abs`` the runtime-rebuilt graph against the
exported file. MSDD: ``probs_max_abs`` and ``decisions_equal_fraction`` on diarization-like inputs
(:func:`~speechkit_export.speaker_graphs.msdd_example_inputs`) with 1, 2 and 4 speakers.

Example:
    >>> import tempfile
    >>> from speechkit.speaker.msdd import MSDD, MSDDConfig
    >>> model = MSDD(MSDDConfig(embedding_dim=8, proj_dim=4, cnn_channels=8, lstm_hidden=8)).eval()
    >>> from speechkit_export.pipeline import export_model
    >>> report = export_model(model, tempfile.mkdtemp() + "/msdd", progress=False)
    >>> report.manifest["task"], report.parity["decoder"]["probs_max_abs"] < 1e-4
    ('speaker', True)
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn
from tqdm import tqdm

from speechkit.errors import ConfigError
from speechkit.speaker.api import MAX_EMBED_SECONDS, MIN_SPEECH_SECONDS
from speechkit_export import evaluation
from speechkit_export.bundle_writer import size_on_disk, write_bundle
from speechkit_export.derived_initializers import recipes_for
from speechkit_export.graph_files import pack_graph_weights, strip_derived_graphs
from speechkit_export.onnx_graphs import GraphSpec
from speechkit_export.ort_quant import quantize_graph
from speechkit_export.pipeline import ExportReport, QuantMode, _quiet_root_logger, _read_manifest
from speechkit_export.speaker_graphs import (
    export_speaker_graphs,
    msdd_example_inputs,
    torch_embedding,
    torch_msdd_probs,
)
from speechkit_export.weight_blobs import MIN_WEIGHT_ELEMENTS, graph_weight_bytes, quantize_layers
from speechkit_rt.speaker import DiarizationDecoderRuntime, SpeakerRuntime, decide_speakers

logger = logging.getLogger(__name__)

COHORT_FILE = "cohort.npy"
MSDD_MODES = ("none", "int8-dynamic")
MSDD_PARITY_CASES = ((1, 12), (2, 40), (4, 97))  # (speakers, steps) of the decoder parity inputs
DIARIZATION_SAMPLE_RATE = 16000  # MSDD takes embeddings; the rate is its speaker model's (ECAPAConfig)


class SpeakerExportReport(ExportReport):
    """:class:`~speechkit_export.pipeline.ExportReport` of a speaker bundle (its own summary)."""

    def summary(self) -> str:
        """A few lines for a terminal: bundle size, the model's settings, parity, notes."""
        m, q = self.manifest, self.manifest["quantization"]
        memory = self.sizes.get("in_memory_bytes")
        settings = m["extra"].get("speaker") or m["extra"].get("diarization")
        lines = [
            f"bundle       {self.bundle}",
            f"size         {_mib(self.sizes['on_disk_bytes'])} on disk"
            + (f", {_mib(memory)} of weights in memory" if memory else "")
            + (f", {_mib(self.sizes['zip_bytes'])} zipped" if "zip_bytes" in self.sizes else ""),
            f"model        {m['model_name']} ({m['model_kind']}), {m['sample_rate']} Hz",
            f"settings     {', '.join(f'{k} {v}' for k, v in settings.items())}",
            f"quant        {q['mode']} ({q['bits']}-bit; {q['method'] or 'float'}), graphs quantised: "
            f"{', '.join(q['details'].get('quantized_graphs', [])) or 'none'}",
        ]
        for graph, numbers in self.parity.items():
            text = ", ".join(f"{k} {v:.6f}" if "cosine" in k else f"{k} {v:.3g}" for k, v in numbers.items())
            lines.append(f"parity       {graph:<10}{text}")
        lines += [f"note         {note}" for note in self.notes]
        lines.append(f"took         {self.seconds:.1f} s")
        return "\n".join(lines)


def _mib(size: int) -> str:
    return f"{size / 2**20:.2f} MiB"


def export_speaker(
    model: nn.Module,
    name: str,
    out_dir: Path,
    mode: QuantMode,
    group_size: int = 64,
    calibration_audio: list | None = None,
    corpus_dir: str | Path = "data/speech",
    zip: bool = False,
    progress: bool = True,
) -> SpeakerExportReport:
    """Export an ``ECAPATDNN`` or ``MSDD`` to a verified, measured bundle (see the module docstring).

    Args:
        model: the model (eval mode; never modified).
        name: the bundle's ``model_name``.
        out_dir: the bundle folder.
        mode: a parsed ONNX quant mode (``pipeline.parse_quant``).
        group_size: weights per scale group of the torch-side modes.
        calibration_audio, corpus_dir: as ``export_model`` (the embedder's parity and calibration clips).
        zip: also write ``<out_dir>.zip``.
        progress: show a tqdm bar.

    Raises:
        ConfigError: a Core ML request, or a mode the model does not take.
    """
    kind = model.config.KIND
    if mode.engine == "coreml":
        raise ConfigError(f"{kind} exports to ONNX only (Core ML conversion covers codecs)")
    if kind == "msdd_diarizer" and mode.name not in MSDD_MODES:
        raise ConfigError(
            f"msdd_diarizer exports with quant none or int8, not {mode.name!r}: its layers are under "
            f"{MIN_WEIGHT_ELEMENTS} weights or LSTMs, which no other mode quantises"
        )
    audio = None
    if kind == "ecapa_tdnn":
        audio = evaluation.select_audio(int(model.config.sample_rate), calibration_audio, corpus_dir)
    with (
        tempfile.TemporaryDirectory(prefix="speechkit-export-") as tmp,
        tqdm(total=3, desc=f"export {name} {mode.name}", disable=not progress, unit="step") as bar,
    ):
        job = _SpeakerJob(model, name, mode, group_size, audio, Path(tmp))
        graphs, files, manifests, memory = job.graphs()
        bar.update()
        metrics = job.measure(graphs, files, manifests)
        bar.update()
        sizes: dict[str, Any] = {"on_disk_bytes": sum(size_on_disk(p) for p in files.values())}
        sizes.update(in_memory_bytes=memory, files={rel: size_on_disk(p) for rel, p in files.items()})
        metrics.update(bundle_bytes=float(sizes["on_disk_bytes"]), weights_in_memory_bytes=float(memory))
        fields = job.manifest(manifests, sizes, metrics)
        bundle = write_bundle(out_dir, fields, files, zip=zip)
        bar.update()
    if zip:
        sizes["zip_bytes"] = bundle.stat().st_size
    parity = {graph: _graph_metrics(metrics) for graph in manifests}
    return SpeakerExportReport(bundle, _read_manifest(out_dir), parity, {}, sizes, job.notes)


def _graph_metrics(metrics: dict[str, float]) -> dict[str, float]:
    keys = ("embedding_cosine_min", "embedding_max_abs", "pair_score_max_abs", "export_embedding_cosine_min",
            "probs_max_abs", "decisions_equal_fraction", "materialize_max_abs")  # fmt: skip
    return {key: metrics[key] for key in keys if key in metrics}


@dataclasses.dataclass
class _SpeakerJob:
    """One speaker export while it runs."""

    model: nn.Module
    name: str
    mode: QuantMode
    group_size: int
    audio: evaluation.AudioSets | None
    tmp: Path
    work: nn.Module | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.model.config.KIND

    # ---- graphs --------------------------------------------------------------------------------

    def graphs(self) -> tuple[dict[str, GraphSpec], dict[str, Path], dict[str, dict], int]:
        """(full graphs, bundle files, manifest graph entries, weight bytes in memory)."""
        if self.audio is not None:
            self.notes += self.audio.notes
        self.work, layers = self.model, {}
        if self.mode.engine == "weights":
            self.work = copy.deepcopy(self.model)
            layers = quantize_layers(
                self.work, self.mode.method, self.mode.bits, self.group_size, self._calibrate,
                lambda _, module: module.weight.numel() < MIN_WEIGHT_ELEMENTS,
            )  # fmt: skip
            errors = [layer.relative_error for layer in layers.values() if layer.relative_error is not None]
            self.details.update(
                layers=len(layers), mean_relative_output_error=float(np.mean(errors)) if errors else None
            )
        graphs = export_speaker_graphs(self.work, self.tmp / "float")
        if self.mode.engine == "onnxruntime":
            graphs = self._ort_quantize(graphs)
        self.details.setdefault("quantized_graphs", [] if self.mode.engine == "none" else list(graphs))
        manifests = {name: spec.to_manifest() for name, spec in graphs.items()}
        files: dict[str, Path] = {spec.file: spec.path for spec in graphs.values()}
        recipes = recipes_for(self.model)
        if self.mode.engine == "weights":
            graphs, files, missing, details = pack_graph_weights(
                graphs, layers, manifests, list(graphs), recipes, self.tmp
            )
            self.details.update(details)
            if missing:
                self.notes.append(f"{len(missing)} quantised layers not found in the graph, kept float")
        files, self.details["derived_bytes"] = strip_derived_graphs(
            graphs, files, manifests, recipes, self.tmp
        )
        if self._cohort_needed():
            np.save(
                self.tmp / COHORT_FILE, self.model.cohort().numpy().astype(np.float32), allow_pickle=False
            )
            files[COHORT_FILE] = self.tmp / COHORT_FILE
        memory = sum(graph_weight_bytes(spec.path) for spec in graphs.values())
        return graphs, files, manifests, memory

    def _calibrate(self, net: nn.Module) -> None:
        """GPTQ / decoupleQ Hessians: the embedder on every calibration clip."""
        for clip in self.audio.calibration:
            net.embed(torch.from_numpy(np.ascontiguousarray(clip, dtype=np.float32))[None])

    def _cohort_needed(self) -> bool:
        return self.kind == "ecapa_tdnn" and self.model.config.asnorm_top_k > 0

    def _ort_quantize(self, graphs: dict[str, GraphSpec]) -> dict[str, GraphSpec]:
        (self.tmp / "quant").mkdir()
        out, reports = dict(graphs), {}
        for name, spec in graphs.items():
            feeds = self._calibration_feeds() if self.mode.name == "int8-static" else None
            dst = self.tmp / "quant" / spec.file
            with _quiet_root_logger():
                report = quantize_graph(spec.path, dst, self.mode.name, feeds, block_size=self.group_size)
            out[name] = dataclasses.replace(spec, path=dst)
            reports[name] = {k: v for k, v in report.items() if k not in ("mode", "src_bytes", "dst_bytes")}
        self.details.update(quantized_graphs=list(out), graph_reports=reports)
        return out

    def _calibration_feeds(self) -> list[dict[str, np.ndarray]]:
        return [
            {"wav": np.ascontiguousarray(clip, dtype=np.float32)[None]} for clip in self.audio.calibration
        ]

    # ---- parity through the runtime ---------------------------------------------------------------

    def measure(
        self, graphs: dict[str, GraphSpec], files: dict[str, Path], manifests: dict
    ) -> dict[str, float]:
        """Open the files as a bundle through ``speechkit_rt`` and compare it with the torch model."""
        probe = write_bundle(self.tmp / "probe", self.manifest(manifests, {}, {}), files)
        full = evaluation.open_graph_files(graphs)  # the exported files, weights inline
        if self.kind == "ecapa_tdnn":
            with SpeakerRuntime.open(probe, num_threads=1) as runtime:
                return self._embedder_metrics(runtime, full["embedder"])
        with DiarizationDecoderRuntime.open(probe, num_threads=1) as runtime:
            return self._decoder_metrics(runtime, full["decoder"])

    def _embedder_metrics(self, runtime: SpeakerRuntime, full: ort.InferenceSession) -> dict[str, float]:
        rate, clips = runtime.sample_rate, self.audio.parity
        ours = [runtime.embed(clip, rate) for clip in clips]
        metrics = _embedding_errors([torch_embedding(self.model, c) for c in clips], ours, "")
        if self.work is not self.model:  # torch-side modes: the export against the quantised model
            metrics.update(_embedding_errors([torch_embedding(self.work, c) for c in clips], ours, "export_"))
        exported = full.run(None, {"wav": clips[0][None]})[0][0]
        metrics["materialize_max_abs"] = float(np.max(np.abs(exported - ours[0])))
        metrics["parity_audio_seconds"] = evaluation.seconds(clips, rate)
        metrics["calibration_audio_seconds"] = evaluation.seconds(self.audio.calibration, rate)
        return metrics

    def _decoder_metrics(
        self, runtime: DiarizationDecoderRuntime, full: ort.InferenceSession
    ) -> dict[str, float]:
        config = self.model.config
        max_abs, equal, total, rebuilt = 0.0, 0, 0, 0.0
        for seed, (speakers, steps) in enumerate(MSDD_PARITY_CASES):
            e, c = msdd_example_inputs(config.num_scales, config.embedding_dim, speakers, steps, seed=seed)
            reference, ours = torch_msdd_probs(self.model, e, c), runtime.decode(e, c)
            max_abs = max(max_abs, float(np.max(np.abs(reference - ours))))
            same = decide_speakers(reference, config.threshold) == runtime.decide(ours)
            equal, total = equal + int(same.all(axis=1).sum()), total + steps
            exported = full.run(None, {"embeddings": e[None], "centroids": c[None]})[0][0]
            rebuilt = max(rebuilt, float(np.max(np.abs(exported - ours))))
        return {
            "probs_max_abs": max_abs,
            "decisions_equal_fraction": equal / total,
            "materialize_max_abs": rebuilt,
        }

    # ---- manifest -------------------------------------------------------------------------------

    def manifest(self, graphs: dict[str, dict], sizes: dict[str, Any], metrics: dict[str, float]) -> dict:
        config, mode = self.model.config, self.mode
        if self.kind == "ecapa_tdnn":
            sample_rate, frame_rate = int(config.sample_rate), config.sample_rate / config.hop_length
            section = ("speaker", {
                "embedding_dim": int(config.embedding_dim), "threshold": float(config.threshold),
                "cosine_threshold": float(config.cosine_threshold),
                "asnorm_top_k": int(config.asnorm_top_k),
                "cohort_file": COHORT_FILE if self._cohort_needed() else None,
                "min_speech_seconds": MIN_SPEECH_SECONDS, "max_embed_seconds": MAX_EMBED_SECONDS,
                "n_fft": int(config.n_fft), "hop_length": int(config.hop_length),
            })  # fmt: skip
        else:
            sample_rate, frame_rate = DIARIZATION_SAMPLE_RATE, 1.0 / config.shifts[-1]
            section = ("diarization", {
                "embedding_dim": int(config.embedding_dim), "num_scales": config.num_scales,
                "windows": list(config.windows), "shifts": list(config.shifts),
                "threshold": float(config.threshold), "speaker_model": config.speaker_model,
                "max_overlap_speakers": 2,
            })  # fmt: skip
        group = self.group_size if mode.engine == "weights" or mode.name == "w4" else None
        extra = {
            section[0]: section[1],
            "exporter": "speechkit_export.speaker_pipeline",
            "notes": list(self.notes),
        }
        if self.audio is not None:
            extra["audio"] = self.audio.sources
        if getattr(self.model, "fingerprint", None):
            extra["fingerprint"] = self.model.fingerprint
        sizes_only = {k: v for k, v in sizes.items() if k in ("on_disk_bytes", "in_memory_bytes")}
        return {
            "task": "speaker",
            "model_kind": self.kind,
            "model_name": self.name,
            "sample_rate": sample_rate,
            "frame_rate": float(frame_rate),
            "token_layout": {"num_codebooks": 0, "codebook_sizes": []},
            "graphs": graphs,
            "quantization": {
                "mode": mode.name,
                "bits": mode.bits,
                "group_size": group,
                "method": mode.method,
                "details": {**self.details, **sizes_only},
            },  # fmt: skip
            "metrics": metrics,
            "extra": extra,
        }


def _embedding_errors(reference: list[np.ndarray], ours: list[np.ndarray], prefix: str) -> dict[str, float]:
    """Cosine and max |difference| per clip, and how much the score of every pair of clips moves."""
    cosines = [float(r @ o / (np.linalg.norm(r) * np.linalg.norm(o))) for r, o in zip(reference, ours)]
    out = {
        "embedding_cosine_min": min(cosines),
        "embedding_cosine_mean": float(np.mean(cosines)),
        "embedding_max_abs": max(float(np.max(np.abs(r - o))) for r, o in zip(reference, ours)),
    }
    pairs = list(itertools.combinations(range(len(ours)), 2))
    if pairs:
        out["pair_score_max_abs"] = max(
            abs(float(reference[i] @ reference[j]) - float(ours[i] @ ours[j])) for i, j in pairs
        )
    return {prefix + key: value for key, value in out.items()}
