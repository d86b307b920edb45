"""Worker for test_adversarial.py: a tiny GAN trained by 2 torchrun processes (gloo).

Each rank starts from different weights; rank 0's must win for the generator (DDP) and the adversary
(the trainer's own broadcast and gradient all-reduce). Writes ``OUT_DIR/rank{R}.safetensors``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from speechkit.train import DistributedContext, TrainConfig, Trainer

sys.path.insert(0, str(Path(__file__).parent))
from test_adversarial import TinyGAN, points  # noqa: E402


def main(out_dir: Path) -> None:
    ctx = DistributedContext.from_env(device="cpu").init()
    torch.manual_seed(100 + ctx.rank)  # different initial weights on each rank
    model = TinyGAN()
    initial = {f"initial.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    config = TrainConfig(max_steps=4, batch_size=4, precision="fp32", log_every=1, learning_rate=1e-2)
    Trainer(model, points(), config, out_dir / "run", dist=ctx).fit()
    final = {f"final.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    save_file({**initial, **final}, str(out_dir / f"rank{ctx.rank}.safetensors"))
    ctx.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
