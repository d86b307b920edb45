"""Train the multi-scale diarization decoder (msdd) on synthetic meetings with a frozen speaker encoder.

    speechkit data meetings                                    # data/meetings (exact RTTM)
    speechkit train msdd --max-minutes 15 --export speechkit/checkpoints/msdd

The first run embeds the train and valid meetings once with ``--speaker-model`` (cached under the
run folder, :mod:`speechkit.train.msdd_data`); training then only runs the small decoder. Labels:
per base step (0.5 s windows every 0.25 s), each reference speaker active or not; centroids: the
speakers' oracle averages, jittered. Resumable and ``torchrun``-ready like every recipe.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

from speechkit.checkpoint import resolve_checkpoint, save_checkpoint
from speechkit.registry import load
from speechkit.speaker.diarize import Diarizer
from speechkit.speaker.msdd import MSDD, MSDDConfig
from speechkit.speaker.segmentation import Scale
from speechkit.train.ledger import summarize_ledger
from speechkit.train.msdd_data import MSDDDataset, build_msdd_cache, collate_msdd
from speechkit.train.recipes.codec_training import combined_ledger
from speechkit.train.train_config import TrainConfig
from speechkit.train.trainer import LEDGER_FILE, Trainer

logger = logging.getLogger(__name__)

NAME = "msdd"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--meetings", default="data/meetings", help="meetings corpus (speechkit data meetings)"
    )
    parser.add_argument(
        "--speaker-model", default="ecapa-tdnn", help="frozen speaker encoder (name or folder)"
    )
    parser.add_argument("--run-dir", default="runs/msdd")
    parser.add_argument("--export", default=None, help="write the checkpoint folder here")
    parser.add_argument("--train-meetings", type=int, default=120)
    parser.add_argument("--valid-meetings", type=int, default=20)
    parser.add_argument("--max-steps", type=int, default=3000)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument(
        "--threshold", type=float, default=0.8,
        help="activity threshold of a second (overlapping) speaker; 0.8 chosen on the valid meetings",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    config = MSDDConfig(speaker_model=args.speaker_model, threshold=args.threshold)
    caches = {split: run_dir / "cache" / f"{split}.safetensors" for split in ("train", "valid")}
    if int(os.environ.get("RANK", "0")) == 0:
        missing = {split: path for split, path in caches.items() if not path.exists()}
        if missing:
            diarizer = Diarizer(
                load(args.speaker_model),
                scales=[Scale(w, s) for w, s in zip(config.windows, config.shifts, strict=True)],
            )
            limits = {"train": args.train_meetings, "valid": args.valid_meetings}
            for split, path in missing.items():
                build_msdd_cache(diarizer, args.meetings, split, path.with_suffix(".partial"), limits[split])
                path.with_suffix(".partial").rename(path)
    while any(not path.exists() for path in caches.values()):  # other torchrun ranks wait for rank 0
        time.sleep(5)
    model = MSDD(config)
    trainer = Trainer(
        model,
        MSDDDataset(caches["train"]),
        TrainConfig(
            max_steps=args.max_steps,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            warmup_steps=200,
            min_lr_ratio=0.05,
            weight_decay=0.01,
            grad_clip_norm=1.0,
            eval_every=args.eval_every,
            checkpoint_every=250,
            log_every=25,
            precision="fp32",
            max_wall_minutes=args.max_minutes,
            best_metric="valid_bce",
        ),
        args.run_dir,
        collate_fn=collate_msdd,
        valid_dataset=MSDDDataset(caches["valid"], jitter=0.0),
    )
    summary = trainer.fit()
    if args.export and trainer.dist.is_main:
        speaker_dir = resolve_checkpoint(args.speaker_model)
        card = {
            "task": "diarization",
            "name": Path(args.export).name,
            "description": "MSDD decoder: dynamic per-step weights over 1.5/1.0/0.5 s scales, per-speaker "
            f"activity (overlap-aware) on top of {speaker_dir.name} embeddings and NME-SC clustering.",
            "data": str(args.meetings),
            "metrics": {"valid": summary.last_eval, "train": summary.last_metrics},
            "headline_metrics": {k: round(v, 4) for k, v in summary.last_eval.items() if k == "valid_bce"},
            "ledger": summarize_ledger(combined_ledger(run_dir)).to_dict(),
            "recipe": f"speechkit train {NAME}",
        }
        out = Path(args.export)
        save_checkpoint(trainer.model.eval(), out, card)
        ledger = combined_ledger(run_dir)
        (out / LEDGER_FILE).write_text("".join(json.dumps(e) + "\n" for e in ledger))
    return 0
