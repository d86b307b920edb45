"""Probe: does RepQuant's LayerNorm reparameterisation help codec-rvq under int8-static (QDQ) quantisation?

Run from the repository root (about a minute, one thread)::

    python -m bench.repquant_probe [--calibration 16] [--test 4] [--max-seconds 5] [--strengths 1.0 0.5]

Exports codec-rvq's encoder and decoder graphs as is and after
:func:`speechkit_export.quant.repquant.reparameterize_layernorm_activations` (calibrated in torch on
the same valid clips), quantises both with onnxruntime int8-static (per-channel int8 weights,
per-tensor MinMax int8 activations, :func:`speechkit_export.ort_quant.quantize_graph`) calibrated on
those clips, and scores every graph pair on held-out test clips against the fp32 torch codec. Prints a
markdown table; writes nothing.
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

try:
    from bench import common
except ModuleNotFoundError:  # run as a file: put the repository on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import common

import speechkit
from speechkit import metrics
from speechkit.audio import load_audio
from speechkit_export.onnx_graphs import GraphSpec, calibration_feeds, check_parity, export_codec_graphs
from speechkit_export.ort_quant import quantize_graph
from speechkit_export.quant.repquant import reparameterize_layernorm_activations

logger = logging.getLogger("bench.repquant_probe")

MODEL = "codec-rvq"
SAMPLE_RATE = 16000
HEAD_NORM = ("decoder.norm",)  # feeds the iSTFT head (log-magnitude and phase)

COLUMNS = [
    common.Column("name", "graphs", align="left"),
    common.Column("decoder_snr_db", "decoder SNR vs torch", "{:.1f} dB"),
    common.Column("first_codebook_equal", "codes = torch (1st)", lambda v: f"{100 * v:.1f}%"),
    common.Column("codes_equal", "codes = torch (all 12)", lambda v: f"{100 * v:.1f}%"),
    common.Column("pesq_wb", "PESQ-WB round trip", "{:.3f}"),
]


def load_clips(split: str, count: int, max_seconds: float) -> list[np.ndarray]:
    """``count`` utterances of a corpus split (round robin over speakers), cropped to ``max_seconds``."""
    utterances = common.load_test_set(split, count)
    clips = [load_audio(u.path, target_sample_rate=SAMPLE_RATE)[0] for u in utterances]
    return [clip[: int(max_seconds * SAMPLE_RATE)].astype(np.float32) for clip in clips]


def quantized_graphs(model: torch.nn.Module, folder: Path, calibration: list[np.ndarray]) -> dict:
    """fp32 and int8-static GraphSpecs of ``model``'s encoder and decoder."""
    fp32 = export_codec_graphs(model, folder / "fp32")
    feeds = calibration_feeds(fp32, calibration, int(model.hop_length))
    int8 = {}
    for name, spec in fp32.items():
        dst = folder / "int8" / spec.file
        quantize_graph(spec.path, dst, "int8-static", calibration=feeds[name])
        int8[name] = GraphSpec(spec.file, spec.inputs, spec.outputs, path=dst)
    return {"fp32": fp32, "int8": int8}


def _session(spec: GraphSpec) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(spec.path), options, providers=["CPUExecutionProvider"])


def score(name: str, reference: torch.nn.Module, graphs: dict[str, GraphSpec], clips: list) -> dict:
    """Mean parity against the torch reference and PESQ-WB of the ONNX encode -> decode round trip."""
    encoder, decoder = _session(graphs["encoder"]), _session(graphs["decoder"])
    hop = int(reference.hop_length)
    parity, pesq = [], []
    for clip in clips:
        parity.append(check_parity(reference, graphs, clip))
        wav = np.pad(clip, (0, (-len(clip)) % hop))[None]
        codes = encoder.run(None, {"wav": wav})[0]
        audio = decoder.run(None, {"codes": codes})[0][0, : len(clip)]
        pesq.append(metrics.pesq_wb(clip, audio, SAMPLE_RATE))
    return {
        "name": name,
        "decoder_snr_db": float(np.mean([p["decoder_snr_db"] for p in parity])),
        "first_codebook_equal": float(np.mean([p["first_codebook_equal_fraction"] for p in parity])),
        "codes_equal": float(np.mean([p["codes_equal_fraction"] for p in parity])),
        "pesq_wb": float(np.nanmean(pesq)),
    }


def torch_row(model: torch.nn.Module, clips: list[np.ndarray]) -> dict[str, Any]:
    hop, pesq = int(model.hop_length), []
    with torch.no_grad():
        for clip in clips:
            wav = torch.from_numpy(np.pad(clip, (0, (-len(clip)) % hop)))[None]
            audio = model.decode_codes(model.encode_codes(wav))[0, : len(clip)].numpy()
            pesq.append(metrics.pesq_wb(clip, audio, SAMPLE_RATE))
    return {"name": "torch fp32 (reference)", "pesq_wb": float(np.nanmean(pesq))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calibration", type=int, default=16, help="valid clips for calibration")
    parser.add_argument("--test", type=int, default=4, help="test clips scored")
    parser.add_argument("--max-seconds", type=float, default=5.0, help="crop every clip to this length")
    parser.add_argument("--percentile", type=float, default=99.99)
    parser.add_argument("--strengths", type=float, nargs="+", default=[1.0, 0.5], help="RepQuant variants")
    args = parser.parse_args(argv)
    common.setup_logging()
    torch.set_num_threads(1)
    model = speechkit.load(MODEL).model.eval()
    calibration = load_clips("valid", args.calibration, args.max_seconds)
    clips = load_clips("test", args.test, args.max_seconds)
    hop = int(model.hop_length)

    calibration_wavs = [torch.from_numpy(np.pad(c, (0, (-len(c)) % hop)))[None] for c in calibration]
    rows, reports = [torch_row(model, clips)], {}
    with tempfile.TemporaryDirectory() as tmp:
        plain = quantized_graphs(model, Path(tmp) / "plain", calibration)
        rows.append(score("fp32 ONNX", model, plain["fp32"], clips))
        rows.append(score("int8-static", model, plain["int8"], clips))
        variants = [(strength, exclude) for strength in args.strengths for exclude in ((), HEAD_NORM)]
        for strength, exclude in variants:
            label = f"RepQuant (strength {strength}{', head norm excluded' if exclude else ''})"
            reparameterized = copy.deepcopy(model)
            reports[label] = reparameterize_layernorm_activations(
                reparameterized,
                calibration_wavs,
                lambda m, wav: m.decode_codes(m.encode_codes(wav)),
                percentile=args.percentile,
                strength=strength,
                exclude=exclude,
            )
            rep = quantized_graphs(reparameterized, Path(tmp) / f"variant-{len(reports)}", calibration)
            if len(reports) == 1:
                rows.append(score(f"fp32 ONNX, {label}", model, rep["fp32"], clips))
            rows.append(score(f"{label} + int8-static", model, rep["int8"], clips))
    report = next(iter(reports.values()))
    spreads = sorted(entry.range_spread for entry in report.reparameterized)
    folded = ", ".join(f"{e.name}->{'/'.join(e.consumers)}" for e in report.reparameterized)
    print(common.markdown_table(rows, COLUMNS))
    print()
    print(
        f"{len(report.reparameterized)} LayerNorms reparameterised "
        f"({folded}); "
        f"skipped: {report.skipped or 'none'}."
    )
    print(
        f"Per-channel range spread (max/min of the {args.percentile}-percentile ranges) before: "
        f"median {np.median(spreads):.1f}x, max {max(spreads):.1f}x; after: 1x at strength 1 (by construction)."
    )
    print(
        f"Calibration: {len(calibration)} valid clips; scored on {len(clips)} test clips (<= {args.max_seconds} s); "
        "decoder SNR = ONNX decoder on torch's codes vs the torch decoder; codes = ONNX encoder vs torch; "
        "PESQ-WB = ONNX encoder -> ONNX decoder against the input."
    )


if __name__ == "__main__":
    main()
