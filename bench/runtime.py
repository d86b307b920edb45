"""On-device runtime benchmark: the torch-free ``speechkit_rt`` bundles against the speechkit torch SDK.

Run from the repository root::

    python -m bench.runtime                 # codec-rvq in modes none, int8, int8-static, w4, decoupleq-w2
    python -m bench.runtime --quick         # none + int8 only, one fresh process per row
    python -m bench.runtime --modes none w4 --repeats 5 --no-streaming

Every bundle row is written once by :func:`speechkit_export.pipeline.export_model` into a temporary
folder; the streaming row is the causal codec (``codec-rvq-causal``) written by
:func:`speechkit_export.streaming_graphs.write_streaming_bundle` (step graphs only). Each row is
measured in FRESH Python processes (``--repeats`` of them) that import the runtime, open the bundle,
create the onnxruntime sessions on one thread and code a 10 s clip (the bundled sample followed by
test utterances); the "speechkit torch" row does the same with ``speechkit.load`` and
``torch.set_num_threads(1)``. The child processes import only the standard library before their
stopwatch starts, so interpreter start-up is excluded and the torch-free rows never load torch.

Target (on-device runtime issue): the int8 codec bundle round-trips at least 100x faster than real
time on one thread and starts in under 0.5 s; the table's last column says whether a row meets it.

Prints one markdown table with notes and writes ``bench/results/runtime.json`` and
``runtime_speed_size.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

try:
    from bench import common
except ModuleNotFoundError:  # run as a file (python bench/runtime.py): put the repository on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import common

from speechkit.assets import sample_speech_path
from speechkit.audio import load_audio
from speechkit.checkpoint import resolve_checkpoint
from speechkit.errors import DataError
from speechkit_export.bundle_writer import size_on_disk as folder_size

logger = logging.getLogger("bench.runtime")

MODEL = "codec-rvq"
CAUSAL_MODEL = "codec-rvq-causal"
SAMPLE_RATE = 16000
CLIP_SECONDS = 10.0
FULL_MODES = ("none", "int8", "int8-static", "w4", "decoupleq-w2")
QUICK_MODES = ("none", "int8")
TARGET_X_REAL_TIME = 100.0
TARGET_COLD_START_S = 0.5
TARGET_MODE = "int8"

NOTES = [
    "Rows: codec-rvq bundles (speechkit_export.export_model; fp32 = quant none, int8 = onnxruntime "
    "quantize_dynamic, int8-static = QDQ calibrated on the corpus' valid split, w4 = MatMulNBits, "
    "decoupleq-w2 = 2-bit packed weights rebuilt by the runtime at load); encoder and decoder quantised. "
    "speechkit torch = the same checkpoint through the SDK (speechkit.load, Codec.encode/decode). "
    "streaming = codec-rvq-causal step graphs (fp32), StreamingCodecRuntime fed one 20 ms step at a time.",
    "size = the bundle's files (manifest included); torch: model.safetensors (includes EMA statistics).",
    "cold start = wall seconds inside a fresh interpreter from before `import speechkit_rt` to both sessions "
    "created (bundle verified: manifest + sha256 of every file; packed weights materialised); torch: from "
    "before `import speechkit` (which imports torch) to the model loaded. Interpreter start-up excluded; "
    "median over the fresh processes, the OS file cache warm after the first.",
    "peak RSS = VmHWM of that child process after the cold start and one encode+decode of the 10 s clip "
    "(whole process: Python, numpy, onnxruntime or torch included); the largest over the processes.",
    "x real time = clip seconds / wall seconds of one encode + decode after a warm-up round trip, one "
    "thread (onnxruntime intra_op_num_threads=1; torch.set_num_threads(1)); median over the timed round "
    "trips of all processes. Streaming: the clip pushed through encoder then decoder in 20 ms chunks "
    "(one step graph call each), per-step = median ms per 20 ms step (encoder + decoder). Shared 2-core "
    "machine: compare rows, not absolute numbers.",
    "PESQ-WB of the decoded clip against the input clip (all 12 codebooks, 6 kbit/s; no delay removal: "
    "both codecs are zero-delay once the streaming decoder drops its 10 ms offset). The clip starts with "
    "the bundled sample (5.1 s), which even the torch model codes at PESQ ~1.2 (test utterances ~2.0-2.5), "
    "so compare rows; bench/export.py scores quality on 12 test utterances.",
    f"target = the issue's goal for the {TARGET_MODE} bundle: >= {TARGET_X_REAL_TIME:.0f}x real time and "
    f"< {TARGET_COLD_START_S} s cold start (shown for every row as a yardstick).",
]

COLUMNS = [
    common.Column("name", "row", align="left"),
    common.Column("runtime", "runtime", align="left"),
    common.Column("size_bytes", "size", lambda n: f"{n / 2**20:.1f} MiB"),
    common.Column("cold_start_s", "cold start", "{:.2f} s"),
    common.Column("peak_rss_mib", "peak RSS", "{:.0f} MiB"),
    common.Column("x_real_time", "x real time (1 thread)", "{:.1f}"),
    common.Column("step_ms", "per-step", "{:.2f} ms"),
    common.Column("pesq_wb", "PESQ-WB", "{:.2f}"),
    common.Column("meets_target", "target", lambda v: "yes" if v else "no"),
]

# The child process: stdlib only before the stopwatch starts. argv[1] is a JSON job.
_WORKER = r"""
import time
started = time.perf_counter()
import json, sys
job = json.loads(sys.argv[1])
kind = job["kind"]
if kind == "torch":
    import numpy as np
    import torch
    torch.set_num_threads(1)
    import speechkit
    from soundfile import read as load
    codec = speechkit.load(job["model"])
    def round_trip(wav):
        with torch.no_grad():
            return codec.decode(codec.encode(wav, 16000))
else:
    import numpy as np
    from speechkit_rt import CodecRuntime, StreamingCodecRuntime
    from speechkit_rt import read_wav as load
    if kind == "bundle":
        codec = CodecRuntime.open(job["bundle"], num_threads=1)
        for graph in ("encoder", "decoder"):
            codec.session(graph)
        def round_trip(wav):
            return codec.decode(codec.encode(wav, 16000))
    else:
        codec = StreamingCodecRuntime.open(job["bundle"], num_threads=1)
        step_seconds = []
        def round_trip(wav):
            hop, out = codec.hop_length, []
            for start in range(0, len(wav), hop):
                t0 = time.perf_counter()
                out.append(codec.decoder.push(codec.encoder.push(wav[start : start + hop])))
                step_seconds.append(time.perf_counter() - t0)
            out.append(codec.decoder.push(codec.encoder.flush()))
            out.append(codec.decoder.flush())
            return np.concatenate(out)
cold_start = time.perf_counter() - started
wav = np.asarray(load(job["wav"])[0], dtype=np.float32)
decoded = round_trip(wav)
with open("/proc/self/status") as status:
    peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
seconds = []
for _ in range(job["timed"]):
    if kind == "streaming":
        step_seconds.clear()
    t0 = time.perf_counter()
    round_trip(wav)
    seconds.append(time.perf_counter() - t0)
np.save(job["decoded"], np.asarray(decoded, dtype=np.float32))
result = {"cold_start_s": cold_start, "peak_kib": peak_kib, "seconds": seconds}
if kind == "streaming":
    result["step_seconds"] = step_seconds
print(json.dumps(result))
"""


# --------------------------------------------------------------------------------------- pure helpers
def median_x_real_time(audio_seconds: float, seconds: Sequence[float]) -> float:
    """Median "x real time" over repeated timings of the same clip (robust to a busy shared CPU).

    Example:
        >>> median_x_real_time(10.0, [0.1, 0.2, 0.05])
        100.0
    """
    if not seconds:
        return float("nan")
    return common.real_time_factor(audio_seconds, statistics.median(seconds))


def meets_target(x_real_time: float | None, cold_start_s: float | None) -> bool:
    """Whether a row reaches the issue's goal: >= 100x real time on one thread and < 0.5 s cold start.

    Example:
        >>> meets_target(120.0, 0.3), meets_target(120.0, 0.7), meets_target(None, 0.1)
        (True, False, False)
    """
    if x_real_time is None or cold_start_s is None:
        return False
    return x_real_time >= TARGET_X_REAL_TIME and cold_start_s < TARGET_COLD_START_S


# ------------------------------------------------------------------------------------------ measuring
def build_clip(corpus: Path, path: Path) -> np.ndarray:
    """The 10 s benchmark clip: the bundled sample, then test utterances, cut to 10 s; written to ``path``."""
    parts = [load_audio(sample_speech_path(), target_sample_rate=SAMPLE_RATE)[0]]
    try:
        utterances = common.load_test_set("test", 8, corpus)
        parts += [load_audio(u.path, target_sample_rate=SAMPLE_RATE)[0] for u in utterances]
    except DataError as err:
        logger.warning("%s: the clip repeats the bundled sample", err)
    clip = np.concatenate(parts)
    target = int(CLIP_SECONDS * SAMPLE_RATE)
    clip = np.tile(clip, -(-target // len(clip)))[:target].astype(np.float32)
    sf.write(str(path), clip, SAMPLE_RATE, subtype="FLOAT")
    return clip


def run_child(job: dict[str, Any], timeout: float = 600.0) -> dict[str, Any]:
    """Run :data:`_WORKER` on ``job`` in a fresh interpreter (one thread everywhere) and parse its JSON."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", _WORKER, json.dumps(job)],
        capture_output=True,
        text=True,
        env=env,
        cwd=common.REPO_ROOT,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"runtime worker ({job['kind']}) failed ({proc.returncode}): {proc.stderr[-2000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(job: dict[str, Any], clip: np.ndarray, repeats: int, timed: int, tmp: Path) -> dict[str, Any]:
    """Cold start, peak RSS, x real time (and per-step time) and PESQ-WB of one row over fresh processes."""
    from speechkit import metrics

    runs = []
    for index in range(repeats):
        decoded_path = tmp / f"decoded-{index}.npy"
        runs.append(run_child({**job, "timed": timed, "decoded": str(decoded_path)}))
    decoded = np.load(tmp / "decoded-0.npy", allow_pickle=False)[: len(clip)]
    audio_seconds = len(clip) / SAMPLE_RATE
    seconds = [s for run in runs for s in run["seconds"]]
    row: dict[str, Any] = {
        "cold_start_s": statistics.median(run["cold_start_s"] for run in runs),
        "cold_start_all_s": [run["cold_start_s"] for run in runs],
        "peak_rss_mib": max(run["peak_kib"] for run in runs) / 1024,
        "x_real_time": median_x_real_time(audio_seconds, seconds),
        "round_trip_seconds": seconds,
        "pesq_wb": _pesq(metrics, clip, decoded),
    }
    steps = [s for run in runs for s in run.get("step_seconds", [])]
    if steps:
        row["step_ms"] = 1000 * statistics.median(steps)
        row["step_ms_p95"] = 1000 * float(np.percentile(steps, 95))
    row["meets_target"] = meets_target(row["x_real_time"], row["cold_start_s"])
    return row


def _pesq(metrics: Any, clip: np.ndarray, decoded: np.ndarray) -> float | None:
    try:
        return metrics.pesq_wb(clip, decoded, SAMPLE_RATE)
    except Exception as err:  # pesq missing or refusing the clip: the other columns still count
        logger.warning("PESQ skipped: %s", err)
        return None


def export_bundles(modes: Sequence[str], out: Path, corpus: Path) -> list[tuple[str, str, Path, float]]:
    """(row name, quant, bundle path, export seconds) for each mode; a failing mode is logged and skipped."""
    from speechkit_export.pipeline import export_model

    bundles = []
    for quant in modes:
        start = time.perf_counter()
        try:
            report = export_model(MODEL, out / quant, quant=quant, progress=False, corpus_dir=corpus)
        except Exception as err:  # one failing mode must not lose the others' numbers
            logger.warning("export %s failed: %s", quant, err)
            continue
        name = "fp32" if quant == "none" else quant
        bundles.append((name, quant, Path(report.bundle), time.perf_counter() - start))
    return bundles


def export_streaming(out: Path) -> Path:
    """The causal codec's streaming bundle (step graphs only, one token = 20 ms per step)."""
    import speechkit
    from speechkit_export.streaming_graphs import write_streaming_bundle

    model = speechkit.load(CAUSAL_MODEL).model
    return write_streaming_bundle(model, out, model_name=f"{CAUSAL_MODEL}-stream", offline_graphs=False)


# ------------------------------------------------------------------------------------------- plotting
def plot_speed_size(rows: list[dict[str, Any]], path: Path) -> Path:
    """x real time (log) against size (log), one labelled point per row; the target dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(8.5, 5.2))
    colors = {"onnxruntime": "tab:blue", "torch": "tab:gray", "onnxruntime stream": "tab:green"}
    for row in rows:
        if row.get("x_real_time") is None or not row.get("size_bytes"):
            continue
        x, y = row["size_bytes"] / 2**20, row["x_real_time"]
        ax.scatter(x, y, color=colors.get(row["runtime"], "tab:red"), zorder=3, s=40)
        label = f"{row['name']} ({row['cold_start_s']:.2f} s start)"
        ax.annotate(label, (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.axhline(TARGET_X_REAL_TIME, color="tab:red", linestyle="--", label=f"target {TARGET_X_REAL_TIME:.0f}x")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("size on disk (MiB, log scale)")
    ax.set_ylabel("x real time, encode + decode, 1 thread (log scale)")
    ax.set_title(f"{MODEL}: speechkit_rt bundles vs speechkit torch (grey), streaming (green)")
    ax.grid(True, which="both", alpha=0.3)
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.margins(x=0.25, y=0.2)
    ax.legend(loc="center left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.runtime", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="modes none + int8, one process per row")
    parser.add_argument(
        "--modes", nargs="+", default=None, help=f"quant modes (default {' '.join(FULL_MODES)})"
    )
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per row (default 3)")
    parser.add_argument("--timed", type=int, default=3, help="timed round trips per process (default 3)")
    parser.add_argument("--no-torch", action="store_true", help="skip the speechkit torch row")
    parser.add_argument("--no-streaming", action="store_true", help="skip the causal streaming row")
    parser.add_argument("--corpus", type=Path, default=common.SPEECH_CORPUS_DIR, help="speech corpus folder")
    parser.add_argument("--output-dir", type=Path, default=common.RESULTS_DIR, help="where JSON/PNG go")
    parser.add_argument("--verbose", action="store_true", help="log at INFO level")
    args = parser.parse_args(argv)
    if args.modes is None:
        args.modes = list(QUICK_MODES if args.quick else FULL_MODES)
    if args.quick:
        args.repeats = 1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    common.setup_logging(args.verbose)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp_name:
        tmp = Path(tmp_name)
        clip = build_clip(args.corpus, tmp / "clip.wav")
        base_job = {"wav": str(tmp / "clip.wav")}
        if not args.no_torch:
            size = (resolve_checkpoint(MODEL) / "model.safetensors").stat().st_size
            row = {"name": "speechkit torch", "runtime": "torch", "quant": "fp32", "size_bytes": size}
            row.update(
                measure({**base_job, "kind": "torch", "model": MODEL}, clip, args.repeats, args.timed, tmp)
            )
            rows.append(row)
        for name, quant, bundle, export_s in export_bundles(args.modes, tmp / "bundles", args.corpus):
            row = {"name": name, "runtime": "onnxruntime", "quant": quant, "size_bytes": folder_size(bundle)}
            row["export_seconds"] = export_s
            job = {**base_job, "kind": "bundle", "bundle": str(bundle)}
            row.update(measure(job, clip, args.repeats, args.timed, tmp))
            rows.append(row)
        if not args.no_streaming:
            bundle = export_streaming(tmp / "stream")
            row = {"name": "causal streaming fp32", "runtime": "onnxruntime stream", "quant": "none"}
            row["size_bytes"] = folder_size(bundle)
            job = {**base_job, "kind": "streaming", "bundle": str(bundle)}
            row.update(measure(job, clip, args.repeats, max(1, args.timed // 3), tmp))
            rows.append(row)
    runtime = time.perf_counter() - started
    print(common.markdown_table(rows, COLUMNS))
    print()
    for number, note in enumerate(NOTES, start=1):
        print(f"{number}. {note}")
    print(f"\n{CLIP_SECONDS:.0f} s clip, {args.repeats} fresh process(es) per row; ran in {runtime:.0f} s.")
    out = args.output_dir
    results = {"benchmark": "runtime", "model": MODEL, "args": vars(args), "runtime_seconds": runtime}
    common.write_results(out / "runtime.json", {**results, "notes": NOTES, "rows": rows})
    plot_speed_size(rows, out / "runtime_speed_size.png")
    print(f"wrote {out / 'runtime.json'}, {out / 'runtime_speed_size.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
