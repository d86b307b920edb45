"""DDP under torchrun (2 CPU processes, gloo): ranks stay identical, see different data, resume exactly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from speechkit.train.ledger import read_ledger

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.slow
def test_two_process_ddp_training(tmp_path):
    env = {
        k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")
    }
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone"]
    result = subprocess.run(
        [*command, str(WORKER), str(tmp_path)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1)]
    names = [k for k in ranks[0] if k.startswith("final.")]
    assert names
    assert not torch.equal(ranks[0]["initial.linear.weight"], ranks[1]["initial.linear.weight"])
    for name in names:  # identical parameters and buffers across ranks ...
        assert torch.equal(ranks[0][name], ranks[1][name]), name
    moved = ranks[0]["final.linear.weight"] - ranks[0]["initial.linear.weight"]
    assert moved.abs().max() > 1e-3  # ... that moved from the start
    seen = [set(r["seen"].tolist()) for r in ranks]
    assert len(seen[0]) == len(seen[1]) == 6 * 2 * 4 and not seen[0] & seen[1]  # disjoint shards
    assert int(ranks[0]["step"]) == int(ranks[1]["step"]) == 6
    checkpoint = tmp_path / "straight" / "checkpoints" / "last"
    assert {p.name for p in checkpoint.glob("rng_rank*")} == {
        "rng_rank0.safetensors",
        "rng_rank1.safetensors",
    }
    ledger = read_ledger(tmp_path / "straight" / "ledger.jsonl")
    assert [e["event"] for e in ledger] == ["train"] and ledger[0]["hardware"]["world_size"] == 2
    # Stopped after one step, resumed by a new Trainer on other weights: same result as the straight run.
    for name in names:
        for rank in ranks:
            torch.testing.assert_close(
                rank[name.replace("final.", "resumed.")], rank[name], atol=1e-6, rtol=0
            )
    events = [(e["event"], e["step"]) for e in read_ledger(tmp_path / "segmented" / "ledger.jsonl")]
    assert events == [("train", 1), ("resume", 1), ("train", 6)]
