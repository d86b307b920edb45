"""Trainer: learns, resumes exactly after a kill, skips non-finite steps, stops on budget or SIGTERM."""

from __future__ import annotations

import json
import os
import signal

import pytest
import safetensors.torch
import torch
from torch import nn
from torch.utils.data import TensorDataset

from speechkit.errors import ConfigError
from speechkit.train import TrainConfig, Trainer
from speechkit.train.ledger import read_ledger
from speechkit.train.trainer import NonFiniteLossError

pytestmark = pytest.mark.slow  # short training runs (a second or two each)


class Killed(Exception):
    """Stands in for the session being killed mid-step."""


class Regression(nn.Module):
    """A two-layer regressor with the trainer contract; hooks simulate kills, NaNs and SIGTERM."""

    def __init__(
        self, dropout: float = 0.0, kill_at: int = 0, nan_calls: tuple[int, ...] = (), sigterm_at: int = 0
    ):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, 1))
        self.kill_at, self.nan_calls, self.sigterm_at, self.calls = kill_at, nan_calls, sigterm_at, 0

    def training_step(self, batch):
        x, y = batch
        self.calls += 1
        if self.calls == self.kill_at:
            raise Killed
        if self.calls == self.sigterm_at:
            os.kill(os.getpid(), signal.SIGTERM)
        loss = nn.functional.mse_loss(self.net(x), y)
        if self.calls in self.nan_calls:
            loss = loss * float("nan")
        return loss, {"mse": loss.item()}


def _data(count: int = 128, seed: int = 0) -> TensorDataset:
    """y = x w + small noise: learnable to near the noise floor in a few dozen steps."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(count, 4, generator=generator)
    noise = 0.01 * torch.randn(count, 1, generator=generator)
    return TensorDataset(x, x @ torch.tensor([[0.5], [-0.3], [0.2], [0.4]]) + noise)


def _config(**overrides) -> TrainConfig:
    base = dict(
        max_steps=20, batch_size=8, learning_rate=1e-2, warmup_steps=3, checkpoint_every=5, log_every=5
    )
    return TrainConfig(**{**base, "precision": "fp32", "seed": 3, **overrides})


def _model(seed: int = 0, **kwargs) -> Regression:
    torch.manual_seed(seed)
    return Regression(**kwargs)


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_loss_falls(tmp_path):
    trainer = Trainer(_model(), _data(), _config(max_steps=60, log_every=10), tmp_path)
    summary = trainer.fit()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [line["loss"] for line in lines if line["split"] == "train"]
    assert summary.step == 60 and summary.stopped_reason == "max_steps"
    assert losses[-1] < 0.1 * losses[0]
    assert {"mse", "lr", "grad_norm", "steps_per_second"} <= set(summary.last_metrics)


def test_resume_after_kill_equals_straight_run(tmp_path):
    config = _config(ema_decay=0.9)
    straight = _model(dropout=0.2)
    Trainer(straight, _data(), config, tmp_path / "straight").fit()

    with pytest.raises(Killed):  # dies during step 13; the last checkpoint is step 10
        Trainer(_model(dropout=0.2, kill_at=13), _data(), config, tmp_path / "killed").fit()
    resumed = _model(seed=123, dropout=0.2)  # other initial weights: they must be replaced
    summary = Trainer(resumed, _data(), config, tmp_path / "killed").fit()

    assert (summary.start_step, summary.step, summary.steps_done) == (10, 20, 10)
    for key, value in _params(straight).items():
        torch.testing.assert_close(resumed.state_dict()[key], value, atol=1e-6, rtol=0)
    ema = [
        safetensors.torch.load_file(tmp_path / d / "checkpoints/last/ema.safetensors")
        for d in ("straight", "killed")
    ]
    for key in ema[0]:
        torch.testing.assert_close(ema[1][key], ema[0][key], atol=1e-6, rtol=0)
    events = [(e["event"], e["step"]) for e in read_ledger(tmp_path / "killed" / "ledger.jsonl")]
    assert events == [("resume", 10), ("train", 20)]
    state = json.loads((tmp_path / "killed/checkpoints/last/state.json").read_text())
    assert state["step"] == 20 and state["samples_per_rank"] == 20 * 8


def test_gradient_accumulation_matches_the_big_batch(tmp_path):
    big = _model()
    Trainer(big, _data(), _config(max_steps=6, batch_size=8), tmp_path / "big").fit()
    small = _model()
    Trainer(small, _data(), _config(max_steps=6, batch_size=4, grad_accum_steps=2), tmp_path / "small").fit()
    for key, value in _params(big).items():
        torch.testing.assert_close(small.state_dict()[key], value, atol=1e-6, rtol=1e-5)


def test_evaluation_keeps_best_and_leaves_training_randomness_alone(tmp_path):
    plain = _model(dropout=0.3)
    Trainer(plain, _data(), _config(max_steps=10), tmp_path / "plain").fit()

    evaluated = _model(dropout=0.3)
    config = _config(max_steps=10, eval_every=5, best_metric="valid_loss", ema_decay=0.5)
    trainer = Trainer(
        evaluated, _data(), config, tmp_path / "eval",
        valid_dataset=_data(32, seed=1), evaluate_fn=lambda model: {"noise": float(torch.rand(()))},
    )  # fmt: skip
    summary = trainer.fit()
    assert {"valid_loss", "valid_mse", "noise"} <= set(summary.last_eval)
    evals = [e for e in read_ledger(tmp_path / "eval" / "ledger.jsonl") if e["event"] == "eval"]
    assert [e["step"] for e in evals] == [5, 10]
    assert evals[0]["metrics"]["noise"] == evals[1]["metrics"]["noise"]  # evaluation generators are seeded
    best = json.loads((tmp_path / "eval/checkpoints/best/state.json").read_text())
    assert best["best"]["metric"] == "valid_loss" and best["step"] in (5, 10)
    for key, value in _params(plain).items():  # same dropout masks with and without evaluation
        torch.testing.assert_close(evaluated.state_dict()[key], value, atol=0, rtol=0)


def test_non_finite_steps_are_skipped(tmp_path):
    model = _model(nan_calls=(3, 4))
    summary = Trainer(model, _data(), _config(max_steps=8), tmp_path).fit()
    assert summary.step == 8 and summary.skipped_steps == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_too_many_non_finite_steps_raise(tmp_path):
    model = _model(nan_calls=tuple(range(1, 100)))
    with pytest.raises(NonFiniteLossError, match="non-finite for 3 consecutive steps"):
        Trainer(model, _data(), _config(max_steps=8, max_consecutive_nonfinite=3), tmp_path).fit()


def test_wall_budget_stops_checkpoints_and_resumes(tmp_path):
    first = Trainer(_model(), _data(), _config(max_steps=6, max_wall_minutes=1e-6), tmp_path).fit()
    assert (first.stopped_reason, first.step) == ("wall_budget", 1)
    state = json.loads((tmp_path / "checkpoints/last/state.json").read_text())
    assert state["step"] == 1
    second = Trainer(_model(), _data(), _config(max_steps=6), tmp_path).fit()
    assert (second.start_step, second.step, second.stopped_reason) == (1, 6, "max_steps")
    assert [e["event"] for e in read_ledger(tmp_path / "ledger.jsonl")] == ["train", "resume", "train"]
    assert second.total_wall_hours >= first.total_wall_hours


def test_sigterm_stops_gracefully(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    summary = Trainer(_model(sigterm_at=3), _data(), _config(max_steps=10), tmp_path).fit()
    assert (summary.stopped_reason, summary.step) == ("signal", 3)
    assert json.loads((tmp_path / "checkpoints/last/state.json").read_text())["step"] == 3
    assert signal.getsignal(signal.SIGTERM) is before


def test_model_without_training_step_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="training_step"):
        Trainer(nn.Linear(2, 1), _data(), _config(), tmp_path)
