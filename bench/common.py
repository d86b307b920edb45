"""Helpers every benchmark script needs: test sets, one-thread timing, peak memory, tables, JSON.

A benchmark here is a script (``python -m bench.<family>``) that runs speechkit models and named
peers on the same held-out audio, prints one markdown table and writes ``bench/results/<family>.json``
plus PNGs. These helpers keep the measurements comparable across scripts:

- :func:`load_test_set` picks utterances deterministically, round-robin over speakers, and fails
  with the command that builds the corpus when it is missing;
- :func:`one_thread` + :class:`Stopwatch` + :func:`real_time_factor` time work on one CPU thread
  and report it as "x real time" (audio seconds per processing second, higher is faster);
- :func:`measure_peak_memory` runs a workload in a fresh interpreter and reads its peak RSS;
- :func:`markdown_table` and :func:`write_results` print and store the numbers.

Example:
    >>> print(markdown_table([{"name": "a", "x": 1.23456}], [Column("name", "codec", align="left"),
    ...                                                     Column("x", "PESQ", "{:.2f}")]))
    | codec | PESQ |
    | :--- | ---: |
    | a | 1.23 |
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from speechkit.data.manifest import Utterance, read_manifest
from speechkit.errors import DataError

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
SPEECH_CORPUS_DIR = REPO_ROOT / "data" / "speech"
MISSING_CELL = "–"


# ---------------------------------------------------------------------------------------------- data
def load_test_set(split: str, num_utterances: int, corpus_dir: str | Path | None = None) -> list[Utterance]:
    """Deterministically pick ``num_utterances`` utterances of a corpus split.

    Speakers are visited round-robin (sorted by id), and each speaker's utterances in the order of
    the sha256 of their file name, so the pick covers as many voices as possible and does not change
    when the manifest is reordered or other splits grow.

    Args:
        split: manifest name, e.g. "test" or "test_ood" (``<corpus_dir>/<split>.jsonl``).
        num_utterances: how many to return (all of them if the split is smaller).
        corpus_dir: corpus folder; ``data/speech`` of the repository by default.

    Returns:
        Utterances with absolute paths.

    Raises:
        DataError: the manifest or a picked wav is missing (the message says how to build it).
    """
    corpus_dir = Path(corpus_dir) if corpus_dir is not None else SPEECH_CORPUS_DIR
    manifest = corpus_dir / f"{split}.jsonl"
    hint = "build it with `speechkit data speech`"
    if not manifest.is_file():
        raise DataError(f"speech corpus split {split!r} not found at {manifest}: {hint}")
    utterances = [r for r in read_manifest(manifest) if isinstance(r, Utterance)]
    picked = pick_round_robin(utterances, num_utterances)
    missing = [u.path for u in picked if not Path(u.path).is_file()]
    if missing:
        raise DataError(f"{len(missing)} audio files of {manifest} are missing (e.g. {missing[0]}): {hint}")
    return picked


def pick_round_robin(utterances: Sequence[Utterance], count: int) -> list[Utterance]:
    """``count`` utterances taken one per speaker in turn (speakers sorted, files by name hash)."""
    by_speaker: dict[str, list[Utterance]] = {}
    for utt in utterances:
        by_speaker.setdefault(utt.speaker, []).append(utt)
    queues = [
        sorted(items, key=lambda u: hashlib.sha256(Path(u.path).name.encode()).hexdigest())
        for _, items in sorted(by_speaker.items())
    ]
    picked: list[Utterance] = []
    depth = 0
    while len(picked) < count and any(depth < len(q) for q in queues):
        picked.extend(q[depth] for q in queues if depth < len(q))
        depth += 1
    return picked[: max(count, 0)]


# -------------------------------------------------------------------------------------------- timing
@contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with one torch intra-op thread (restored afterwards): edge-device timing."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class Stopwatch:
    """Accumulates wall-clock seconds over every ``with`` block it guards.

    Example:
        >>> watch = Stopwatch()
        >>> with watch:
        ...     _ = sum(range(1000))
        >>> watch.seconds > 0
        True
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start: float | None = None

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._start is not None
        self.seconds += time.perf_counter() - self._start
        self._start = None


def real_time_factor(audio_seconds: float, processing_seconds: float) -> float:
    """Speed as "x real time": seconds of audio handled per second of processing (higher is faster).

    Example:
        >>> real_time_factor(10.0, 0.5)
        20.0
    """
    if processing_seconds <= 0:
        return math.inf
    return audio_seconds / processing_seconds


def estimate_lag(reference: np.ndarray, degraded: np.ndarray, max_lag: int) -> int:
    """Delay of ``degraded`` against ``reference``: the cross-correlation peak within ±max_lag samples.

    Sample-level metrics (STOI, log-mel distance) punish a few ms of algorithmic delay as if it were
    distortion, so a benchmark estimates each system's delay and removes it (:func:`shift_signal`)
    before scoring. For codecs that do not keep the phase (vocoders, Griffin-Lim) one utterance
    gives a noisy estimate: take the median over many.

    Args:
        reference: [T] clean audio.
        degraded: [T'] decoded audio.
        max_lag: largest shift searched, in samples.

    Returns:
        The lag in samples; > 0 means ``degraded`` is late.

    Example:
        >>> x = np.random.default_rng(0).standard_normal(4000)
        >>> estimate_lag(x, np.concatenate([np.zeros(37), x]), 100)
        37
    """
    ref, deg = np.asarray(reference, dtype=np.float64), np.asarray(degraded, dtype=np.float64)
    size = len(ref) + len(deg)
    corr = np.fft.irfft(np.fft.rfft(deg, size) * np.conj(np.fft.rfft(ref, size)), size)
    lags = np.arange(-min(max_lag, len(ref) - 1), min(max_lag, len(deg) - 1) + 1)
    return int(lags[np.argmax(corr[lags % size])])  # corr[lag] = sum_t deg[t + lag] * ref[t]


def shift_signal(signal: np.ndarray, lag: int, length: int) -> np.ndarray:
    """Advance ``signal`` by ``lag`` samples (delay it when negative), cut or zero-padded to ``length``.

    Example:
        >>> shift_signal(np.array([0.0, 0.0, 1.0, 2.0]), 2, 3).tolist(), shift_signal(np.array([1.0]), -1, 2).tolist()
        ([1.0, 2.0, 0.0], [0.0, 1.0])
    """
    signal = np.asarray(signal, dtype=np.float32)
    shifted = signal[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag, dtype=np.float32), signal])
    out = np.zeros(length, dtype=np.float32)
    out[: min(length, len(shifted))] = shifted[:length]
    return out


# -------------------------------------------------------------------------------------------- memory
# VmHWM (the high-water RSS of this process's own address space), not ru_maxrss: a process started
# from Python inherits the parent's resident pages until it execs, and ru_maxrss keeps that peak, so
# every worker spawned by a benchmark that has torch loaded would report at least the benchmark's size.
_MEMORY_WORKER = """
import importlib, json, resource, sys
target, payload, mode = sys.argv[1:4]
module_name, _, function_name = target.partition(":")
module = importlib.import_module(module_name)
if mode == "run":
    call = json.loads(payload)
    getattr(module, function_name)(*call["args"], **call["kwargs"])
try:
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == "darwin" else 1)
print(json.dumps({"peak_kib": peak}))
"""


@dataclasses.dataclass(frozen=True)
class PeakMemory:
    """Peak resident memory of a workload run in a fresh interpreter, in KiB.

    Args:
        peak_kib: high-water RSS (Linux ``VmHWM``; ``ru_maxrss`` elsewhere) of the interpreter after it
            imported the target's module and ran it.
        baseline_kib: the same for a fresh interpreter that only imported the module.
    """

    peak_kib: int
    baseline_kib: int

    @property
    def delta_mib(self) -> float:
        """What the work itself added on top of the imports, MiB."""
        return max(self.peak_kib - self.baseline_kib, 0) / 1024


def _run_memory_worker(target: str, payload: str, mode: str, timeout: float) -> dict[str, int]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", _MEMORY_WORKER, target, payload, mode],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory worker for {target} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_peak_memory(
    target: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    timeout: float = 600.0,
) -> PeakMemory:
    """Run ``module:function(*args, **kwargs)`` in a fresh Python and measure its peak memory.

    Two interpreters are started with one thread and the repository on ``PYTHONPATH``: one imports
    the module and runs the call, the other only imports it (the baseline), so ``delta_mib`` is the
    peak the work added over "Python + the same imports" (model weights loaded inside the call count).

    Args:
        target: ``"package.module:function"``, importable from the repository root.
        args: JSON-serialisable positional arguments.
        kwargs: JSON-serialisable keyword arguments.
        timeout: seconds before a worker is killed.

    Returns:
        The :class:`PeakMemory`.

    Raises:
        RuntimeError: the worker failed (its stderr tail is in the message).
    """
    payload = json.dumps({"args": list(args), "kwargs": dict(kwargs or {})})
    run = _run_memory_worker(target, payload, "run", timeout)
    base = _run_memory_worker(target, payload, "baseline", timeout)
    return PeakMemory(int(run["peak_kib"]), int(base["peak_kib"]))


# ------------------------------------------------------------------------------------------- output
@dataclasses.dataclass(frozen=True)
class Column:
    """One table column: row key, header, how to format a value, and alignment ("left"/"right")."""

    key: str
    header: str
    fmt: str | Callable[[Any], str] = "{}"
    align: str = "right"


def format_cell(value: Any, fmt: str | Callable[[Any], str] = "{}") -> str:
    """Format one value; None and NaN become a dash, and ``|`` is escaped for markdown.

    Example:
        >>> format_cell(float("nan"), "{:.2f}"), format_cell(3.14159, "{:.2f}")
        ('–', '3.14')
    """
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return MISSING_CELL
    text = fmt(value) if callable(fmt) else fmt.format(value)
    return text.replace("|", "\\|")


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    """A GitHub markdown table of ``rows`` (dicts) with the given columns (missing keys show a dash)."""
    header = "| " + " | ".join(c.header for c in columns) + " |"
    rule = "| " + " | ".join(":---" if c.align == "left" else "---:" for c in columns) + " |"
    body = ["| " + " | ".join(format_cell(row.get(c.key), c.fmt) for c in columns) + " |" for row in rows]
    return "\n".join([header, rule, *body])


def to_jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays unwrapped, NaN/inf -> None, paths -> str, dataclasses -> dict.

    Example:
        >>> to_jsonable({"a": np.float32(0.5), "b": [float("nan"), Path("x")]})
        {'a': 0.5, 'b': [None, 'x']}
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def environment_info() -> dict[str, Any]:
    """Where and when the numbers were measured: versions, CPU, git commit, command line."""
    import torch

    argv = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]  # orig_argv keeps "-m module"
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if "model name" in ln]
        cpu = names[0] if names else cpu
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(argv[0]).name, *argv[1:]]),
        "git_commit": commit,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
    }


def write_results(path: str | Path, results: Mapping[str, Any]) -> Path:
    """Write a benchmark's results as JSON (with ``meta`` = :func:`environment_info` added), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"meta": environment_info(), **results}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(data), indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def find_tool(name: str, purpose: str) -> str | None:
    """Path of an external program, or None with a warning that ``purpose`` is skipped."""
    path = shutil.which(name)
    if path is None:
        logger.warning("%s not found on PATH: skipping %s", name, purpose)
    return path


def setup_logging(verbose: bool = False) -> None:
    """Plain console logging for a benchmark script (warnings by default)."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
