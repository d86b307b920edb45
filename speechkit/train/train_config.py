"""Training settings: one frozen config per run, stored next to the training state, never read by inference.

Example:
    >>> cfg = TrainConfig(max_steps=100, batch_size=8, ema_decay=0.999)
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> cfg.replace(max_steps=200).max_steps
    200
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

from speechkit.config import ModelConfig
from speechkit.errors import ConfigError

LR_SCHEDULES = ("cosine", "constant")
PRECISIONS = ("auto", "bf16", "fp32")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig(ModelConfig):
    """Hyperparameters of one training run (kind ``"train"``, version 1).

    Sizes are per process: the global batch is ``batch_size * grad_accum_steps * world_size``.
    Steps count optimizer updates; a step skipped for a non-finite loss does not count.

    Args:
        max_steps: optimizer steps of the whole run (over all sessions).
        batch_size: examples per micro-batch and process.
        learning_rate: peak AdamW learning rate.
        weight_decay: AdamW decoupled weight decay (matrices only with the default param groups).
        betas: AdamW betas.
        warmup_steps: linear warmup length in steps (0 = none).
        lr_schedule: ``"cosine"`` (decay to ``min_lr_ratio * learning_rate`` at ``max_steps``) or
            ``"constant"`` (after warmup).
        min_lr_ratio: final learning rate of the cosine schedule, as a fraction of the peak.
        grad_clip_norm: clip the global gradient norm to this (None = no clipping).
        grad_accum_steps: micro-batches per optimizer step.
        ema_decay: decay of the weight EMA (None = no EMA).
        eval_every: evaluate every this many steps (0 = only at the end).
        checkpoint_every: write the training state every this many steps.
        log_every: log metrics every this many steps.
        precision: ``"auto"`` (bf16 autocast where the hardware has it), ``"bf16"`` or ``"fp32"``.
        seed: base seed; process ``r`` seeds its generators with ``seed + r``.
        num_workers: DataLoader worker processes per training process.
        max_wall_minutes: stop, evaluate nothing more, and checkpoint once this session has run this long
            (None = no limit); the next session resumes.
        find_unused_parameters: passed to DistributedDataParallel (set when some parameters get no
            gradient in a step, e.g. quantizer dropout).
        max_consecutive_nonfinite: raise after this many consecutive steps with a non-finite loss or
            gradient norm (each is skipped).
        best_metric: evaluation metric (lower is better) that selects the ``best`` checkpoint
            (None = keep only ``last``).
    """

    KIND: ClassVar[str] = "train"
    VERSION: ClassVar[int] = 1

    max_steps: int
    batch_size: int = 16
    learning_rate: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    lr_schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    grad_clip_norm: float | None = 1.0
    grad_accum_steps: int = 1
    ema_decay: float | None = None
    eval_every: int = 0
    checkpoint_every: int = 500
    log_every: int = 50
    precision: str = "auto"
    seed: int = 0
    num_workers: int = 0
    max_wall_minutes: float | None = None
    find_unused_parameters: bool = False
    max_consecutive_nonfinite: int = 10
    best_metric: str | None = None

    def __post_init__(self) -> None:
        problems = [*self._range_problems(), *self._choice_problems()]
        if problems:
            raise ConfigError("TrainConfig: " + "; ".join(problems))

    def _range_problems(self) -> list[str]:
        at_least = {
            "max_steps": 1,
            "batch_size": 1,
            "grad_accum_steps": 1,
            "checkpoint_every": 1,
            "log_every": 1,
            "max_consecutive_nonfinite": 1,
            "warmup_steps": 0,
            "eval_every": 0,
            "num_workers": 0,
        }
        problems = [
            f"{name} must be an integer >= {low}, got {getattr(self, name)!r}"
            for name, low in at_least.items()
            if not _is_int(getattr(self, name)) or getattr(self, name) < low
        ]
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not self.weight_decay >= 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            problems.append(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            problems.append(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if self.grad_clip_norm is not None and not self.grad_clip_norm > 0:
            problems.append(f"grad_clip_norm must be > 0 or None, got {self.grad_clip_norm!r}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            problems.append(f"ema_decay must be in (0, 1) or None, got {self.ema_decay!r}")
        if self.max_wall_minutes is not None and not self.max_wall_minutes > 0:
            problems.append(f"max_wall_minutes must be > 0 or None, got {self.max_wall_minutes!r}")
        return problems

    def _choice_problems(self) -> list[str]:
        problems = []
        if self.lr_schedule not in LR_SCHEDULES:
            problems.append(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        return problems

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a JSON dict, strictly (unknown or missing keys raise ConfigError naming them).

        Every field must be present, defaults included: a stored run config that lacks a key was
        written by another version, and silently filling a default would change the run.
        """
        if isinstance(data, dict):
            missing = sorted({f.name for f in dataclasses.fields(cls)} - set(data))
            if missing:
                raise ConfigError(f"TrainConfig: missing config keys {missing}")
        config = super().from_dict(data)
        assert isinstance(config, TrainConfig)
        return config

    def lr_multiplier(self, step: int) -> float:
        """Learning-rate factor for optimizer step ``step`` (0-based): linear warmup, then cosine or constant.

        Warmup starts at ``1 / warmup_steps`` rather than 0 so no step is wasted; the cosine reaches
        ``min_lr_ratio`` at ``max_steps`` (Loshchilov & Hutter 2017, SGDR without restarts).

        Example:
            >>> cfg = TrainConfig(max_steps=10, warmup_steps=2, min_lr_ratio=0.1)
            >>> [round(cfg.lr_multiplier(s), 2) for s in (0, 1, 2, 10)]
            [0.5, 1.0, 1.0, 0.1]
        """
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.lr_schedule == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.max_steps - self.warmup_steps))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def replace(self, **overrides: Any) -> TrainConfig:
        """A copy with some fields changed (validated like construction; unknown names raise)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(f"TrainConfig: unknown config keys {unknown}")
        return dataclasses.replace(self, **overrides)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
