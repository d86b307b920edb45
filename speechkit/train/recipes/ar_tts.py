"""Train the autoregressive TTS over Single-Codec tokens (ar-tts), with or without forward-backward decoding.

    python -m speechkit.train.token_corpus --data data/speech --codec single-codec --out data/tts-single
    speechkit train ar-tts --tokens data/tts-single --max-minutes 60 --export speechkit/checkpoints/ar-tts-fbd
    speechkit train ar-tts --tokens data/tts-single --no-backward-decoder --fbd-weight 0 \\
        --run-dir runs/ar-tts-baseline --export speechkit/checkpoints/ar-tts-baseline   # the ablation

Phonemizes the token corpus with the text frontend once (``<split>.phonemes.jsonl``), then trains the
left-to-right decoder, plus (by default) the right-to-left twin with the agreement term. Resumable
and ``torchrun``-ready like every recipe.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch

from speechkit.checkpoint import save_checkpoint
from speechkit.train.ledger import summarize_ledger
from speechkit.train.recipes.codec_training import combined_ledger
from speechkit.train.token_corpus import SPLITS, read_token_index
from speechkit.train.train_config import TrainConfig
from speechkit.train.trainer import LEDGER_FILE, Trainer
from speechkit.train.tts_data import ARTTSDataset, collate_ar_tts, phonemize_split
from speechkit.tts.ar_tts import ARTTSConfig, ForwardBackwardTTS

logger = logging.getLogger(__name__)

NAME = "ar-tts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tokens", default="data/tts-single", help="Single-Codec token corpus")
    parser.add_argument("--run-dir", default=f"runs/{NAME}")
    parser.add_argument("--export", default=None)
    parser.add_argument("--max-steps", type=int, default=60_000)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--max-frames", type=int, default=250, help="skip longer utterances (25 Hz frames)")
    parser.add_argument("--fbd-weight", type=float, default=0.1, help="agreement term weight")
    parser.add_argument("--no-backward-decoder", action="store_true", help="baseline: left-to-right only")
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--config", default=None, help="JSON file overriding model config fields")


def run(args: argparse.Namespace) -> int:
    tokens = Path(args.tokens)
    index = read_token_index(tokens)
    todo = [
        s
        for s in SPLITS
        if (tokens / f"{s}.tokens.jsonl").exists() and not (tokens / f"{s}.phonemes.jsonl").exists()
    ]
    if todo:
        from speechkit.text import TextFrontend

        frontend = TextFrontend()
        for split in todo:
            phonemize_split(tokens, split, frontend)
    overrides = json.loads(Path(args.config).read_text()) if args.config else {}
    global_sizes = index.get("global_codebook_sizes") or [1024] * 4
    model = ForwardBackwardTTS(
        ARTTSConfig(
            codec=index["codec"],
            codec_fingerprint=index["fingerprint"],
            sample_rate=int(index["sample_rate"]),
            frame_rate=float(index["frame_rate"]),
            codebook_size=int(index["codebook_sizes"][0]),
            global_num_codes=len(global_sizes),
            global_codebook_size=int(global_sizes[0]),
            backward_decoder=not args.no_backward_decoder,
            fbd_weight=args.fbd_weight,
            **overrides,
        )
    )
    train_set = ARTTSDataset(tokens, "train", args.max_frames)
    valid_set = ARTTSDataset(tokens, "valid", args.max_frames, seed=1)
    config = TrainConfig(
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=500,
        min_lr_ratio=0.05,
        grad_clip_norm=1.0,
        ema_decay=0.999,
        eval_every=args.eval_every,
        checkpoint_every=250,
        log_every=25,
        precision=args.precision,
        max_wall_minutes=args.max_minutes,
    )
    trainer = Trainer(
        model, train_set, config, args.run_dir, collate_fn=collate_ar_tts, valid_dataset=valid_set
    )
    summary = trainer.fit()
    if args.export and trainer.dist.is_main:
        with trainer.ema.applied_to(trainer.model):
            ledger = combined_ledger(Path(args.run_dir))
            variant = (
                "forward-backward decoding"
                if model.backward_decoder is not None
                else "left-to-right baseline"
            )
            card = {
                "task": "tts",
                "name": Path(args.export).name,
                "description": f"Autoregressive TTS over Single-Codec tokens ({variant}).",
                "data": str(tokens),
                "metrics": {"valid": summary.last_eval, "train": summary.last_metrics},
                "headline_metrics": {
                    k: round(v, 3) for k, v in summary.last_eval.items() if k == "valid_ce_forward"
                },
                "ledger": summarize_ledger(ledger).to_dict(),
                "recipe": f"speechkit train {NAME} "
                + ("--no-backward-decoder --fbd-weight 0" if model.backward_decoder is None else ""),
            }
            speaker, global_codes = default_voice(train_set)
            trainer.model.set_default_voice(torch.from_numpy(global_codes))
            card["default_voice"] = speaker
            out = Path(args.export)
            save_checkpoint(trainer.model.eval(), out, card, weights_dtype=torch.float16)
            (out / LEDGER_FILE).write_text("".join(json.dumps(e) + "\n" for e in ledger))
    return 0


def default_voice(dataset: ARTTSDataset) -> tuple[str, np.ndarray]:
    """The most frequent training speaker and the global codes of its first utterance."""
    speaker = max(dataset.by_speaker, key=lambda name: len(dataset.by_speaker[name]))
    return speaker, dataset.tokens.global_codes[dataset.by_speaker[speaker][0]]
