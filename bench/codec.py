"""Codec benchmark: every shipped speechkit codec at 1.5 / 3 / 6 kbit/s and full rate, against Codec 2 and Opus.

Run from the repository root (the speech corpus must exist: ``speechkit data speech``)::

    python -m bench.codec                 # 24 utterances of test and of test_ood
    python -m bench.codec --quick         # 4 of each: a smoke run
    python -m bench.codec --kbps 1 2 --codecs mel-rvq-demo --no-peers

``test`` holds unseen voices of the training engines, ``test_ood`` the held-out festival engine.
Every codec checkpoint in ``speechkit/checkpoints`` (card task "codec") is picked up: RVQ-style
codecs are run with the number of codebooks nearest to each target bitrate (targets above their
maximum are skipped) plus all codebooks; single-codebook codecs at their one rate. Peers run in the
same process on the same audio: Codec 2 700C/1200/3200 and Opus 6/8 kbit/s (see :mod:`bench.peers`);
a peer whose tools are missing is skipped with a warning.

Prints one markdown table (split, then bitrate) with footnotes saying what each column measures,
and writes ``bench/results/codec.json``, ``codec_rate_quality.png`` and ``codec_spectrograms.png``.
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
    from bench import common, plots
    from bench.peers import CODEC2_MODES_KBPS, Codec2Peer, OpusPeer, RoundTrip, tool_peak_memory_mib
except ModuleNotFoundError:  # run as a file (python bench/codec.py): put the repository on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import common, plots
    from bench.peers import CODEC2_MODES_KBPS, Codec2Peer, OpusPeer, RoundTrip, tool_peak_memory_mib

import speechkit
from speechkit import metrics
from speechkit.audio import load_audio, resample
from speechkit.checkpoint import shipped_checkpoints
from speechkit.errors import DataError
from speechkit.tokenizers.bitpacking import pack_codes

logger = logging.getLogger("bench.codec")

SAMPLE_RATE = 16000
SPLITS = ("test", "test_ood")
DEFAULT_KBPS = (1.5, 3.0, 6.0)
OPUS_KBPS = (6, 8)
MAX_LAG_SECONDS = 0.05
MEMORY_CLIP_SECONDS = 10.0
QUICK_UTTERANCES = 4

NOTES = [
    "kbps = bits written / audio duration. speechkit: the packed codes (pack_codes, ceil(log2 size) bits "
    "per code, plus any side-info arrays); Codec2: the headerless .bin file c2enc writes (700C pads its "
    "28-bit frames to 4 bytes); Opus: the Opus packets of the Ogg file, container excluded "
    "(whole-file rate in the JSON as file_kbps).",
    "PESQ-WB / STOI / log-mel distance (lower is better): means over the utterances, after removing each "
    "codec's delay (median cross-correlation peak over its utterances; delay_removed_ms in the JSON). "
    "Codec2 codes 8 kHz (resampled 16k->8k->16k) and is scored against the 16 kHz reference; the "
    "log-mel distance punishes such band-limiting hard (empty bands above 4 kHz hit the log floor).",
    "x real time = audio seconds / wall seconds of encode+decode on one thread (torch.set_num_threads(1)); "
    "peers: resampling + encoder and decoder processes (start-up and temp-file I/O included).",
    "codes used: the fraction of each codebook's entries that occur at least once when the codec (all "
    "codebooks) encodes --usage-utterances utterances of the split (200 by default; usage_frames in the "
    "JSON), the minimum over its codebooks; perplexity per codebook in the JSON.",
    "params: weights used at inference (trainable parameters + EMA codebooks); size: model.safetensors "
    "on disk (includes EMA training statistics). Peers: not applicable.",
    "peak mem: speechkit, peak RSS (VmHWM) of a fresh interpreter that loads the codec and codes a 10 s "
    "clip, minus that of one with the same imports only (model construction counts); peers, the largest "
    "peak RSS of the tool processes (whole process, GNU time).",
]

COLUMNS = [
    common.Column("split", "split", align="left"),
    common.Column("system", "codec", align="left"),
    common.Column("kbps", "kbps", "{:.2f}"),
    common.Column("pesq_wb", "PESQ-WB", "{:.2f}"),
    common.Column("stoi", "STOI", "{:.3f}"),
    common.Column("log_mel_distance", "log-mel dist", "{:.3f}"),
    common.Column("codebook_usage", "codes used", lambda u: f"{100 * u:.0f}%"),
    common.Column("x_real_time", "x real time (1 thread)", "{:.1f}"),
    common.Column("parameters", "params", lambda n: f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"),
    common.Column("size_bytes", "size", lambda n: f"{n / 2**20:.2f} MiB"),
    common.Column("peak_memory_mib", "peak mem", "{:.0f} MiB"),
]


class SpeechkitSystem:
    """A shipped speechkit codec run with its first ``num_codebooks`` codebooks."""

    def __init__(self, checkpoint: str, codec: Any, num_codebooks: int, size_bytes: int) -> None:
        total = len(codec.codebook_sizes)
        self.codec, self.num_codebooks, self.family = codec, num_codebooks, checkpoint
        self.name = f"{checkpoint} {num_codebooks}/{total} cb" if total > 1 else checkpoint
        self.nominal_kbps = codec.bitrate(num_codebooks) / 1000
        self.parameters = count_parameters(codec.model)
        self.size_bytes = size_bytes
        self.codebook_sizes = codec.codebook_sizes

    def run(self, wav: np.ndarray, sample_rate: int) -> RoundTrip:
        """Encode + decode [T] audio (timed), count the packed payload, return audio cut to [T]."""
        start = time.perf_counter()
        tokens = self.codec.encode(wav, sample_rate, self.num_codebooks)
        audio = self.codec.decode(tokens)
        if self.codec.sample_rate != sample_rate:
            audio = resample(audio, self.codec.sample_rate, sample_rate)
        seconds = time.perf_counter() - start
        self.last_codes = tokens.codes[0]
        bits = len(pack_codes(tokens.codes[0], tokens.codebook_sizes)) * 8
        # Side information (e.g. a global speaker vector) travels too; counted raw, as stored.
        bits += sum(np.asarray(v).nbytes * 8 for k, v in tokens.extras.items() if k != "num_samples")
        out = np.zeros(len(wav), dtype=np.float32)
        out[: min(len(wav), len(audio))] = audio[: len(wav)]
        return RoundTrip(out, bits, bits, seconds)


def count_parameters(model: torch.nn.Module) -> int:
    """Trainable parameters plus EMA codebooks (buffers named ``codebook``): the weights inference uses."""
    codebooks = sum(b.numel() for n, b in model.named_buffers() if n.rsplit(".", 1)[-1] == "codebook")
    return sum(p.numel() for p in model.parameters()) + codebooks


def codebook_choices(rates_bps: Sequence[float], targets_kbps: Sequence[float], full_rate: bool) -> list[int]:
    """Codebook counts to run: the nearest rate to each target (ties to fewer), targets above the max skipped.

    Args:
        rates_bps: bitrate with the first 1, 2, ..., K codebooks.
        targets_kbps: wanted bitrates.
        full_rate: also run all K codebooks.

    Example:
        >>> codebook_choices([400.0 * k for k in range(1, 9)], [1.5, 3, 6], True)
        [4, 7, 8]
    """
    total = len(rates_bps)
    if total == 1:
        return [1]
    chosen = set()
    for target in (1000.0 * t for t in targets_kbps):
        if target <= rates_bps[-1] * (1 + 1e-9):
            chosen.add(min(range(total), key=lambda i: (abs(rates_bps[i] - target), i)) + 1)
    if full_rate or not chosen:
        chosen.add(total)
    return sorted(chosen)


def speechkit_systems(targets_kbps: Sequence[float], full_rate: bool, only: Sequence[str]) -> list[Any]:
    """One system per (shipped codec checkpoint, chosen number of codebooks)."""
    systems: list[Any] = []
    for checkpoint in shipped_checkpoints():
        if checkpoint.task != "codec" or (only and checkpoint.name not in only):
            continue
        codec = speechkit.load(checkpoint.name)
        rates = [codec.bitrate(k) for k in range(1, len(codec.codebook_sizes) + 1)]
        for k in codebook_choices(rates, targets_kbps, full_rate):
            systems.append(SpeechkitSystem(checkpoint.name, codec, k, checkpoint.size_bytes))
    return systems


def peer_systems() -> list[Any]:
    """Codec2 700C/1200/3200 and Opus 6/8k, minus those whose tools are not installed (with a warning)."""
    peers: list[Any] = [Codec2Peer(m) for m in CODEC2_MODES_KBPS] + [OpusPeer(k) for k in OPUS_KBPS]
    return [p for p in peers if all(common.find_tool(t, f"the {p.name} row") for t in p.tools)]


def memory_workload(checkpoint: str, num_codebooks: int, wav_path: str) -> None:
    """Load a shipped codec and code one clip on one thread: what :func:`common.measure_peak_memory` runs."""
    torch.set_num_threads(1)
    wav, sample_rate = load_audio(wav_path)
    SpeechkitSystem(checkpoint, speechkit.load(checkpoint), num_codebooks, 0).run(wav, sample_rate)


def run_all(
    systems: list[Any], test_sets: dict[str, list[Any]]
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Run every system on every utterance: records (decoded audio under "audio") and references by path."""
    records: list[dict[str, Any]] = []
    references: dict[str, np.ndarray] = {}
    failed: set[str] = set()
    max_lag = int(MAX_LAG_SECONDS * SAMPLE_RATE)
    total = sum(len(u) for u in test_sets.values()) * len(systems)
    with tqdm(total=total, desc="encode+decode", unit="run", dynamic_ncols=True) as bar:
        for split, utterances in test_sets.items():
            for utt in utterances:
                path = _relative(utt.path)
                reference, _ = load_audio(utt.path, target_sample_rate=SAMPLE_RATE)
                references[path] = reference
                for system in systems:
                    bar.update()
                    if system.name in failed:
                        continue
                    bar.set_postfix_str(f"{split} {system.name}")
                    try:
                        trip = system.run(reference, SAMPLE_RATE)
                    except RuntimeError as err:  # a peer tool that crashed: drop the row, keep going
                        logger.warning("%s failed, skipping its row: %s", system.name, err)
                        failed.add(system.name)
                        continue
                    records.append({
                        "split": split,
                        "system": system.name,
                        "path": path,
                        "duration": len(reference) / SAMPLE_RATE,
                        "payload_bits": trip.payload_bits,
                        "file_bits": trip.file_bits,
                        "seconds": trip.seconds,
                        "xcorr_lag_ms": 1000.0 * common.estimate_lag(reference, trip.audio, max_lag) / SAMPLE_RATE,
                        "audio": trip.audio,
                        "codes": getattr(system, "last_codes", None),
                    })  # fmt: skip
    return [r for r in records if r["system"] not in failed], references


def score_all(
    records: list[dict[str, Any]], references: dict[str, np.ndarray], keep: str
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Remove each system's delay, then score every record in place (its audio is dropped).

    A codec's delay is constant, but a single utterance's cross-correlation peak is noisy for codecs
    that do not keep the phase (Codec2, Griffin-Lim), so the delay removed is the median over all
    of the system's utterances.

    Returns:
        (delay in ms per system, the aligned decoded audio of the utterance ``keep`` per system).
    """
    lags: dict[str, list[float]] = {}
    for rec in records:
        lags.setdefault(rec["system"], []).append(rec["xcorr_lag_ms"])
    delays = {name: float(np.median(values)) for name, values in lags.items()}
    kept = {"reference": references[keep]} if keep in references else {}
    for rec in tqdm(records, desc="scoring", unit="run", dynamic_ncols=True):
        reference = references[rec["path"]]
        delay = int(round(delays[rec["system"]] * SAMPLE_RATE / 1000))
        aligned = common.shift_signal(rec.pop("audio"), delay, len(reference))
        rec["pesq_wb"] = metrics.pesq_wb(reference, aligned, SAMPLE_RATE)
        rec["stoi"] = metrics.stoi(reference, aligned, SAMPLE_RATE)
        rec["log_mel_distance"] = metrics.log_mel_distance(reference, aligned, SAMPLE_RATE)
        if rec["path"] == keep:
            kept[rec["system"]] = aligned
    return delays, kept


def aggregate(
    records: list[dict[str, Any]], systems: list[Any], delays: dict[str, float]
) -> list[dict[str, Any]]:
    """One row per (split, system): means of the metrics, bitrate and speed over all its utterances."""
    rows = []
    for split in SPLITS:
        for system in systems:
            recs = [r for r in records if r["split"] == split and r["system"] == system.name]
            if not recs:
                continue
            audio_seconds = sum(r["duration"] for r in recs)
            pesq = np.array([r["pesq_wb"] for r in recs], dtype=np.float64)
            rows.append(
                {
                    "split": split,
                    "system": system.name,
                    "family": system.family,
                    "nominal_kbps": system.nominal_kbps,
                    "kbps": sum(r["payload_bits"] for r in recs) / audio_seconds / 1000,
                    "file_kbps": sum(r["file_bits"] for r in recs) / audio_seconds / 1000,
                    "pesq_wb": float(np.nanmean(pesq)) if np.isfinite(pesq).any() else None,
                    "pesq_failures": int(np.isnan(pesq).sum()),
                    "stoi": float(np.mean([r["stoi"] for r in recs])),
                    "log_mel_distance": float(np.mean([r["log_mel_distance"] for r in recs])),
                    "x_real_time": common.real_time_factor(audio_seconds, sum(r["seconds"] for r in recs)),
                    "delay_removed_ms": delays[system.name],
                    "parameters": getattr(system, "parameters", None),
                    "size_bytes": getattr(system, "size_bytes", None),
                    **codebook_statistics(
                        [r["codes"] for r in recs], getattr(system, "codebook_sizes", None)
                    ),
                    "utterances": len(recs),
                    "audio_seconds": audio_seconds,
                }
            )
    rows.sort(key=lambda r: (SPLITS.index(r["split"]), r["kbps"], r["system"]))
    return rows


def codebook_statistics(codes: list[Any], sizes: Sequence[int] | None) -> dict[str, Any]:
    """Code usage over a split: the fraction of each codebook's entries used at least once (min over the
    codebooks used) and each codebook's perplexity (exp of the code entropy) as a fraction of its size.

    Example:
        >>> stats = codebook_statistics([np.array([[0, 1, 2, 3]]), np.array([[0, 0, 1, 1]])], [8])
        >>> stats["codebook_usage"], round(stats["perplexity_per_codebook"][0], 2)
        (0.5, 3.51)
    """
    if sizes is None or not codes or any(c is None for c in codes):
        return {}
    used = min(c.shape[0] for c in codes)
    usage, perplexity = [], []
    for k in range(used):
        counts = np.bincount(np.concatenate([c[k].ravel() for c in codes]), minlength=sizes[k])
        p = counts / counts.sum()
        usage.append(float((counts > 0).mean()))
        perplexity.append(float(np.exp(-(p[p > 0] * np.log(p[p > 0])).sum())))
    return {
        "codebook_usage": min(usage),
        "codebook_usage_per_codebook": usage,
        "perplexity_per_codebook": perplexity,
        "perplexity_fraction_mean": float(np.mean([q / n for q, n in zip(perplexity, sizes)])),
    }


def codebook_usage_over_split(
    systems: list[Any], split: str, count: int, corpus: Path
) -> dict[str, dict[str, Any]]:
    """Codebook statistics per codec family from encoding ``count`` utterances of ``split`` (encode only).

    The quality utterances (~80 s) hold fewer token frames than a 4096-entry codebook has codes, so
    usage is measured on a larger set: each family once, with all its codebooks.
    """
    families: dict[str, Any] = {}
    for system in systems:
        if isinstance(system, SpeechkitSystem):
            best = families.get(system.family)
            if best is None or system.num_codebooks > best.num_codebooks:
                families[system.family] = system
    if not families:
        return {}
    utterances = common.load_test_set(split, count, corpus)
    stats = {}
    for family, system in tqdm(families.items(), desc=f"code usage ({split})", unit="codec"):
        codes = []
        for utt in utterances:
            wav, _ = load_audio(utt.path, target_sample_rate=SAMPLE_RATE)
            codes.append(system.codec.encode(wav, SAMPLE_RATE, system.num_codebooks).codes[0])
        frames = sum(c.shape[1] for c in codes)
        stats[family] = {**codebook_statistics(codes, system.codebook_sizes), "usage_frames": frames}
    return stats


def memory_clip(utterances: Sequence[Any], path: Path) -> Path:
    """Write about MEMORY_CLIP_SECONDS of speech (test utterances joined) for the memory workers."""
    pieces, length = [], 0
    for utt in utterances:
        wav, _ = load_audio(utt.path, target_sample_rate=SAMPLE_RATE)
        pieces.append(wav)
        length += len(wav)
        if length >= MEMORY_CLIP_SECONDS * SAMPLE_RATE:
            break
    clip = np.concatenate(pieces)[: int(MEMORY_CLIP_SECONDS * SAMPLE_RATE)]
    sf.write(str(path), clip, SAMPLE_RATE, subtype="FLOAT")
    return path


def measure_memory(systems: list[Any], clip: Path) -> dict[str, float | None]:
    """Peak memory (MiB) per system (see NOTES for what is measured)."""
    peaks: dict[str, float | None] = {}
    for system in tqdm(systems, desc="peak memory", unit="codec", dynamic_ncols=True):
        try:
            if isinstance(system, SpeechkitSystem):
                kwargs = {"checkpoint": system.family, "num_codebooks": system.num_codebooks}
                peak = common.measure_peak_memory(
                    "bench.codec:memory_workload", kwargs={**kwargs, "wav_path": str(clip)}
                )
                peaks[system.name] = peak.delta_mib
            else:
                wav, _ = load_audio(clip)
                peaks[system.name] = tool_peak_memory_mib(system, wav, SAMPLE_RATE)
        except RuntimeError as err:
            logger.warning("peak memory of %s not measured: %s", system.name, err)
    return peaks


def spectrogram_panels(
    kept: dict[str, np.ndarray], systems: list[Any], rows: list[dict[str, Any]]
) -> list[tuple[str, np.ndarray]]:
    """Reference, each speechkit codec at its highest rate <= 3 kbps (else its lowest), Codec2 3200, Opus 6k."""
    kbps = {r["system"]: r["kbps"] for r in rows if r["split"] == "test_ood"}
    chosen: list[Any] = []
    for family in dict.fromkeys(s.family for s in systems if isinstance(s, SpeechkitSystem)):
        options = sorted((s for s in systems if s.family == family), key=lambda s: s.nominal_kbps)
        low = [s for s in options if s.nominal_kbps <= 3.0 + 1e-9]
        chosen.append(low[-1] if low else options[0])
    chosen += [s for s in systems if s.name in ("Codec2 3200", "Opus 6k")]
    panels = [("reference (test_ood)", kept["reference"])]
    panels += [(f"{s.name}: {kbps[s.name]:.2f} kbps", kept[s.name]) for s in chosen if s.name in kept]
    return panels


def _relative(path: str) -> str:
    """A corpus path relative to the repository when it lies inside it (portable JSON)."""
    try:
        return str(Path(path).resolve().relative_to(common.REPO_ROOT))
    except ValueError:
        return path


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.codec", description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=24, help="utterances per split (default 24)")
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run: {QUICK_UTTERANCES} utterances per split"
    )
    parser.add_argument(
        "--kbps",
        type=float,
        nargs="+",
        default=list(DEFAULT_KBPS),
        help="target bitrates for multi-codebook codecs (default 1.5 3 6)",
    )
    parser.add_argument(
        "--full-rate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run every codec with all its codebooks (default on)",
    )
    parser.add_argument("--codecs", nargs="+", default=[], help="only these shipped codecs (default all)")
    parser.add_argument(
        "--usage-utterances",
        type=int,
        default=200,
        help="utterances per split encoded to measure codebook usage (0: use the quality set)",
    )
    parser.add_argument("--no-peers", action="store_true", help="skip Codec2 and Opus")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--corpus", type=Path, default=common.SPEECH_CORPUS_DIR, help="speech corpus folder")
    parser.add_argument("--output-dir", type=Path, default=common.RESULTS_DIR, help="where JSON/PNGs go")
    parser.add_argument("--verbose", action="store_true", help="log at INFO level")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    common.setup_logging(args.verbose)
    started = time.perf_counter()
    torch.set_num_threads(1)  # every timing in this script is one-thread
    count = QUICK_UTTERANCES if args.quick else args.utterances
    if args.quick:
        args.usage_utterances = min(args.usage_utterances, QUICK_UTTERANCES)
    try:
        test_sets = {split: common.load_test_set(split, count, args.corpus) for split in SPLITS}
    except DataError as err:
        sys.exit(f"error: {err}")
    systems = speechkit_systems(args.kbps, args.full_rate, args.codecs) + (
        [] if args.no_peers else peer_systems()
    )
    if not systems:
        sys.exit("error: nothing to benchmark (no shipped codec matched and peers are off or missing)")
    warmup, _ = load_audio(test_sets["test"][0].path, target_sample_rate=SAMPLE_RATE)
    for system in systems:  # first calls pay for lazy init and allocation: keep them out of the timing
        try:
            system.run(warmup[:SAMPLE_RATE], SAMPLE_RATE)
        except RuntimeError as err:
            logger.warning("%s failed on warm-up: %s", system.name, err)
    keep = test_sets["test_ood"][0]
    records, references = run_all(systems, test_sets)
    delays, kept = score_all(records, references, _relative(keep.path))
    rows = aggregate(records, systems, delays)
    if args.usage_utterances:
        for split in SPLITS:
            usage = codebook_usage_over_split(systems, split, args.usage_utterances, args.corpus)
            for row in rows:
                if row["split"] == split and row.get("family") in usage:
                    row.update(usage[row["family"]])
    for rec in records:
        rec.pop("codes", None)
    if not args.no_memory:
        with tempfile.TemporaryDirectory(prefix="bench-codec-") as tmp:
            peaks = measure_memory(systems, memory_clip(test_sets["test"], Path(tmp) / "clip.wav"))
        for row in rows:
            row["peak_memory_mib"] = peaks.get(row["system"])
    runtime = time.perf_counter() - started

    print(common.markdown_table(rows, COLUMNS))
    print()
    for number, note in enumerate(NOTES, start=1):
        print(f"{number}. {note}")
    print(f"\n{count} utterances per split; ran in {runtime:.0f} s.")
    out = args.output_dir
    common.write_results(
        out / "codec.json",
        {
            "benchmark": "codec",
            "args": vars(args),
            "utterances": {split: [_relative(u.path) for u in utts] for split, utts in test_sets.items()},
            "runtime_seconds": runtime,
            "notes": NOTES,
            "rows": rows,
            "per_utterance": records,
        },
    )
    plots.plot_rate_quality(
        rows,
        out / "codec_rate_quality.png",
        [("pesq_wb", "PESQ-WB"), ("stoi", "STOI")],
        title=f"Codec rate vs quality ({count} utterances per split)",
    )
    plots.plot_spectrograms(
        spectrogram_panels(kept, systems, rows),
        SAMPLE_RATE,
        out / "codec_spectrograms.png",
        title=Path(keep.path).name,
    )
    print(f"wrote {out / 'codec.json'}, {out / 'codec_rate_quality.png'}, {out / 'codec_spectrograms.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
