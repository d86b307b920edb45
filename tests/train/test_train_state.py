"""train_state: pickle-free, exact and atomic save/load of the training state."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import safetensors.torch
import torch
from torch import nn

from speechkit.errors import CheckpointError
from speechkit.train import DistributedContext, ModelEMA
from speechkit.train import train_state as ts


def _objects(seed: int):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[1].weight = nn.Parameter(torch.randn(2, 4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.8, 0.9))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    return model, optimizer, scheduler, ModelEMA(model, 0.9)


def _train(model, optimizer, scheduler, ema, steps=2):
    for _ in range(steps):
        model(torch.randn(5, 3)).pow(2).mean().backward()
        optimizer.step()
        scheduler.step()
        ema.update(model)


def _save(run_dir, model, optimizer, scheduler, ema, step=2):
    ctx = DistributedContext(device="cpu")
    meta = {"step": step}
    return ts.save_training_state(
        run_dir, model=model, optimizer=optimizer, scheduler=scheduler, ema=ema, meta=meta, dist=ctx
    )


def test_round_trip_is_exact_and_pickle_free(tmp_path):
    objects = _objects(0)
    _train(*objects)
    folder = _save(tmp_path, *objects)
    assert {p.name for p in folder.iterdir()} == {
        "state.json",
        "model.safetensors",
        "ema.safetensors",
        "optimizer.safetensors",
        "rng_rank0.safetensors",
    }
    for path in folder.iterdir():
        assert not path.read_bytes().startswith(b"\x80")  # pickle protocol marker
        if path.suffix == ".json":
            json.loads(path.read_text())
        else:
            safetensors.torch.load_file(path)
    model, optimizer, scheduler, ema = _objects(1)
    state = ts.load_training_state(folder, model=model, optimizer=optimizer, scheduler=scheduler, ema=ema)
    assert state["step"] == 2
    for key, value in objects[0].state_dict().items():
        assert torch.equal(model.state_dict()[key], value)
    assert optimizer.state_dict()["param_groups"] == objects[1].state_dict()["param_groups"]
    for a, b in zip(
        optimizer.state_dict()["state"].values(), objects[1].state_dict()["state"].values(), strict=True
    ):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert scheduler.state_dict() == objects[2].state_dict()
    assert all(torch.equal(ema.shadow[k], objects[3].shadow[k]) for k in ema.shadow)


def test_rng_state_round_trip():
    tensors, meta = ts.capture_rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    ts.restore_rng_state(tensors, json.loads(json.dumps(meta)))
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and random.random() == expected[2]


def test_a_crash_mid_save_keeps_the_previous_state(tmp_path, monkeypatch):
    objects = _objects(0)
    _save(tmp_path, *objects, step=1)
    _train(*objects)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ts, "save_file", broken)
    with pytest.raises(OSError):
        _save(tmp_path, *objects, step=2)
    found = ts.find_training_state(tmp_path)
    assert found is not None and ts.read_state_json(found)["step"] == 1


def test_kill_between_renames_falls_back_to_old(tmp_path):
    objects = _objects(0)
    folder = _save(tmp_path, *objects, step=3)
    folder.rename(folder.with_name(".last.old"))  # the instant between the two renames of a save
    found = ts.find_training_state(tmp_path)
    assert found is not None and found.name == ".last.old" and ts.read_state_json(found)["step"] == 3
    _save(tmp_path, *objects, step=4)  # the next save publishes and only then drops the old state
    assert ts.find_training_state(tmp_path).name == "last" and not found.exists()
    assert ts.find_training_state(tmp_path / "nothing") is None


def test_mismatched_model_is_a_checkpoint_error(tmp_path):
    folder = _save(tmp_path, *_objects(0))
    other = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(other.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    with pytest.raises(CheckpointError, match="does not match"):
        ts.load_training_state(folder, model=other, optimizer=optimizer, scheduler=scheduler, ema=None)


def test_split_join_keeps_types():
    tensors: dict[str, torch.Tensor] = {}
    obj = {"state": {0: {"step": torch.tensor(3.0)}}, "groups": [{"betas": (0.9, 0.99), "fused": None}]}
    encoded = json.loads(json.dumps(ts.split_tensors(obj, "opt", tensors)))
    decoded = ts.join_tensors(encoded, tensors)
    assert decoded["groups"] == obj["groups"] and list(decoded["state"]) == [0]
    with pytest.raises(CheckpointError, match="without pickle"):
        ts.split_tensors({"fn": object()}, "x", {})
