"""The training recipe shared by every codec (RVQ codec, Single-Codec, ESC).

    speechkit train codec-rvq --data data/speech --run-dir runs/codec-rvq --max-minutes 120 \\
        --init-from speechkit/checkpoints/codec-rvq --export speechkit/checkpoints/codec-rvq

A codec model for this recipe provides ``forward(wav [B, T]) -> CodecForwardOutput`` (training
pass with its quantizer losses and statistics) and the codec contract of ``speechkit.codec.api``.

Cumulative: re-running the same command resumes ``--run-dir`` (weights, optimizer, schedule, EMA)
and appends to its ledger; ``--export`` writes the shipped checkpoint with a card that carries the
ledger and the latest validation metrics. Scales unchanged to GPUs and several processes:
``torchrun --nproc_per_node=N -m speechkit.cli train codec-rvq ...``.

Losses: multi-resolution log-mel L1 (weight 15, as DAC), multi-resolution STFT, the phase-aware
compressed complex loss, VQ commitment. ``--adversarial`` adds the adversarial stage (meant for a
model whose reconstruction has converged, i.e. with ``--init-from``): HiFi-GAN's multi-period and a
multi-resolution complex-STFT discriminator (``speechkit.train.discriminators``), least-squares GAN
loss (weight 1) and feature matching (weight 2), as DAC. The discriminator trains alone for
``--adversary-warmup-steps`` before the generator hears it, so a random critic does not pull a good
codec off course.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from speechkit.audio import load_audio
from speechkit.checkpoint import load_model, save_checkpoint
from speechkit.data.manifest import read_manifest
from speechkit.metrics import log_mel_distance, pesq_wb, stoi
from speechkit.train.datasets import AudioCropDataset
from speechkit.train.discriminators import (
    CombinedDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from speechkit.train.ledger import read_ledger, summarize_ledger
from speechkit.train.losses import CompressedComplexLoss, MultiResolutionMelLoss, MultiResolutionSTFTLoss
from speechkit.train.train_config import TrainConfig
from speechkit.train.train_state import find_training_state
from speechkit.train.trainer import LEDGER_FILE, Trainer

logger = logging.getLogger(__name__)

EVAL_BITRATES_KBPS = (1.5, 3.0, 6.0)  # multi-codebook codecs; single-codebook ones use their one rate


class CodecTrainingModule(nn.Module):
    """Wraps a codec with its training losses; ``training_step`` is the trainer's contract."""

    def __init__(
        self,
        codec: nn.Module,
        mel_weight: float = 15.0,
        stft_weight: float = 1.0,
        complex_weight: float = 5.0,
        commitment_weight: float = 0.25,
        adversary: nn.Module | None = None,
        adversarial_weight: float = 1.0,
        feature_matching_weight: float = 2.0,
        adversary_warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        self.codec = codec
        self.adversary = adversary  # a submodule named "adversary" is what the Trainer looks for
        self.adversary_warmup_steps = adversary_warmup_steps
        self.register_buffer("adversary_updates", torch.zeros((), dtype=torch.long))
        self._generated: Tensor | None = None
        self.mel_loss = MultiResolutionMelLoss(codec.sample_rate)
        self.stft_loss = MultiResolutionSTFTLoss()
        self.complex_loss = CompressedComplexLoss()
        self.weights = {
            "mel": mel_weight,
            "stft": stft_weight,
            "complex": complex_weight,
            "commitment": commitment_weight,
            "adversarial": adversarial_weight,
            "feature_matching": feature_matching_weight,
        }

    def training_step(self, batch: Tensor) -> tuple[Tensor, dict[str, float]]:
        out = self.codec(batch)
        prediction = out.audio.float()
        parts = {
            "mel": self.mel_loss(prediction, batch),
            "stft": self.stft_loss(prediction, batch),
            "complex": self.complex_loss(prediction, batch),
            "commitment": out.quantizer.commitment_loss + out.quantizer.codebook_loss,
        }
        if self.adversary is not None:
            parts.update(self._adversarial_losses(prediction, batch))
            self._generated = prediction.detach()
        loss = sum(self.weights[name] * value for name, value in parts.items())
        metrics = {name: float(value.detach()) for name, value in parts.items()}
        metrics["perplexity_1"] = float(out.quantizer.perplexity[0])
        metrics["usage_min"] = float(out.quantizer.usage.min())
        for name, value in (getattr(out, "extra_metrics", None) or {}).items():
            metrics[name] = float(value)
        return loss, metrics

    def _adversarial_losses(self, prediction: Tensor, batch: Tensor) -> dict[str, Tensor]:
        zero = prediction.new_zeros(())
        if int(self.adversary_updates) < self.adversary_warmup_steps:
            return {"adversarial": zero, "feature_matching": zero}
        fake_logits, fake_features = self.adversary(prediction)
        with torch.no_grad():
            _, real_features = self.adversary(batch)
        return {
            "adversarial": generator_adversarial_loss(fake_logits),
            "feature_matching": feature_matching_loss(real_features, fake_features),
        }

    def adversary_step(self, batch: Tensor) -> tuple[Tensor, dict[str, float]]:
        """The discriminator's loss on the real batch and the audio ``training_step`` just generated."""
        if self._generated is None:
            raise RuntimeError("adversary_step must follow training_step on the same batch")
        real_logits, _ = self.adversary(batch)
        fake_logits, _ = self.adversary(self._generated)
        self._generated = None
        self.adversary_updates += 1
        loss = discriminator_loss(real_logits, fake_logits)
        return loss, {"discriminator": float(loss.detach())}


def evaluate_codec(codec: nn.Module, utterances: list[np.ndarray]) -> dict[str, float]:
    """PESQ-WB, STOI and log-mel distance at each evaluation bitrate, averaged over utterances."""
    api = codec.task_api()
    was_training = codec.training
    metrics: dict[str, float] = {}
    for kbps, num_codebooks in eval_rates(api):
        scores = {"pesq": [], "stoi": [], "mel": []}
        for wav in utterances:
            decoded = api.decode(api.encode(wav, api.sample_rate, num_codebooks))
            scores["pesq"].append(pesq_wb(wav, decoded))
            scores["stoi"].append(stoi(wav, decoded, api.sample_rate))
            scores["mel"].append(log_mel_distance(wav, decoded, api.sample_rate))
        for name, values in scores.items():
            metrics[f"{name}@{kbps:g}k"] = round(float(np.nanmean(values)), 4)
    codec.train(was_training)
    return metrics


def eval_rates(api) -> list[tuple[float, int]]:
    """(nominal kbps, codebooks) pairs to evaluate: 1.5/3/6 kbps where reachable, else the full rate."""
    if len(api.codebook_sizes) == 1:
        return [(round(api.bitrate() / 1000, 3), 1)]
    rates = [
        (kbps, api.num_codebooks_for(kbps)) for kbps in EVAL_BITRATES_KBPS if kbps * 1000 <= api.bitrate()
    ]
    return rates or [(round(api.bitrate() / 1000, 3), len(api.codebook_sizes))]


def _load_eval_set(manifest: Path, sample_rate: int, count: int) -> list[np.ndarray]:
    records = read_manifest(manifest)
    picked = records[:: max(1, len(records) // count)][:count]
    return [load_audio(r.path, target_sample_rate=sample_rate)[0] for r in picked]


def add_codec_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """The command-line options of a codec recipe called ``name``."""
    parser.add_argument("--data", default="data/speech", help="speech corpus folder (speechkit data speech)")
    parser.add_argument("--run-dir", default=f"runs/{name}", help="training state; re-run to resume")
    parser.add_argument("--export", default=None, help="write the checkpoint folder here at the end")
    parser.add_argument("--max-steps", type=int, default=200_000)
    parser.add_argument("--max-minutes", type=float, default=None, help="wall budget of this session")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--segment-seconds", type=float, default=1.0)
    parser.add_argument("--learning-rate", type=float, default=6e-4)
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--eval-utterances", type=int, default=8)
    parser.add_argument("--max-utterances", type=int, default=None, help="limit training data (smoke runs)")
    parser.add_argument("--config", default=None, help="JSON file overriding the model config's fields")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers per process")
    parser.add_argument("--adversarial", action="store_true", help="add the GAN stage (see the recipe doc)")
    parser.add_argument("--adversary-warmup-steps", type=int, default=500)
    parser.add_argument(
        "--init-from",
        default=None,
        help="checkpoint folder to continue from when --run-dir is new (a fresh machine resumes the "
        "committed checkpoint this way; its ledger carries on)",
    )


def train_codec(args: argparse.Namespace, model_class: type[nn.Module], card: dict) -> int:
    """Train (or continue) a codec of ``model_class``; ``card`` holds its name and description."""
    data = Path(args.data)
    overrides = json.loads(Path(args.config).read_text()) if args.config else {}
    codec = model_class(model_class.config_class(**overrides))
    if args.init_from and find_training_state(args.run_dir) is None:
        codec = continue_from_checkpoint(Path(args.init_from), Path(args.run_dir))
    adversary = CombinedDiscriminator() if args.adversarial else None
    module = CodecTrainingModule(
        codec, adversary=adversary, adversary_warmup_steps=args.adversary_warmup_steps
    )
    segment = int(args.segment_seconds * codec.sample_rate) // codec.hop_length * codec.hop_length
    train_set = AudioCropDataset(
        [data / "train.jsonl"],
        codec.sample_rate,
        segment,
        max_utterances=args.max_utterances,
        gain_db_range=(-12.0, 3.0),
    )
    eval_set = _load_eval_set(data / "valid.jsonl", codec.sample_rate, args.eval_utterances)
    config = TrainConfig(
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=500,
        lr_schedule="cosine",
        min_lr_ratio=0.05,
        grad_clip_norm=1.0,
        ema_decay=0.999,
        eval_every=args.eval_every,
        checkpoint_every=250,
        log_every=25,
        precision=args.precision,
        num_workers=args.num_workers,
        max_wall_minutes=args.max_minutes,
        best_metric=None,
    )
    trainer = Trainer(
        module, train_set, config, args.run_dir, evaluate_fn=lambda m: evaluate_codec(m.codec, eval_set)
    )
    start = time.time()
    summary = trainer.fit()
    logger.info("trained to step %d in %.1f min", summary.step, (time.time() - start) / 60)
    if args.export and trainer.dist.is_main:
        ema = trainer.ema.applied_to(trainer.model) if trainer.ema is not None else contextlib.nullcontext()
        with ema:
            export_checkpoint(trainer, Path(args.run_dir), Path(args.export), data, card)
    return 0


PREVIOUS_LEDGER = "previous_ledger.jsonl"


def continue_from_checkpoint(checkpoint: Path, run_dir: Path) -> nn.Module:
    """Load a shipped checkpoint's weights for a new run and keep its ledger for the export."""
    codec = load_model(checkpoint).train()
    run_dir.mkdir(parents=True, exist_ok=True)
    previous = checkpoint / LEDGER_FILE
    (run_dir / PREVIOUS_LEDGER).write_text(previous.read_text() if previous.exists() else "")
    logger.info("continuing from %s", checkpoint)
    return codec


def combined_ledger(run_dir: Path) -> list[dict]:
    """Ledger entries of earlier sessions (from the checkpoint) followed by this run's, shifted so
    steps and hours keep counting up across sessions."""
    previous = read_ledger(run_dir / PREVIOUS_LEDGER) if (run_dir / PREVIOUS_LEDGER).exists() else []
    step0 = max((int(e.get("step", 0)) for e in previous), default=0)
    hours0 = max((float(e.get("wall_hours", 0.0)) for e in previous), default=0.0)
    shifted = [
        {
            **e,
            "step": int(e.get("step", 0)) + step0,
            "wall_hours": round(float(e.get("wall_hours", 0.0)) + hours0, 6),
        }
        for e in read_ledger(run_dir / LEDGER_FILE)
    ]
    return previous + shifted


def export_checkpoint(trainer: Trainer, run_dir: Path, out: Path, data: Path, card: dict) -> None:
    """Write the EMA weights as the shipped checkpoint, with the ledger in its card."""
    write_codec_checkpoint(trainer.model.codec, combined_ledger(run_dir), out, data, card)


def write_codec_checkpoint(codec: nn.Module, ledger: list[dict], out: Path, data: Path, card: dict) -> None:
    """Evaluate ``codec`` on the corpus's valid and test_ood picks and save it (fp16) with its ledger."""
    ood = data / "test_ood.jsonl"
    metrics = {"valid": evaluate_codec(codec, _load_eval_set(data / "valid.jsonl", codec.sample_rate, 16))}
    if ood.exists():
        metrics["test_ood"] = evaluate_codec(codec, _load_eval_set(ood, codec.sample_rate, 16))
    headline = metrics.get("test_ood", metrics["valid"])
    api = codec.task_api()
    pesq_keys = [key for key in headline if key.startswith("pesq@")]
    card = {
        "task": "codec",
        **card,
        "bitrates_kbps": [round(api.bitrate(n) / 1000, 3) for n in range(1, len(api.codebook_sizes) + 1)],
        "data": str(data),
        "metrics": metrics,
        "headline_metrics": {f"PESQ-WB@{key[5:]}": headline[key] for key in (pesq_keys[0], pesq_keys[-1])},
        "ledger": summarize_ledger(ledger).to_dict(),
        "recipe": f"speechkit train {card['name']} --init-from speechkit/checkpoints/{card['name']}",
    }
    save_checkpoint(codec.eval(), out, card, weights_dtype=torch.float16)
    (out / LEDGER_FILE).write_text("".join(json.dumps(entry) + "\n" for entry in ledger))
