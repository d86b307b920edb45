"""Train the phoneme aligner (tts-aligner) and write per-phoneme durations for every corpus split.

    python -m speechkit.train.token_corpus --data data/speech --codec codec-rvq --out data/tts
    speechkit train tts-aligner --tokens data/tts --data data/speech --max-minutes 15 \\
        --export speechkit/checkpoints/tts-aligner

Phonemizes each split with the text frontend (once), trains the forward-sum aligner on the train
split (resumable like every recipe; ``torchrun`` works unchanged), then aligns every split and
writes ``<split>.durations.jsonl`` for the TTS recipes.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from speechkit.checkpoint import save_checkpoint
from speechkit.train.ledger import read_ledger, summarize_ledger
from speechkit.train.token_corpus import SPLITS
from speechkit.train.train_config import TrainConfig
from speechkit.train.trainer import LEDGER_FILE, Trainer
from speechkit.train.tts_data import AlignerDataset, align_split, collate_aligner, phonemize_split
from speechkit.tts.aligner import AlignerConfig, DurationAligner

logger = logging.getLogger(__name__)

NAME = "tts-aligner"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tokens", default="data/tts", help="token corpus (speechkit.train.token_corpus)")
    parser.add_argument("--data", default="data/speech", help="the speech corpus the tokens came from")
    parser.add_argument("--run-dir", default=f"runs/{NAME}")
    parser.add_argument("--export", default=None, help="write the checkpoint folder here at the end")
    parser.add_argument("--max-steps", type=int, default=3000)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--max-frames", type=int, default=600, help="skip longer utterances in training")
    parser.add_argument("--rephonemize", action="store_true", help="redo the phonemes even if present")
    parser.add_argument("--no-align", action="store_true", help="train only; do not write durations")


def run(args: argparse.Namespace) -> int:
    tokens, data = Path(args.tokens), Path(args.data)
    todo = [
        split
        for split in SPLITS
        if (tokens / f"{split}.tokens.jsonl").exists()
        and (args.rephonemize or not (tokens / f"{split}.phonemes.jsonl").exists())
    ]
    if todo:
        from speechkit.text import TextFrontend

        frontend = TextFrontend()
        for split in todo:
            phonemize_split(tokens, split, frontend)
    config = AlignerConfig()
    aligner = DurationAligner(config)
    train_set = AlignerDataset(tokens, "train", data, args.max_frames)
    trainer = Trainer(
        aligner,
        train_set,
        TrainConfig(
            max_steps=args.max_steps,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            warmup_steps=200,
            grad_clip_norm=1.0,
            checkpoint_every=250,
            log_every=25,
            max_wall_minutes=args.max_minutes,
            precision="fp32",
        ),
        args.run_dir,
        collate_fn=collate_aligner,
    )
    summary = trainer.fit()
    if not trainer.dist.is_main:
        return 0
    if not args.no_align:
        for split in SPLITS:
            if (tokens / f"{split}.phonemes.jsonl").exists():
                align_split(aligner, tokens, split, data)
    if args.export:
        ledger = read_ledger(Path(args.run_dir) / LEDGER_FILE)
        card = {
            "task": "alignment",
            "name": NAME,
            "description": "Forward-sum phoneme aligner: durations in codec-rvq frames (50 Hz) for TTS.",
            "data": str(data),
            "metrics": {"train_forward_sum": summary.last_metrics.get("forward_sum")},
            "ledger": summarize_ledger(ledger).to_dict(),
            "recipe": f"speechkit train {NAME}",
        }
        out = Path(args.export)
        save_checkpoint(aligner.eval(), out, card, weights_dtype=torch.float16)
        (out / LEDGER_FILE).write_text("".join(json.dumps(e) + "\n" for e in ledger))
    return 0
