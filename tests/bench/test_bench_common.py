"""bench/common.py: test-set picking, timing, delay removal, peak memory, tables and result JSON."""

from __future__ import annotations

import importlib.util
import json
import logging
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechkit.data.manifest import Utterance, write_manifest
from speechkit.errors import DataError

REPO_ROOT = Path(__file__).resolve().parents[2]


def _load_common():
    """bench/ is not an installed package: import it from the checkout whatever the working directory."""
    if "bench.common" in sys.modules:
        return sys.modules["bench.common"]
    spec = importlib.util.spec_from_file_location("bench.common", REPO_ROOT / "bench" / "common.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


common = _load_common()


def _utterance(speaker: str, index: int, split: str = "test") -> Utterance:
    return Utterance(
        path=f"wavs/{speaker}-{index}.wav",
        text="Hello there.",
        speaker=speaker,
        engine="espeak-ng",
        voice=speaker,
        duration=0.5,
        sample_rate=16000,
        split=split,
        perturbation={},
    )


def test_pick_round_robin_covers_speakers_and_ignores_manifest_order():
    utterances = [_utterance(s, i) for s in ("a", "b", "c") for i in range(4)]
    picked = common.pick_round_robin(utterances, 5)
    assert len(picked) == 5
    assert {u.speaker for u in picked[:3]} == {"a", "b", "c"}  # one per speaker before any repeats
    shuffled = utterances[:]
    random.Random(1).shuffle(shuffled)
    assert common.pick_round_robin(shuffled, 5) == picked
    assert len(common.pick_round_robin(utterances, 100)) == 12
    assert common.pick_round_robin(utterances, 0) == []


def test_load_test_set_reads_the_manifest_and_names_the_fix_when_missing(tmp_path):
    with pytest.raises(DataError, match="speechkit data speech"):
        common.load_test_set("test", 2, tmp_path)
    utterances = [_utterance(s, i) for s in ("a", "b") for i in range(2)]
    write_manifest(tmp_path / "test.jsonl", utterances)
    with pytest.raises(DataError, match="missing"):
        common.load_test_set("test", 2, tmp_path)
    for utt in utterances:
        (tmp_path / utt.path).parent.mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / utt.path, np.zeros(800, dtype=np.float32), 16000)
    picked = common.load_test_set("test", 3, tmp_path)
    assert len(picked) == 3 and all(Path(u.path).is_absolute() and Path(u.path).is_file() for u in picked)


def test_stopwatch_accumulates_and_real_time_factor():
    watch = common.Stopwatch()
    for _ in range(2):
        with watch:
            sum(range(10000))
    first = watch.seconds
    assert first > 0
    with watch:
        pass
    assert watch.seconds >= first
    assert common.real_time_factor(6.0, 2.0) == 3.0
    assert common.real_time_factor(1.0, 0.0) == float("inf")


def test_one_thread_restores_the_thread_count():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with common.one_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("delay", [0, 23, -11])
def test_estimate_lag_and_shift_signal_undo_a_delay(delay):
    reference = np.random.default_rng(0).standard_normal(3000).astype(np.float32)
    delayed = common.shift_signal(reference, -delay, len(reference) + 50)
    assert common.estimate_lag(reference, delayed, 100) == delay
    aligned = common.shift_signal(delayed, delay, len(reference))
    valid = slice(max(-delay, 0), None)  # an advanced signal lost its first samples for good
    assert aligned.shape == reference.shape
    assert np.allclose(aligned[valid], reference[valid])


def test_estimate_lag_stays_inside_the_search_window():
    reference = np.random.default_rng(1).standard_normal(2000)
    delayed = np.concatenate([np.zeros(300), reference])
    assert abs(common.estimate_lag(reference, delayed, 100)) <= 100


def test_markdown_table_formats_aligns_and_marks_missing_values():
    columns = [
        common.Column("name", "codec", align="left"),
        common.Column("pesq", "PESQ", "{:.2f}"),
        common.Column("size", "size", lambda n: f"{n / 2**20:.1f} MiB"),
    ]
    rows = [{"name": "a|b", "pesq": 2.345, "size": 3 * 2**20}, {"name": "c", "pesq": float("nan")}]
    lines = common.markdown_table(rows, columns).splitlines()
    assert lines[0] == "| codec | PESQ | size |"
    assert lines[1] == "| :--- | ---: | ---: |"
    assert lines[2] == "| a\\|b | 2.35 | 3.0 MiB |"
    assert lines[3] == f"| c | {common.MISSING_CELL} | {common.MISSING_CELL} |"


def test_write_results_is_strict_json_with_meta(tmp_path):
    path = common.write_results(
        tmp_path / "sub" / "x.json", {"rows": [{"v": np.float32(1.5), "bad": float("nan"), "p": Path("a")}]}
    )
    data = json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"non-JSON constant {name}"))
    assert data["rows"] == [{"v": 1.5, "bad": None, "p": "a"}]
    assert data["meta"]["torch"] == torch.__version__ and data["meta"]["cpu_count"] >= 1
    assert not list(path.parent.glob("*.tmp"))


def test_find_tool_warns_when_missing(caplog):
    with caplog.at_level(logging.WARNING):
        assert common.find_tool("no-such-tool-speechkit", "the X row") is None
    assert "the X row" in caplog.text
    assert common.find_tool("sh", "a shell") is not None


@pytest.mark.slow
def test_measure_peak_memory_sees_the_work_not_the_parent():
    allocation = common.measure_peak_memory("os:urandom", args=[48 << 20])
    assert 40 <= allocation.delta_mib <= 120
    # This pytest process holds torch (hundreds of MiB); a bare worker must not report that size.
    assert allocation.baseline_kib < 100 * 1024
    idle = common.measure_peak_memory("os:getpid")
    assert idle.delta_mib < 8
    with pytest.raises(RuntimeError, match="no_such_function"):
        common.measure_peak_memory("os:no_such_function")
