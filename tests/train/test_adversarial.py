"""The trainer's adversarial stage: a model with an ``adversary`` gets a second, separate update."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import TensorDataset

from speechkit.errors import ConfigError
from speechkit.train import TrainConfig, Trainer
from speechkit.train.discriminators import CombinedDiscriminator, discriminator_loss, feature_matching_loss


def points() -> TensorDataset:
    return TensorDataset(torch.randn(64, 4, generator=torch.Generator().manual_seed(0)))


class TinyGAN(nn.Module):
    """Generator maps x to a sample; the adversary tells real x from generated samples."""

    def __init__(self) -> None:
        super().__init__()
        self.generator = nn.Linear(4, 4)
        self.adversary = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
        self.adversary_grads_at_step: list[bool] = []
        self._fake = None

    def training_step(self, batch):
        (x,) = batch
        fake = self.generator(torch.randn_like(x))
        self._fake = fake.detach()
        loss = ((1 - self.adversary(fake)) ** 2).mean()
        return loss, {"g": float(loss.detach())}

    def adversary_step(self, batch):
        (x,) = batch
        # What the generator pass left in the adversary's gradients (None means: nothing).
        self.adversary_grads_at_step.append(any(p.grad is not None for p in self.adversary.parameters()))
        loss = discriminator_loss([self.adversary(x)], [self.adversary(self._fake)])
        return loss, {"d": float(loss.detach())}


def test_adversary_trains_separately_and_generator_pass_leaves_it_alone(tmp_path):
    torch.manual_seed(0)
    model = TinyGAN()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = TrainConfig(max_steps=5, batch_size=8, precision="fp32", learning_rate=1e-2, log_every=1)
    trainer = Trainer(model, points(), config, tmp_path)
    trainer.fit()
    assert model.adversary_grads_at_step == [False] * 5  # zero_grad(set_to_none) + frozen generator pass
    for name, value in model.state_dict().items():
        assert not torch.equal(value, before[name]), f"{name} did not move"
    adversary_ids = {id(p) for p in model.adversary.parameters()}
    assert not any(id(p) in adversary_ids for p in trainer._params)  # generator clipping set excludes it
    assert all(p.requires_grad for p in model.adversary.parameters())  # unfrozen after each step
    # Resuming restores the adversary and its optimizer moments along with the rest.
    resumed = TinyGAN()
    trainer2 = Trainer(resumed, points(), config.replace(max_steps=6), tmp_path)
    for name, value in model.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name
    assert trainer2.step == 5


def test_adversary_without_step_method_is_refused(tmp_path):
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.adversary = nn.Linear(2, 1)
            self.g = nn.Linear(2, 2)

        def training_step(self, batch):
            return self.g(batch[0]).sum(), {}

    with pytest.raises(ConfigError, match="adversary_step"):
        Trainer(Broken(), points(), TrainConfig(max_steps=1, precision="fp32"), tmp_path)


def test_discriminators_see_both_views_and_losses_reward_the_right_side():
    torch.manual_seed(0)
    disc = CombinedDiscriminator(periods=(2, 3), stft_sizes=(64, 128), channels=4)
    wav = torch.randn(2, 3200)
    logits, features = disc(wav)
    assert len(logits) == 4 and all(x.shape[0] == 2 for x in logits)
    assert all(len(f) >= 5 for f in features)
    assert float(discriminator_loss([torch.ones(3)], [torch.zeros(3)])) == 0.0
    assert float(discriminator_loss([torch.zeros(3)], [torch.ones(3)])) == 2.0
    _, other = disc(wav + 0.5 * torch.randn_like(wav))
    assert float(feature_matching_loss(features, features)) == 0.0
    assert float(feature_matching_loss(features, other)) > 0.01


def test_codec_module_warms_the_discriminator_up_before_the_generator_hears_it(speech_16k):
    from speechkit.codec.rvq_codec import RVQCodec, RVQCodecConfig
    from speechkit.train.recipes.codec_training import CodecTrainingModule

    torch.manual_seed(0)
    tiny = RVQCodecConfig(
        dim=16, latent_dim=8, num_quantizers=2, codebook_size=16, encoder_blocks=(1, 1), decoder_blocks=(1, 1)
    )
    disc = CombinedDiscriminator(periods=(2,), stft_sizes=(128,), channels=4)
    module = CodecTrainingModule(RVQCodec(tiny), adversary=disc, adversary_warmup_steps=1)
    clip = torch.from_numpy(speech_16k[:6400])[None]
    _, metrics = module.training_step(clip)
    assert metrics["adversarial"] == 0.0 and metrics["feature_matching"] == 0.0  # still warming up
    d_loss, d_metrics = module.adversary_step(clip)
    assert d_loss.requires_grad and d_metrics["discriminator"] > 0
    _, metrics = module.training_step(clip)
    assert metrics["adversarial"] > 0.0 and metrics["feature_matching"] > 0.0
    with pytest.raises(RuntimeError, match="follow training_step"):
        module.adversary_step(clip)
        module.adversary_step(clip)


@pytest.mark.slow
def test_two_process_gan_keeps_both_players_identical_across_ranks(tmp_path):
    env = {
        k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")
    }
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(Path.cwd()), env.get("PYTHONPATH", "")])
    worker = Path(__file__).with_name("gan_ddp_worker.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone"]
    result = subprocess.run(
        [*command, str(worker), str(tmp_path)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1)]
    assert not torch.equal(ranks[0]["initial.adversary.0.weight"], ranks[1]["initial.adversary.0.weight"])
    for name in [k for k in ranks[0] if k.startswith("final.")]:
        assert torch.equal(ranks[0][name], ranks[1][name]), name
    moved = ranks[0]["final.adversary.0.weight"] - ranks[0]["initial.adversary.0.weight"]
    assert moved.abs().max() > 1e-3
