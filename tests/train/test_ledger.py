"""ledger: append-only JSONL entries and the summary cards embed."""

from __future__ import annotations

import json

import pytest
import torch

from speechkit.train.ledger import Ledger, describe_hardware, read_ledger, summarize_ledger


def test_append_read_and_summarize(tmp_path):
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    cpu = describe_hardware(torch.device("cpu"), 1, "fp32")
    gpu = {**cpu, "device": "cuda", "name": "H100", "world_size": 8}
    ledger.append(
        "train", step=100, wall_hours=2.0, hardware=cpu, metrics={"segment_hours": 2.0, "loss": 1.0}
    )
    ledger.append("resume", step=100, wall_hours=2.0, hardware=gpu)
    ledger.append("eval", step=300, wall_hours=2.5, hardware=gpu, metrics={"valid_loss": 0.5})
    ledger.append("train", step=300, wall_hours=2.5, hardware=gpu, metrics={"segment_hours": 0.5})
    entries = read_ledger(path)
    assert [e["event"] for e in entries] == ["train", "resume", "eval", "train"]
    assert set(entries[0]) == {"time", "event", "step", "wall_hours", "hardware", "metrics"}
    summary = summarize_ledger(entries)
    assert (summary.total_steps, summary.total_wall_hours, summary.segments, summary.resumes) == (
        300,
        2.5,
        2,
        1,
    )
    assert summary.device_hours == pytest.approx(2.0 + 0.5 * 8)
    assert summary.hours_by_hardware["H100 x 8"] == pytest.approx(0.5)
    assert summary.evaluations == [{"step": 300, "wall_hours": 2.5, "metrics": {"valid_loss": 0.5}}]
    json.dumps(summary.to_dict())


def test_truncated_last_line_is_ignored_and_bad_event_refused(tmp_path):
    path = tmp_path / "ledger.jsonl"
    Ledger(path).append("eval", step=1, wall_hours=0.1, hardware={})
    with open(path, "a") as handle:
        handle.write('{"time": "2025-')  # a kill while writing
    assert len(read_ledger(path)) == 1
    with pytest.raises(ValueError, match="event"):
        Ledger(path).append("pretrain", step=1, wall_hours=0.0, hardware={})
