"""ASR benchmark: speechkit ASR against Whisper base and PocketSphinx in the same run, plus ablations.

    OMP_NUM_THREADS=1 python -m bench.asr                          # shipped "asr", 100 utterances/split
    OMP_NUM_THREADS=1 python -m bench.asr --quick                  # 10 utterances, greedy + default, no memory
    OMP_NUM_THREADS=1 python -m bench.asr --model runs/x --skip-peers --ablation base=runs/a decred=runs/b

For each split (``test``: unseen speakers of the training engines; ``test_ood``: the held-out
festival engine) the same ``--utterances`` recordings (:func:`bench.common.load_test_set`) are
transcribed by

- the speechkit model (``--model``) once per decoding mode of ``--modes``: greedy CTC, CTC prefix
  beam, attention beam, joint CTC/attention (the API default; :mod:`speechkit.asr.decoding`), and
  ``METHOD/STRATEGY`` for a DeCRED strategy other than the default, e.g. ``attention/final`` (the
  final decoder head alone; skipped for a model without intermediate heads);
- Whisper base (faster-whisper int8, beam 5, one thread) and PocketSphinx en-us (bench.recognizers).

Scoring: every reference and every hypothesis goes through :func:`scoring_text`, i.e. the model's
own normaliser (:func:`speechkit.asr.text.normalize_text`, the one its training targets went
through) and then :func:`bench.wer.normalize_text` (which folds contractions and apostrophes, so
"you're"/"you are" and "it's"/"its" count alike for every system). WER and CER pool the counts.

Speed: real-time factor = processing seconds / audio seconds (lower is faster; the issue's target is
<= 0.05), on one thread (torch, CTranslate2), after one untimed warm-up utterance, resampling
included. Two columns: wall clock, and CPU time of this process (``time.process_time``), which the
other jobs on a shared machine do not inflate; targets are judged on CPU time.

Size: parameters, the safetensors bytes and what they hold (fp16 or fp32) with the fp32-equivalent,
int8 / 2-bit bundle sizes when ``--int8-bundle`` / ``--w2-bundle`` are given ("not exported"
otherwise), and peak memory of load + one transcription (longest picked utterance) in a fresh
interpreter, over Python + this module's imports, torch included (:func:`bench.common.measure_peak_memory`).

Ablation (``--ablation NAME=PATH``, ``--lowres NAME=PATH``): greedy CTC and attention-beam WER on
both splits for each checkpoint folder, with its card's training steps, hours and paired hours; a
folder that does not exist prints "not trained".

Writes ``bench/results/asr.json`` and ``asr_wer_rtf.png`` (``asr_quick*`` with ``--quick``; ``--output`` moves both).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:
    from bench import common
except ModuleNotFoundError:  # run as a file: put the repository on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import common
from bench import wer
from speechkit.data.manifest import Utterance

logger = logging.getLogger("bench.asr")

SPLITS = ("test", "test_ood")
METHODS = ("ctc_greedy", "ctc_beam", "attention", "joint")
DECRED_STRATEGIES = ("final", "linear", "log_linear")
# "attention/final": the same DeCRED weights decoded with the final head alone (what DeCRED's fusion buys)
MODES = ("ctc_greedy", "ctc_beam", "attention", "attention/final", "joint")
QUICK_MODES = ("ctc_greedy", "joint")
ABLATION_MODES = ("ctc_greedy", "attention")
DEFAULT_MODEL = "asr"
DEFAULT_ABLATION = {
    "base": "runs/asr-base-export",
    "decred": "speechkit/checkpoints/asr",
    "s2c": "runs/asr-s2c-export",
    "both": "runs/asr-s2c-decred-export",
}
DEFAULT_LOWRES = {"400": "runs/asr-400-export", "400+s2c": "runs/asr-s2c-400-export"}
SAMPLE_RATE = 16000
WHISPER_PARAMS = 74_000_000  # published size of Whisper base; CTranslate2 gives no count
RTF_TARGET, INT8_TARGET_BYTES = 0.05, 10 * 10**6
NOT_EXPORTED, NOT_TRAINED = "not exported", "not trained"
_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}

WER_COLUMNS = [
    common.Column("split", "split", align="left"),
    common.Column("system", "system", align="left"),
    common.Column("wer", "WER", "{:.1%}"),
    common.Column("cer", "CER", "{:.1%}"),
    common.Column("sdi", "S/D/I"),
    common.Column("rtf_cpu", "RTF (CPU, 1 thr)", "{:.4f}"),
    common.Column("rtf_wall", "RTF (wall)", "{:.4f}"),
]
SIZE_COLUMNS = [
    common.Column("system", "system", align="left"),
    common.Column("params", "params", lambda v: f"{v / 1e6:.2f}M"),
    common.Column("disk_bytes", "on disk", lambda v: f"{v / 1e6:.2f} MB"),
    common.Column("stored_as", "stored as"),
    common.Column("fp32_bytes", "fp32-equiv.", lambda v: f"{v / 1e6:.2f} MB"),
    common.Column("int8_bundle", "int8 bundle", lambda v: v if isinstance(v, str) else f"{v / 1e6:.2f} MB"),
    common.Column("w2_bundle", "2-bit bundle", lambda v: v if isinstance(v, str) else f"{v / 1e6:.2f} MB"),
    common.Column("peak_mib", "peak mem (over Python)", "{:.0f} MiB"),
]
TARGET_COLUMNS = [
    common.Column("target", "target", align="left"),
    common.Column("measured", "measured", align="left"),
    common.Column("met", "met", lambda v: {True: "yes", False: "no"}.get(v, str(v))),
]


# ------------------------------------------------------------------------------------------ scoring
def scoring_text(text: str) -> str:
    """The text WER is computed on: the model's normaliser, then bench.wer's (contractions folded).

    Example:
        >>> scoring_text("Mr. Smith paid $5, you're sure?")
        'mister smith paid five dollars you are sure'
        >>> scoring_text("It's 5:30") == scoring_text("its five thirty")
        True
    """
    from speechkit.asr.text import normalize_text as model_normalize

    return wer.normalize_text(model_normalize(text))


def score_transcripts(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, Any]:
    """Pooled WER and CER after :func:`scoring_text` on both sides.

    Example:
        >>> score = score_transcripts(["The cat sat.", "Hello there"], ["the cat sat", "hello"])
        >>> round(score["wer"], 3), score["sdi"], score["reference_words"]
        (0.2, '0/1/0', 5)
    """
    refs = [scoring_text(t) for t in references]
    hyps = [scoring_text(t) for t in hypotheses]
    words = wer.corpus_wer(refs, hyps, normalize=False)
    chars = wer.corpus_cer(refs, hyps, normalize=False)
    return {
        "wer": words.rate,
        "cer": chars.rate,
        "sdi": f"{words.substitutions}/{words.deletions}/{words.insertions}",
        "reference_words": words.reference_words,
    }


# ------------------------------------------------------------------------------------------- timing
@dataclasses.dataclass
class Timing:
    """Audio, wall and process-CPU seconds accumulated over transcriptions.

    Example:
        >>> t = Timing(audio_seconds=20.0, wall_seconds=2.0, cpu_seconds=0.5)
        >>> t.rtf_wall, t.rtf_cpu
        (0.1, 0.025)
    """

    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0

    @property
    def rtf_wall(self) -> float:
        return self.wall_seconds / self.audio_seconds if self.audio_seconds > 0 else math.nan

    @property
    def rtf_cpu(self) -> float:
        return self.cpu_seconds / self.audio_seconds if self.audio_seconds > 0 else math.nan


def transcribe_all(
    transcribe: Callable[[np.ndarray], str], clips: Sequence[np.ndarray], warm_up: bool = True
) -> tuple[list[str], Timing]:
    """Run ``transcribe`` on every 16 kHz clip on one thread, timing each call (after an untimed warm-up).

    Example:
        >>> texts, timing = transcribe_all(lambda w: str(len(w)), [np.zeros(16000), np.zeros(8000)])
        >>> texts, timing.audio_seconds
        (['16000', '8000'], 1.5)
    """
    timing, texts = Timing(), []
    with common.one_thread():
        if warm_up and clips:
            transcribe(clips[0])
        for clip in clips:
            wall, cpu = time.perf_counter(), time.process_time()
            texts.append(transcribe(clip))
            timing.wall_seconds += time.perf_counter() - wall
            timing.cpu_seconds += time.process_time() - cpu
            timing.audio_seconds += len(clip) / SAMPLE_RATE
    return texts, timing


# -------------------------------------------------------------------------------------------- sizes
def safetensors_sizes(path: str | Path) -> dict[str, Any]:
    """Bytes of a safetensors file, the dtypes it stores, and its size were every float tensor fp32.

    Example:
        >>> import tempfile, torch
        >>> from safetensors.torch import save_file
        >>> f = Path(tempfile.mkdtemp()) / "m.safetensors"
        >>> save_file({"w": torch.zeros(10, dtype=torch.float16), "n": torch.zeros(2, dtype=torch.int64)}, str(f))
        >>> s = safetensors_sizes(f)
        >>> s["stored_as"], s["tensor_bytes"], s["fp32_bytes"]
        ('F16+I64', 36, 56)
    """
    path = Path(path)
    with open(path, "rb") as handle:
        header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
    dtypes, stored, fp32 = set(), 0, 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        dtypes.add(info["dtype"])
        stored += end - begin
        fp32 += math.prod(info["shape"]) * 4 if info["dtype"] in _FLOAT_DTYPES else end - begin
    order = sorted(dtypes, key=lambda d: (d not in _FLOAT_DTYPES, d))
    return {
        "disk_bytes": path.stat().st_size,
        "tensor_bytes": stored,
        "fp32_bytes": fp32,
        "stored_as": "+".join(order),
    }


def bundle_bytes(path: str | Path | None) -> int | str:
    """Bytes of an exported bundle (folder or .zip), or "not exported" when no path or nothing there."""
    if path is None or not Path(path).exists():
        return NOT_EXPORTED
    from speechkit_export.bundle_writer import size_on_disk

    return size_on_disk(path)


def pocketsphinx_model_bytes() -> int | None:
    """Bytes PocketSphinx en-us loads: acoustic model folder, trigram LM, CMUdict."""
    try:
        import pocketsphinx
    except ImportError:
        return None
    root = Path(pocketsphinx.get_model_path()) / "en-us"
    files = [*(root / "en-us").rglob("*"), root / "en-us.lm.bin", root / "cmudict-en-us.dict"]
    return sum(f.stat().st_size for f in files if f.is_file())


# --------------------------------------------------------------------------------- checkpoint cards
def parse_named_paths(items: Sequence[str] | None, defaults: Mapping[str, str]) -> dict[str, str]:
    """``["name=path", ...]`` -> {name: path}; None means the defaults, an empty list none.

    Example:
        >>> parse_named_paths(["base=runs/a", "both=runs/b=c"], {})
        {'base': 'runs/a', 'both': 'runs/b=c'}
        >>> parse_named_paths(None, {"x": "y"})
        {'x': 'y'}
    """
    if items is None:
        return dict(defaults)
    named = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"expected NAME=PATH, got {item!r}")
        named[name] = path
    return named


def card_summary(card: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """Training facts of a checkpoint: steps, wall hours, paired hours, init and whether DeCRED is on.

    Example:
        >>> card = {"ledger": {"total_steps": 5000, "total_wall_hours": 1.25}, "paired_hours": 2.9,
        ...         "description": "E-Branchformer CTC/attention character ASR (DeCRED; init speech2c:runs/s2c)."}
        >>> card_summary(card, {"intermediate_layers": [2]})
        {'steps': 5000, 'hours': 1.25, 'paired_hours': 2.9, 'init': 'speech2c', 'decred': True}
    """
    ledger = card.get("ledger") or {}
    match = re.search(r"init ([a-z0-9_-]+)", str(card.get("description", "")))
    return {
        "steps": ledger.get("total_steps"),
        "hours": ledger.get("total_wall_hours"),
        "paired_hours": card.get("paired_hours"),
        "init": match.group(1) if match else None,
        "decred": bool(config.get("intermediate_layers")),
    }


def checkpoint_folder(name_or_path: str) -> Path | None:
    """The folder of a shipped name or a path holding config.json, else None (not trained yet)."""
    from speechkit.checkpoint import CONFIG_FILE, resolve_checkpoint
    from speechkit.errors import CheckpointError

    in_repo = common.REPO_ROOT / name_or_path  # the defaults are repository-relative
    try:
        folder = resolve_checkpoint(in_repo if in_repo.is_dir() else name_or_path)
    except CheckpointError:
        return None
    return folder.resolve() if (folder / CONFIG_FILE).is_file() else None


# ------------------------------------------------------------------------------------------ targets
def check_targets(
    rows: Sequence[Mapping[str, Any]], sizes: Sequence[Mapping[str, Any]], default_label: str
) -> list[dict]:
    """The issue's three targets against the measured rows (``met`` is None when not measured).

    Example:
        >>> rows = [{"split": "test_ood", "system": "sk (joint)", "wer": 0.1, "rtf_cpu": 0.04},
        ...         {"split": "test_ood", "system": "PocketSphinx en-us", "wer": 0.2}]
        >>> [t["met"] for t in check_targets(rows, [{"int8_bundle": "not exported"}], "sk (joint)")]
        [True, True, None]
    """
    ood = {r["system"]: r for r in rows if r["split"] == "test_ood"}
    ours, sphinx = ood.get(default_label), ood.get("PocketSphinx en-us")
    targets = []
    if ours is not None and sphinx is not None:
        measured = f"{ours['wer']:.1%} vs {sphinx['wer']:.1%}"
        targets.append({"target": "WER below PocketSphinx on test_ood", "measured": measured,
                        "met": ours["wer"] < sphinx["wer"]})  # fmt: skip
    else:
        targets.append({"target": "WER below PocketSphinx on test_ood", "measured": "not run", "met": None})
    ours_rtf = [r["rtf_cpu"] for r in rows if r["system"] == default_label and r.get("rtf_cpu") is not None]
    worst = max(ours_rtf) if ours_rtf else None
    targets.append({"target": f"RTF <= {RTF_TARGET} on one thread (CPU time, worst split)",
                    "measured": "not run" if worst is None else f"{worst:.4f}",
                    "met": None if worst is None else worst <= RTF_TARGET})  # fmt: skip
    int8 = sizes[0].get("int8_bundle") if sizes else NOT_EXPORTED
    targets.append({"target": f"int8 bundle <= {INT8_TARGET_BYTES / 1e6:.0f} MB",
                    "measured": int8 if isinstance(int8, str) else f"{int8 / 1e6:.2f} MB",
                    "met": None if isinstance(int8, str) else int8 <= INT8_TARGET_BYTES})  # fmt: skip
    return targets


# -------------------------------------------------------------------------------------- evaluation
def memory_probe(system: str, wav_path: str, model: str = DEFAULT_MODEL) -> None:
    """Load one recogniser and transcribe one file (run in a fresh interpreter by measure_peak_memory)."""
    from speechkit.audio import load_audio

    wav, _ = load_audio(wav_path, target_sample_rate=SAMPLE_RATE)
    if system == "speechkit":
        import speechkit

        speechkit.load(model).transcribe(wav, SAMPLE_RATE)
    else:
        from bench.recognizers import PocketSphinx, WhisperBase

        (WhisperBase(num_threads=1) if system == "whisper" else PocketSphinx()).transcribe(wav, SAMPLE_RATE)


class Evaluator:
    """Transcribes the picked clips of each split, caching hypotheses per (checkpoint, split, mode)."""

    def __init__(self, splits: Sequence[str], count: int) -> None:
        from speechkit.audio import load_audio

        self.utterances: dict[str, list[Utterance]] = {s: common.load_test_set(s, count) for s in splits}
        self.clips = {
            s: [load_audio(u.path, target_sample_rate=SAMPLE_RATE)[0] for u in utts]
            for s, utts in self.utterances.items()
        }
        self.references = {s: [u.text for u in utts] for s, utts in self.utterances.items()}
        self._cache: dict[tuple[str, str, str], tuple[list[str], Timing]] = {}
        self._recognizers: dict[Path, Any] = {}

    def recognizer(self, folder: Path):
        if folder not in self._recognizers:
            import speechkit

            self._recognizers[folder] = speechkit.load(folder)
        return self._recognizers[folder]

    def speechkit(self, folder: Path, split: str, mode: str) -> tuple[list[str], Timing]:
        key = (str(folder), split, mode)
        if key not in self._cache:
            from speechkit.errors import AudioError

            asr = self.recognizer(folder)
            options = dataclasses.replace(asr.options, **decoding_changes(mode))

            def transcribe(clip: np.ndarray) -> str:
                try:
                    return asr.transcribe(clip, SAMPLE_RATE, options).text
                except AudioError as error:  # shorter than the API's minimum: nothing recognised
                    logger.warning("%s: %s", folder.name, error)
                    return ""

            start = time.perf_counter()
            self._cache[key] = transcribe_all(transcribe, self.clips[split])
            logger.info("%s %s %s: %.0f s", folder.name, split, mode, time.perf_counter() - start)
        return self._cache[key]

    def row(self, split: str, system: str, hypotheses: list[str], timing: Timing | None) -> dict[str, Any]:
        row = {"split": split, "system": system, **score_transcripts(self.references[split], hypotheses)}
        if timing is not None:
            row.update(rtf_cpu=timing.rtf_cpu, rtf_wall=timing.rtf_wall, audio_seconds=timing.audio_seconds)
        row["hypotheses"] = hypotheses
        return row


def decoding_changes(mode: str) -> dict[str, str]:
    """``"METHOD"`` or ``"METHOD/DECRED"`` -> the DecodingOptions fields it changes.

    Example:
        >>> decoding_changes("joint"), decoding_changes("attention/final")
        ({'method': 'joint'}, {'method': 'attention', 'decred': 'final'})
    """
    method, slash, strategy = mode.partition("/")
    if method not in METHODS or (slash and strategy not in DECRED_STRATEGIES):
        raise ValueError(
            f"decoding mode must be one of {METHODS}, optionally /{'|'.join(DECRED_STRATEGIES)}: {mode!r}"
        )
    return {"method": method, **({"decred": strategy} if strategy else {})}


def decoding_mode(mode: str) -> str:
    """argparse type of ``--modes``: a valid mode, unchanged."""
    try:
        decoding_changes(mode)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    return mode


def model_label(folder: Path, method: str, default_method: str) -> str:
    """Row label of one decoding mode, e.g. "asr · joint (API default)".

    Example:
        >>> model_label(Path("speechkit/checkpoints/asr"), "ctc_greedy", "joint")
        'asr · ctc_greedy'
    """
    return f"{folder.name} · {method}" + (" (API default)" if method == default_method else "")


def evaluate_peers(evaluator: Evaluator) -> tuple[list[dict], list[dict]]:
    """WER rows and size rows of Whisper base and PocketSphinx (skipped with a warning if missing)."""
    from bench.recognizers import PocketSphinx, RecognizerUnavailable, WhisperBase

    rows, sizes = [], []
    for build, probe in ((lambda: WhisperBase(num_threads=1), "whisper"), (PocketSphinx, "pocketsphinx")):
        try:
            peer = build()
        except RecognizerUnavailable as error:
            logger.warning("skipping a peer: %s", error)
            continue
        for split, clips in evaluator.clips.items():
            hypotheses, timing = transcribe_all(lambda w, peer=peer: peer.transcribe(w, SAMPLE_RATE), clips)
            rows.append(evaluator.row(split, peer.name, hypotheses, timing))
        if probe == "whisper":
            disk = (peer.model_folder / "model.bin").stat().st_size
            sizes.append({"system": peer.name, "params": WHISPER_PARAMS, "disk_bytes": disk, "probe": probe,
                          "stored_as": "F16 (CTranslate2; run as int8)", "fp32_bytes": 2 * disk})  # fmt: skip
        else:
            sizes.append({"system": peer.name, "disk_bytes": pocketsphinx_model_bytes(), "probe": probe,
                          "stored_as": "HMM + 3-gram LM + dict"})  # fmt: skip
    return rows, sizes


def evaluate_checkpoints(
    evaluator: Evaluator, named: Mapping[str, str], modes: Sequence[str] = ABLATION_MODES
) -> list[dict[str, Any]]:
    """One ablation row per NAME=PATH: card facts and WER per split and method ("not trained" if absent)."""
    from speechkit.checkpoint import CONFIG_FILE, read_card

    rows = []
    for name, path in named.items():
        folder = checkpoint_folder(path)
        row: dict[str, Any] = {"row": name, "folder": path}
        if folder is None:
            rows.append({**row, "status": NOT_TRAINED})
            continue
        row.update(
            status="trained",
            **card_summary(read_card(folder), json.loads((folder / CONFIG_FILE).read_text())),
        )
        for split in evaluator.clips:
            for method in modes:
                hypotheses, _ = evaluator.speechkit(folder, split, method)
                row[f"wer_{split}_{method}"] = score_transcripts(evaluator.references[split], hypotheses)[
                    "wer"
                ]
        rows.append(row)
    return rows


def ablation_columns(splits: Sequence[str], modes: Sequence[str] = ABLATION_MODES) -> list[common.Column]:
    """Columns of the ablation table: facts, then one WER column per split and method."""
    columns = [
        common.Column("row", "row", align="left"),
        common.Column("folder", "folder", align="left"),
        common.Column("status", "status", align="left"),
        common.Column("init", "init", align="left"),
        common.Column("decred", "DeCRED", lambda v: "yes" if v else "no"),
        common.Column("steps", "steps"),
        common.Column("hours", "train h", "{:.2f}"),
        common.Column("paired_hours", "paired h", "{:.2f}"),
    ]
    short = {"ctc_greedy": "greedy", "attention": "attn"}
    for split in splits:
        columns += [
            common.Column(f"wer_{split}_{m}", f"WER {split} {short.get(m, m)}", "{:.1%}") for m in modes
        ]
    return columns


# ------------------------------------------------------------------------------------------- figure
def plot_wer_rtf(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """Left: WER per system, one bar per split. Right: WER against CPU RTF (log), marker per split."""
    import matplotlib

    matplotlib.use("Agg")  # file output only; must precede the pyplot import
    import matplotlib.pyplot as plt

    systems = list(dict.fromkeys(r["system"] for r in rows))
    splits = list(dict.fromkeys(r["split"] for r in rows))
    by_key = {(r["system"], r["split"]): r for r in rows}
    fig, (bars, scatter) = plt.subplots(1, 2, figsize=(13.0, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / max(len(splits), 1)
    for i, split in enumerate(splits):
        values = [100 * by_key[(s, split)]["wer"] if (s, split) in by_key else np.nan for s in systems]
        bars.bar(np.arange(len(systems)) + (i - (len(splits) - 1) / 2) * width, values, width, label=split)
    bars.set_xticks(np.arange(len(systems)), systems, rotation=25, ha="right", fontsize=8)
    bars.set_ylabel("WER (%)")
    bars.legend()
    bars.grid(True, axis="y", alpha=0.3)
    colors = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(systems)}
    markers = dict(zip(splits, "os^D"))
    labelled: set[str] = set()
    for r in rows:
        if r.get("rtf_cpu"):
            label = None if r["system"] in labelled else r["system"]
            labelled.add(r["system"])
            scatter.scatter(r["rtf_cpu"], 100 * r["wer"], color=colors[r["system"]], marker=markers[r["split"]],
                            label=label)  # fmt: skip
    for split, marker in markers.items():  # marker legend: one grey entry per split
        scatter.scatter([], [], color="grey", marker=marker, label=split)
    scatter.axvline(RTF_TARGET, color="grey", linestyle=":", label=f"RTF target {RTF_TARGET}")
    scatter.set_xscale("log")
    scatter.set_xlabel("real-time factor, CPU time on one thread (log; lower is faster)")
    scatter.set_ylabel("WER (%)")
    scatter.grid(True, which="both", alpha=0.3)
    scatter.legend(fontsize=6, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="shipped name or checkpoint folder")
    parser.add_argument("--utterances", type=int, default=100, help="per split")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS))
    parser.add_argument(
        "--modes", nargs="+", type=decoding_mode, default=None, help=f"default: {' '.join(MODES)}"
    )
    parser.add_argument("--skip-peers", action="store_true", help="no Whisper base / PocketSphinx rows")
    parser.add_argument("--quick", action="store_true", help="10 utterances, greedy + joint, no peak memory")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes")
    parser.add_argument("--int8-bundle", default=None, help="exported int8 bundle (folder or .zip)")
    parser.add_argument("--w2-bundle", default=None, help="exported 2-bit bundle (folder or .zip)")
    parser.add_argument("--ablation", nargs="*", default=None, metavar="NAME=PATH",
                        help="checkpoint folders of the ablation table (default: " +
                        " ".join(f"{k}={v}" for k, v in DEFAULT_ABLATION.items()) + ")")  # fmt: skip
    parser.add_argument("--lowres", nargs="*", default=None, metavar="NAME=PATH",
                        help="low-resource checkpoint folders (default: " +
                        " ".join(f"{k}={v}" for k, v in DEFAULT_LOWRES.items()) + ")")  # fmt: skip
    parser.add_argument(
        "--output", default=None, help="results JSON (default bench/results/asr[_quick].json)"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.utterances, args.no_memory = min(args.utterances, 10), True
        args.modes = args.modes or list(QUICK_MODES)
    args.modes = args.modes or list(MODES)
    return args


def main(argv: list[str] | None = None) -> int:
    from speechkit.checkpoint import read_card

    args = parse_args(argv)
    common.setup_logging(args.verbose)
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # a line per utterance otherwise
    ablation = parse_named_paths(args.ablation, DEFAULT_ABLATION)
    lowres = parse_named_paths(args.lowres, DEFAULT_LOWRES)
    folder = checkpoint_folder(args.model)
    if folder is None:
        print(
            f"no ASR checkpoint at {args.model!r}: train one (`speechkit train asr`) or pass --model FOLDER"
        )
        return 2
    started = time.perf_counter()
    evaluator = Evaluator(args.splits, args.utterances)
    asr = evaluator.recognizer(folder)
    default_method = asr.options.method
    modes = list(dict.fromkeys([*args.modes, default_method]))  # the API default is always measured
    if not asr.model.decoder.intermediate_layers:  # no DeCRED heads: every strategy is the final head
        modes = [m for m in modes if "/" not in m]
    rows = []
    for split in args.splits:
        for method in modes:
            rows.append(
                evaluator.row(
                    split,
                    model_label(folder, method, default_method),
                    *evaluator.speechkit(folder, split, method),
                )
            )
    sizes = [{"system": folder.name, "params": sum(p.numel() for p in asr.model.parameters()), "probe": "speechkit",
              **safetensors_sizes(folder / "model.safetensors"),
              "int8_bundle": bundle_bytes(args.int8_bundle), "w2_bundle": bundle_bytes(args.w2_bundle)}]  # fmt: skip
    if not args.skip_peers:
        peer_rows, peer_sizes = evaluate_peers(evaluator)
        rows += peer_rows
        sizes += peer_sizes
    if not args.no_memory:
        longest = max((u for utts in evaluator.utterances.values() for u in utts), key=lambda u: u.duration)
        for size in sizes:
            peak = common.measure_peak_memory(
                "bench.asr:memory_probe", (size["probe"], longest.path, str(folder))
            )
            size.update(peak_mib=peak.delta_mib, peak_total_mib=peak.peak_kib / 1024)
    ablation_rows = evaluate_checkpoints(evaluator, ablation)
    lowres_rows = evaluate_checkpoints(evaluator, lowres)
    targets = check_targets(rows, sizes, model_label(folder, default_method, default_method))

    rows.sort(key=lambda r: args.splits.index(r["split"]))
    print(f"## WER and speed ({args.utterances} utterances per split; text scored after "
          "speechkit.asr.text.normalize_text + bench.wer.normalize_text)\n")  # fmt: skip
    print(common.markdown_table(rows, WER_COLUMNS))
    print("\n## Size and memory\n")
    print(common.markdown_table(sizes, SIZE_COLUMNS))
    params = sizes[0]["params"]
    print(
        f"\n(estimates, not bundles: {params / 1e6:.2f} MB at int8, {params / 4e6:.2f} MB at 2 bits per weight)"
    )
    for title, table in (("Ablation", ablation_rows), ("Low-resource", lowres_rows)):
        print(f"\n## {title} (greedy CTC and attention beam {asr.options.beam_size}, DeCRED auto)\n")
        print(common.markdown_table(table, ablation_columns(args.splits)) if table else "(no folders given)")
    print("\n## Targets\n")
    print(common.markdown_table(targets, TARGET_COLUMNS))

    json_path = Path(args.output or common.RESULTS_DIR / ("asr_quick.json" if args.quick else "asr.json"))
    png = plot_wer_rtf(rows, json_path.with_name(f"{json_path.stem}_wer_rtf.png"),
                       title=f"ASR on {args.utterances} utterances per split ({folder.name})")  # fmt: skip
    results = {
        "settings": {"model": str(folder), "weights_sha256": read_card(folder).get("weights_sha256"),
                     "int8_bundle": args.int8_bundle, "w2_bundle": args.w2_bundle, "utterances": args.utterances, "splits": args.splits, "modes": modes,
                     "default_method": default_method, "beam_size": asr.options.beam_size,
                     "normalisation": "bench.wer.normalize_text(speechkit.asr.text.normalize_text(text))",
                     "rtf": "processing seconds / audio seconds, one thread, after one warm-up; CPU = process time",
                     "seconds": time.perf_counter() - started},  # fmt: skip
        "utterances": {s: [{"path": u.path, "text": u.text, "speaker": u.speaker, "duration": u.duration} for u in utts]
                       for s, utts in evaluator.utterances.items()},  # fmt: skip
        "rows": rows, "sizes": sizes, "ablation": ablation_rows, "lowres": lowres_rows, "targets": targets,
    }  # fmt: skip
    path = common.write_results(json_path, results)
    print(f"\nwrote {path} and {png} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
