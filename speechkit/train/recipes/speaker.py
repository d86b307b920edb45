"""Train the ECAPA-TDNN speaker encoder (ecapa-tdnn) with AAM-softmax over pseudo-speakers.

    speechkit train speaker --max-minutes 40 --export speechkit/checkpoints/ecapa-tdnn

Classes are (corpus speaker, vocal-tract shift) pairs of the train split (see
:mod:`speechkit.train.speaker_data`); noise and reverberation from ``data/noise``. Evaluation:
equal error rate over all same/different pairs of the first ``--eval-utterances`` valid
utterances (speakers never trained on). At export the decision threshold is calibrated on those
trials (the EER point) and AS-norm is kept only if it lowers the valid EER. Resumable and
``torchrun``-ready like every recipe.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from pathlib import Path

import numpy as np
import torch

from speechkit.checkpoint import save_checkpoint
from speechkit.speaker.ecapa import ECAPATDNN, ECAPAConfig
from speechkit.speaker.scoring import as_norm, equal_error_rate
from speechkit.train.asr_data import ASRAugmentation, _read_mono
from speechkit.train.ledger import summarize_ledger
from speechkit.train.recipes.codec_training import combined_ledger
from speechkit.train.speaker_data import SpeakerCropDataset, collate_speaker
from speechkit.train.train_config import TrainConfig
from speechkit.train.trainer import LEDGER_FILE, Trainer

logger = logging.getLogger(__name__)

NAME = "ecapa-tdnn"
ASNORM_TOP_K = 40


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="data/speech", help="speech corpus (manifests)")
    parser.add_argument("--noise", default="data/noise", help="noise/RIR corpus for augmentation")
    parser.add_argument("--run-dir", default="runs/speaker")
    parser.add_argument("--export", default=None, help="write the (EMA) checkpoint folder here")
    parser.add_argument("--max-steps", type=int, default=6000)
    parser.add_argument("--max-minutes", type=float, default=None, help="wall budget of this session")
    parser.add_argument("--batch-size", type=int, default=48)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--crop-seconds", type=float, default=2.0)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--eval-utterances", type=int, default=120)
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--num-workers", type=int, default=0)


def trial_pairs(labels: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All unordered pairs (i < j) of a list of speaker labels: rows, cols, same-speaker flags."""
    rows, cols = np.triu_indices(len(labels), k=1)
    same = np.array([labels[i] == labels[j] for i, j in zip(rows, cols, strict=True)])
    return rows, cols, same


@torch.no_grad()
def embed_utterances(model: ECAPATDNN, paths: list[str], max_seconds: float = 8.0) -> np.ndarray:
    device = next(model.parameters()).device
    out = []
    for path in paths:
        wav = _read_mono(path, model.config.sample_rate)[: int(max_seconds * model.config.sample_rate)]
        out.append(model.embed(torch.from_numpy(wav.astype(np.float32))[None].to(device))[0].cpu().numpy())
    return np.stack(out)


def verification_metrics(model: ECAPATDNN, paths: list[str], speakers: list[str]) -> dict[str, float]:
    """EER (raw cosine and AS-norm against the model's class prototypes) and the EER thresholds."""
    embeddings = embed_utterances(model, paths)
    rows, cols, same = trial_pairs(speakers)
    raw = np.sum(embeddings[rows] * embeddings[cols], axis=1)
    cohort = model.cohort().cpu().numpy()
    normed = as_norm(raw, embeddings[rows] @ cohort.T, embeddings[cols] @ cohort.T, top_k=ASNORM_TOP_K)
    eer, threshold = equal_error_rate(raw, same)
    eer_norm, threshold_norm = equal_error_rate(normed, same)
    return {"eer": eer, "threshold": threshold, "eer_asnorm": eer_norm, "threshold_asnorm": threshold_norm}


def run(args: argparse.Namespace) -> int:
    data = Path(args.data)
    augmentation = None if args.no_augment else ASRAugmentation.from_noise_corpus(args.noise)
    config = ECAPAConfig(channels=args.channels, num_classes=1)
    train_set = SpeakerCropDataset(
        data / "train.jsonl", config.vtlp_factors, args.crop_seconds, augmentation=augmentation
    )
    config = config.replace(num_classes=train_set.num_classes)
    model = ECAPATDNN(config)
    valid = list(SpeakerCropDataset(data / "valid.jsonl").records)
    order = np.random.default_rng(0).permutation(len(valid))[: args.eval_utterances]
    eval_paths = [str(valid[i].path) for i in order]
    eval_speakers = [valid[i].speaker for i in order]
    logger.info(
        "speaker: %d params, %d classes (%d speakers x %d shifts), %d items per epoch",
        sum(p.numel() for p in model.parameters()), train_set.num_classes, len(train_set.speakers),
        len(config.vtlp_factors), len(train_set),
    )  # fmt: skip
    train_config = TrainConfig(
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=300,
        min_lr_ratio=0.02,
        weight_decay=2e-5,
        grad_clip_norm=5.0,
        ema_decay=0.998,
        eval_every=args.eval_every,
        checkpoint_every=250,
        log_every=25,
        precision=args.precision,
        num_workers=args.num_workers,
        max_wall_minutes=args.max_minutes,
        best_metric="eer",
    )
    trainer = Trainer(
        model, train_set, train_config, args.run_dir, collate_fn=collate_speaker,
        evaluate_fn=lambda m: verification_metrics(m, eval_paths, eval_speakers),
    )  # fmt: skip
    summary = trainer.fit()
    if args.export and trainer.dist.is_main:
        ema = trainer.ema.applied_to(trainer.model) if trainer.ema is not None else contextlib.nullcontext()
        with ema:
            model = trainer.model.eval()
            metrics = verification_metrics(model, eval_paths, eval_speakers)
            use_norm = metrics["eer_asnorm"] < metrics["eer"]
            model.config = model.config.replace(
                threshold=round(metrics["threshold_asnorm" if use_norm else "threshold"], 5),
                asnorm_top_k=ASNORM_TOP_K if use_norm else 0,
                cosine_threshold=round(metrics["threshold"], 5),
            )
            card = {
                "task": "speaker",
                "name": Path(args.export).name,
                "description": "ECAPA-TDNN speaker embeddings (192-d), AAM-softmax over pseudo-speakers; "
                "threshold calibrated at the valid EER point.",
                "data": str(data),
                "classes": train_set.num_classes,
                "metrics": {"valid": metrics, "train": summary.last_metrics},
                "headline_metrics": {"valid_eer": round(min(metrics["eer"], metrics["eer_asnorm"]), 4)},
                "ledger": summarize_ledger(combined_ledger(Path(args.run_dir))).to_dict(),
                "recipe": f"speechkit train speaker --channels {args.channels}",
            }
            out = Path(args.export)
            save_checkpoint(model, out, card, weights_dtype=torch.float16)
            ledger = combined_ledger(Path(args.run_dir))
            (out / LEDGER_FILE).write_text("".join(json.dumps(e) + "\n" for e in ledger))
    return 0
