"""Train MobileSpeech (mobilespeech): zero-shot TTS over codec-rvq tokens with the speech mask decoder.

    python -m speechkit.train.token_corpus --data data/speech --codec codec-rvq --out data/tts
    speechkit train tts-aligner --tokens data/tts --export speechkit/checkpoints/tts-aligner
    speechkit train mobilespeech --tokens data/tts --max-minutes 120 \\
        --init-from speechkit/checkpoints/mobilespeech --export speechkit/checkpoints/mobilespeech

Trains on the token corpus (phonemes, aligner durations, codec tokens); each utterance's prompt is
another utterance of the same speaker, so the prompt is the only way the model learns who speaks.
Cumulative and resumable like every recipe; ``torchrun`` scales it unchanged.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path

import torch

from speechkit.checkpoint import save_checkpoint
from speechkit.errors import DataError
from speechkit.train.ledger import read_ledger, summarize_ledger
from speechkit.train.recipes.codec_training import combined_ledger, continue_from_checkpoint
from speechkit.train.token_corpus import read_token_index, read_token_split
from speechkit.train.train_config import TrainConfig
from speechkit.train.train_state import find_training_state
from speechkit.train.trainer import LEDGER_FILE, Trainer
from speechkit.train.tts_data import MaskedTTSDataset, collate_masked_tts
from speechkit.tts.mobilespeech import MobileSpeech, MobileSpeechConfig

logger = logging.getLogger(__name__)

NAME = "mobilespeech"
DESCRIPTION = (
    "MobileSpeech zero-shot TTS: phoneme encoder, prompt cross-attention, parallel speech mask "
    "decoder over codec-rvq's first 6 token layers (3 kbps), iterative decoding."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tokens", default="data/tts", help="token corpus with phonemes and durations")
    parser.add_argument("--run-dir", default=f"runs/{NAME}")
    parser.add_argument("--export", default=None, help="write the checkpoint folder here at the end")
    parser.add_argument("--init-from", default=None, help="checkpoint to continue when --run-dir is new")
    parser.add_argument("--max-steps", type=int, default=60_000)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--max-frames", type=int, default=100, help="target window (frames at 50 Hz)")
    parser.add_argument("--prompt-frames", type=int, default=150)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--config", default=None, help="JSON file overriding model config fields")
    parser.add_argument("--default-voice", default=None, help="train speaker of the default voice")


def build_model(args: argparse.Namespace, index: dict) -> MobileSpeech:
    if args.init_from and find_training_state(args.run_dir) is None:
        return continue_from_checkpoint(Path(args.init_from), Path(args.run_dir))
    overrides = json.loads(Path(args.config).read_text()) if args.config else {}
    config = MobileSpeechConfig(
        codec=index["codec"],
        codec_fingerprint=index["fingerprint"],
        sample_rate=int(index["sample_rate"]),
        frame_rate=float(index["frame_rate"]),
        **overrides,
    )
    return MobileSpeech(config)


def run(args: argparse.Namespace) -> int:
    tokens = Path(args.tokens)
    index = read_token_index(tokens)
    model = build_model(args, index)
    if model.config.codec_fingerprint != index["fingerprint"]:
        raise DataError(
            f"{tokens} holds tokens of codec weights {index['fingerprint']}, the model was trained on "
            f"{model.config.codec_fingerprint}: re-encode the corpus with the model's codec"
        )
    k = model.config.num_codebooks
    train_set = MaskedTTSDataset(tokens, "train", k, args.max_frames, args.prompt_frames)
    valid_set = MaskedTTSDataset(tokens, "valid", k, args.max_frames, args.prompt_frames, seed=1)
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
    )
    trainer = Trainer(
        model, train_set, config, args.run_dir, collate_fn=collate_masked_tts, valid_dataset=valid_set
    )
    summary = trainer.fit()
    logger.info("trained to step %d (%s)", summary.step, summary.stopped_reason)
    if args.export and trainer.dist.is_main:
        with trainer.ema.applied_to(trainer.model):
            export(trainer.model, tokens, Path(args.run_dir), Path(args.export), args.default_voice, summary)
    return 0


def export(
    model: MobileSpeech, tokens: Path, run_dir: Path, out: Path, default_voice: str | None, summary
) -> None:
    """Save the EMA weights (fp16) with a default voice taken from a training speaker."""
    train = read_token_split(tokens, "train")
    speakers = Counter(r["speaker"] for r in train.records)
    speaker = default_voice or speakers.most_common(1)[0][0]
    candidates = [
        u
        for u, r in enumerate(train.records)
        if r["speaker"] == speaker and r["frames"] >= model.config.default_prompt_frames
    ] or [u for u, r in enumerate(train.records) if r["speaker"] == speaker]
    if not candidates:
        raise DataError(f"default voice {speaker!r} has no training utterance")
    model.set_default_prompt(torch.from_numpy(train.codes(candidates[0])))
    ledger = combined_ledger(run_dir)
    card = {
        "task": "tts",
        "name": NAME,
        "description": DESCRIPTION,
        "data": str(tokens),
        "default_voice": speaker,
        "metrics": {"valid": summary.last_eval, "train": summary.last_metrics},
        "headline_metrics": {
            k: round(v, 3) for k, v in summary.last_eval.items() if k in ("valid_token_ce", "valid_accuracy")
        },
        "ledger": summarize_ledger(ledger).to_dict(),
        "recipe": f"speechkit train {NAME} --init-from speechkit/checkpoints/{NAME}",
    }
    save_checkpoint(model.eval(), out, card, weights_dtype=torch.float16)
    (out / LEDGER_FILE).write_text("".join(json.dumps(e) + "\n" for e in ledger))
    read_ledger(out / LEDGER_FILE)  # written ledgers must read back
