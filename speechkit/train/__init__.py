"""Training: one trainer for every recipe (single process or torchrun DDP), resumable across sessions.

See ``trainer.py`` for the model contract (``training_step(batch) -> (loss, metrics)``).
"""

from __future__ import annotations

from speechkit.train.distributed import DistributedContext
from speechkit.train.ema import ModelEMA
from speechkit.train.train_config import TrainConfig
from speechkit.train.trainer import Trainer, TrainSummary

__all__ = ["DistributedContext", "ModelEMA", "TrainConfig", "TrainSummary", "Trainer"]
