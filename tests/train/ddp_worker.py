"""Worker for test_ddp.py, run as ``torchrun --nproc_per_node=2 --standalone ddp_worker.py OUT_DIR``.

Each rank starts from different weights (DDP must broadcast rank 0's), trains a few steps (two
micro-batches each, so DDP's no_sync path runs) on its shard of an indexed dataset and records the
indices it saw; then trains the same run again in two sessions (stop, resume). It writes
``OUT_DIR/rank{R}.safetensors``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import Dataset

from speechkit.train import DistributedContext, TrainConfig, Trainer


class Indexed(Dataset):
    """Item i is (i, x_i, y_i) with y = x w."""

    def __init__(self, count: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(count, 3, generator=generator)
        self.y = self.x @ torch.tensor([[1.0], [-1.0], [0.5]])

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int):
        return index, self.x[index], self.y[index]


class Recorder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1)
        self.register_buffer("calls", torch.zeros(()))  # a buffer DDP keeps in sync from rank 0
        self.seen: list[int] = []

    def training_step(self, batch):
        index, x, y = batch
        self.seen.extend(index.tolist())
        self.calls += 1
        loss = nn.functional.mse_loss(self.linear(x), y)
        return loss, {"mse": loss.item()}


def _weights(prefix: str, model: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().clone() for k, v in model.state_dict().items()}


def main(out_dir: Path) -> None:
    ctx = DistributedContext.from_env(device="cpu").init()
    config = TrainConfig(
        max_steps=6,
        batch_size=4,
        grad_accum_steps=2,
        learning_rate=0.05,
        checkpoint_every=3,
        log_every=2,
        precision="fp32",
        seed=0,
    )
    data = Indexed(128)
    torch.manual_seed(100 + ctx.rank)
    model = Recorder()
    initial = _weights("initial", model)
    summary = Trainer(model, data, config, out_dir / "straight", dist=ctx).fit()

    # The same run in two sessions: a tiny wall budget stops every rank after one step, then a new
    # Trainer on fresh weights resumes from the checkpoint in the run folder.
    torch.manual_seed(100 + ctx.rank)
    Trainer(Recorder(), data, config.replace(max_wall_minutes=1e-6), out_dir / "segmented", dist=ctx).fit()
    torch.manual_seed(200 + ctx.rank)
    resumed = Recorder()
    Trainer(resumed, data, config, out_dir / "segmented", dist=ctx).fit()

    tensors = {**initial, **_weights("final", model), **_weights("resumed", resumed)}
    tensors |= {"seen": torch.tensor(model.seen, dtype=torch.int64), "step": torch.tensor(summary.step)}
    save_file(tensors, out_dir / f"rank{ctx.rank}.safetensors")
    ctx.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
