"""Export benchmark: codec-rvq bundles in every quantisation mode, size against quality, speed and memory.

Run from the repository root::

    python -m bench.export                  # 12 test utterances, every mode
    python -m bench.export --quick          # 2 utterances, 6 ONNX modes and Core ML int8: a smoke run
    python -m bench.export --modes none rtn-w4 decoupleq-w2 --with-float-encoder

Each ONNX row is a bundle written by :func:`speechkit_export.pipeline.export_model` (calibrated on
the corpus' valid split) and run through the runtime (``speechkit_rt.weights.materialize``, one
onnxruntime thread) on held-out test utterances (the bundled sample when the corpus is missing).
Core ML rows are converted and measured for size only (Core ML runs on macOS/iOS). Every graph is
quantised, as ``export_model`` does by default; ``--with-float-encoder`` adds each ONNX quant mode
with the encoder left float32 (rows marked "dec only"): the measurement behind that default.

Prints one markdown table with notes, a table of where each bundle's bytes go
(``speechkit_export.size_breakdown``), and writes ``bench/results/export.json`` and
``export_size_quality.png``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

try:
    from bench import common
except ModuleNotFoundError:  # run as a file (python bench/export.py): put the repository on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import common

import speechkit
from speechkit import metrics
from speechkit.assets import sample_speech_path
from speechkit.audio import load_audio
from speechkit.checkpoint import resolve_checkpoint
from speechkit.errors import DataError
from speechkit_export import evaluation
from speechkit_export.pipeline import export_model
from speechkit_export.size_breakdown import CATEGORIES, bundle_size_breakdown

logger = logging.getLogger("bench.export")

MODEL = "codec-rvq"
SAMPLE_RATE = 16000
ONNX_MODES = (
    "none", "int8-dynamic", "int8-static", "w4",
    "rtn-w4", "rtn-w3", "rtn-w2", "gptq-w4", "gptq-w3", "gptq-w2", "decoupleq-w4", "decoupleq-w3", "decoupleq-w2",
)  # fmt: skip
COREML_MODES = ("none", "int8", "palettize4", "palettize2")
QUICK_MODES = ("none", "int8-dynamic", "w4", "rtn-w4", "gptq-w3", "decoupleq-w2")
QUICK_COREML_MODES = ("int8",)
DEFAULT_UTTERANCES = 12
QUICK_UTTERANCES = 2
MEMORY_CLIP_SECONDS = 10.0

NOTES = [
    "Rows: fp32 = the float32 ONNX export; int8-dynamic / int8-static / w4 = onnxruntime quantisation "
    "(ort_quant); rtn/gptq/decoupleq-wB = B-bit weights in groups of 64, packed in weights.npz and rebuilt "
    "by the runtime; coreml = ML Program (fp16) and its coremltools compressions (size only). Encoder and "
    "decoder quantised, except rows marked 'dec only' (encoder float32).",
    "size = every file of the bundle (manifest excluded); in-memory = float bytes of the graphs' weights "
    "once loaded (packed weights are rebuilt as float32), before onnxruntime's own pre-packing.",
    "PESQ-WB / STOI: encode + decode through the bundle's onnxruntime sessions, all 12 codebooks (6 kbit/s), "
    "scored against the input (no delay removal: the codec is zero-delay). torch fp32 = the checkpoint in "
    "torch, the reference.",
    "decoder SNR: the bundle's decoder against the float32 torch decoder on the same (torch) codes, so it "
    "measures the decoder's quantisation alone; low values can still sound fine (phase differences).",
    "x real time = audio seconds / wall seconds of encode + decode with one onnxruntime thread "
    "(intra_op_num_threads=1) on a shared 2-core machine: compare rows, not absolute numbers.",
    "peak mem = peak RSS (VmHWM) of a fresh interpreter that opens the bundle, builds both sessions and codes "
    "a 10 s clip, minus that of one with the same imports only.",
]

COLUMNS = [
    common.Column("name", "mode", align="left"),
    common.Column("format", "format", align="left"),
    common.Column("size_bytes", "size", lambda n: f"{n / 2**20:.2f} MiB"),
    common.Column("in_memory_bytes", "in-memory", lambda n: f"{n / 2**20:.2f} MiB"),
    common.Column("pesq_wb", "PESQ-WB", "{:.2f}"),
    common.Column("stoi", "STOI", "{:.3f}"),
    common.Column("decoder_snr_db", "decoder SNR", "{:.1f} dB"),
    common.Column("codes_equal", "codes = fp32", lambda v: f"{100 * v:.0f}%"),
    common.Column("x_real_time", "x real time (1 thread)", "{:.1f}"),
    common.Column("peak_memory_mib", "peak mem", "{:.0f} MiB"),
    common.Column("export_seconds", "export", "{:.0f} s"),
]


def load_test_clips(corpus: Path, count: int) -> tuple[list[np.ndarray], list[str]]:
    """Test-split utterances (round robin over speakers), or the bundled sample without the corpus."""
    try:
        utterances = common.load_test_set("test", count, corpus)
    except DataError as err:
        logger.warning("%s: using the bundled sample", err)
        wav, _ = load_audio(sample_speech_path(), target_sample_rate=SAMPLE_RATE)
        return [wav], [str(sample_speech_path())]
    clips = [load_audio(u.path, target_sample_rate=SAMPLE_RATE)[0] for u in utterances]
    return clips, [u.path for u in utterances]


class Reference:
    """The float32 torch codec and what it makes of each clip (codes, decoded audio): the yardstick."""

    def __init__(self, clips: list[np.ndarray]) -> None:
        self.codec = speechkit.load(MODEL)
        self.model = self.codec.model
        hop = int(self.model.hop_length)
        self.codes, self.decoded, seconds = [], [], 0.0
        with torch.no_grad():
            self.model.decode_codes(self.model.encode_codes(torch.zeros(1, 4 * hop)))  # warm-up, untimed
            for clip in clips:
                start = time.perf_counter()
                padded = torch.from_numpy(np.pad(clip, (0, (-len(clip)) % hop)))[None]
                codes = self.model.encode_codes(padded)
                audio = self.model.decode_codes(codes)[0].numpy()
                seconds += time.perf_counter() - start
                self.codes.append(codes.numpy())
                self.decoded.append(audio)
        self.seconds = seconds

    def row(self, clips: list[np.ndarray]) -> dict[str, Any]:
        out = [audio[: len(clip)] for audio, clip in zip(self.decoded, clips)]
        size = (resolve_checkpoint(MODEL) / "model.safetensors").stat().st_size
        return {
            "name": "torch fp32 (reference)",
            "format": "torch",
            "size_bytes": size,
            **score(clips, out),
            "x_real_time": common.real_time_factor(_duration(clips), self.seconds),
        }


def _duration(clips: Sequence[np.ndarray]) -> float:
    return sum(len(c) for c in clips) / SAMPLE_RATE


def score(clips: Sequence[np.ndarray], decoded: Sequence[np.ndarray]) -> dict[str, float]:
    """Mean PESQ-WB and STOI of decoded clips against the inputs."""
    pesq = [metrics.pesq_wb(c, d, SAMPLE_RATE) for c, d in zip(clips, decoded)]
    stoi = [metrics.stoi(c, d, SAMPLE_RATE) for c, d in zip(clips, decoded)]
    return {"pesq_wb": float(np.nanmean(pesq)), "stoi": float(np.mean(stoi))}


def _snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    noise = float(np.sum((test.astype(np.float64) - reference) ** 2))
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / max(noise, 1e-30)))


def run_bundle(bundle: Path, clips: list[np.ndarray], reference: Reference) -> dict[str, Any]:
    """Quality, decoder SNR and one-thread speed of a bundle through the runtime."""
    opened, sessions = evaluation.open_sessions(bundle, num_threads=1)
    try:
        graphs = opened.manifest["graphs"]
        hop = int(opened.manifest["extra"]["hop_length"])
        evaluation.session_round_trip(sessions, graphs, clips[0][:SAMPLE_RATE], hop)  # warm-up
        decoded, equal, seconds = [], [], 0.0
        for clip, codes in zip(clips, reference.codes):
            start = time.perf_counter()
            ours, audio = evaluation.session_round_trip(sessions, graphs, clip, hop)
            seconds += time.perf_counter() - start
            decoded.append(audio)
            equal.append(float(np.mean(ours == codes)))
        snrs = []
        for codes, audio in zip(reference.codes, reference.decoded):
            out = sessions["decoder"].run(None, evaluation.decoder_feeds(graphs["decoder"], codes))[0][0]
            snrs.append(_snr_db(audio, out))
    finally:
        opened.close()
    return {
        **score(clips, decoded),
        "decoder_snr_db": float(np.mean(snrs)),
        "codes_equal": float(np.mean(equal)),
        "x_real_time": common.real_time_factor(_duration(clips), seconds),
    }


def memory_workload(bundle: str, wav_path: str) -> None:
    """Open a bundle, build its sessions (one thread) and code one clip: what peak memory measures."""
    wav, _ = sf.read(wav_path, dtype="float32")
    opened, sessions = evaluation.open_sessions(bundle, num_threads=1)
    graphs = opened.manifest["graphs"]
    evaluation.session_round_trip(sessions, graphs, wav, int(opened.manifest["extra"]["hop_length"]))
    opened.close()


def export_row(
    name: str, out: Path, format: str, quant: str, encoder: bool, corpus: Path
) -> tuple[dict[str, Any], Any]:
    start = time.perf_counter()
    report = export_model(
        MODEL, out, format=format, quant=quant, progress=False, quantize_encoder=encoder, corpus_dir=corpus
    )
    row = {
        "name": name,
        "format": format,
        "quant": quant,
        "encoder_quantized": encoder,
        "size_bytes": report.sizes["on_disk_bytes"],
        "in_memory_bytes": report.sizes["in_memory_bytes"],
        "export_seconds": time.perf_counter() - start,
        "export_metrics": report.manifest["metrics"],
    }
    return row, report


def breakdown_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of each ONNX row's bytes per category (speechkit_export.size_breakdown)."""
    rows = [r for r in rows if "size_breakdown" in r]
    if not rows:
        return ""
    keys = [*CATEGORIES, "derived (rebuilt)", "total"]
    lines = ["| mode | " + " | ".join(keys) + " |", "| :--- |" + " ---: |" * len(keys)]
    for row in rows:
        cells = [f"{row['size_breakdown'][k] / 2**20:.2f}" for k in keys]
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_size_quality(rows: list[dict[str, Any]], reference: dict[str, Any], path: Path) -> Path:
    """Bundle size (log) against PESQ-WB, one labelled point per ONNX row; the torch fp32 PESQ dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 5.2))
    points = [r for r in rows if r.get("pesq_wb") is not None and r["format"] == "onnx"]
    for row in points:
        family = row["quant"].split("-")[0] if "-w" in row["quant"] else "onnxruntime"
        marker = "o" if row.get("encoder_quantized") else "s"
        color = {"rtn": "tab:orange", "gptq": "tab:green", "decoupleq": "tab:red"}.get(family, "tab:blue")
        ax.scatter(row["size_bytes"] / 2**20, row["pesq_wb"], color=color, marker=marker, zorder=3)
        ax.annotate(row["name"], (row["size_bytes"] / 2**20, row["pesq_wb"]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")  # fmt: skip
    ax.axhline(reference["pesq_wb"], color="gray", linestyle="--", label="torch fp32")
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    sizes = [r["size_bytes"] / 2**20 for r in points]
    ax.xaxis.set_major_locator(
        FixedLocator(
            [
                t
                for t in (2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 40, 60)
                if min(sizes) / 1.3 <= t <= max(sizes) * 1.3
            ]
        )
    )
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("bundle size on disk (MiB, log scale)")
    ax.set_ylabel("PESQ-WB (6 kbit/s)")
    ax.set_title(f"{MODEL}: bundle size vs quality (circles: all graphs quantised; squares: decoder only)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--utterances", type=int, default=DEFAULT_UTTERANCES, help="test utterances (default 12)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_UTTERANCES} utterances, modes {' '.join(QUICK_MODES)} and coreml int8",
    )
    parser.add_argument("--modes", nargs="+", default=None, help="ONNX quant modes (default all)")
    parser.add_argument(
        "--coreml", nargs="*", default=None, help="Core ML modes (default all; none given: skip)"
    )
    parser.add_argument(
        "--with-float-encoder", action="store_true", help="also each quant mode with the encoder left float"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--corpus", type=Path, default=common.SPEECH_CORPUS_DIR, help="speech corpus folder")
    parser.add_argument("--output-dir", type=Path, default=common.RESULTS_DIR, help="where JSON/PNG go")
    parser.add_argument("--verbose", action="store_true", help="log at INFO level")
    args = parser.parse_args(argv)
    if args.modes is None:
        args.modes = list(QUICK_MODES if args.quick else ONNX_MODES)
    if args.coreml is None:
        args.coreml = list(QUICK_COREML_MODES if args.quick else COREML_MODES)
    return args


def plan(args: argparse.Namespace) -> list[tuple[str, str, str, bool]]:
    """(row name, format, quant, quantize_encoder) of every row to run."""
    rows = [("fp32" if m == "none" else m, "onnx", m, True) for m in args.modes]
    if args.with_float_encoder:
        rows += [(f"{m} dec only", "onnx", m, False) for m in args.modes if m != "none"]
    try:
        import coremltools  # noqa: F401
    except ImportError:
        logger.warning("coremltools not installed: skipping the Core ML rows")
        return rows
    return rows + [(f"coreml {'fp16' if m == 'none' else m}", "coreml", m, True) for m in args.coreml]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    common.setup_logging(args.verbose)
    started = time.perf_counter()
    torch.set_num_threads(1)
    count = QUICK_UTTERANCES if args.quick else args.utterances
    clips, paths = load_test_clips(args.corpus, count)
    reference = Reference(clips)
    reference_row = reference.row(clips)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        clip_path = Path(tmp) / "clip.wav"
        sf.write(str(clip_path), np.concatenate(clips)[: int(MEMORY_CLIP_SECONDS * SAMPLE_RATE)], SAMPLE_RATE)
        for name, format, quant, encoder in tqdm(
            plan(args), desc="bundles", unit="bundle", dynamic_ncols=True
        ):
            out = Path(tmp) / name.replace(" ", "_")
            try:
                row, report = export_row(name, out, format, quant, encoder, args.corpus)
            except Exception as err:  # one failing mode must not lose the others' numbers
                logger.warning("%s failed: %s", name, err)
                continue
            if format == "onnx":
                row["size_breakdown"] = bundle_size_breakdown(report.bundle)
                row.update(run_bundle(report.bundle, clips, reference))
                if not args.no_memory:
                    kwargs = {"bundle": str(report.bundle), "wav_path": str(clip_path)}
                    row["peak_memory_mib"] = common.measure_peak_memory(
                        "bench.export:memory_workload", kwargs=kwargs
                    ).delta_mib
            rows.append(row)
    runtime = time.perf_counter() - started
    table = [reference_row, *rows]
    print(common.markdown_table(table, COLUMNS))
    print()
    for number, note in enumerate(NOTES, start=1):
        print(f"{number}. {note}")
    print("\nWhere the bytes go (MiB; derived = DFT bases and windows rebuilt at load, not on disk):\n")
    print(breakdown_table(rows))
    print(f"\n{len(clips)} test utterances ({_duration(clips):.1f} s); ran in {runtime:.0f} s.")
    out = args.output_dir
    common.write_results(
        out / "export.json",
        {
            "benchmark": "export",
            "model": MODEL,
            "args": vars(args),
            "utterances": paths,
            "runtime_seconds": runtime,
            "notes": NOTES,
            "reference": reference_row,
            "rows": rows,
        },
    )
    plot_size_quality(rows, reference_row, out / "export_size_quality.png")
    print(f"wrote {out / 'export.json'}, {out / 'export_size_quality.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
