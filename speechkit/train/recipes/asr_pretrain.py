"""Speech2C pre-training of the ASR encoder and decoder on unpaired speech (asr-pretrain).

    python -m speechkit.train.token_corpus --data data/speech --codec codec-rvq --out data/tts   # pseudo-codes
    speechkit train asr-pretrain --max-minutes 120 --export runs/speech2c
    speechkit train asr --init-from runs/speech2c --max-utterances 400                          # fine-tune

Pseudo-codes are the first RVQ layer of the token corpus (``--tokens``); transcripts are never read.
The architecture is the ASR config (``--config`` overrides its fields), so the fine-tuning recipe
rebuilds the same network.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from pathlib import Path

from speechkit.asr.model import ASRConfig
from speechkit.asr.speech2c import Speech2CConfig, Speech2CPretrainer
from speechkit.checkpoint import save_checkpoint
from speechkit.train.asr_data import Speech2CDataset, collate_speech2c, feature_statistics
from speechkit.train.ledger import summarize_ledger
from speechkit.train.recipes.asr import add_common_arguments, augmentation, train_config
from speechkit.train.recipes.codec_training import combined_ledger
from speechkit.train.token_corpus import read_token_index
from speechkit.train.train_state import find_training_state
from speechkit.train.trainer import LEDGER_FILE, Trainer

logger = logging.getLogger(__name__)

NAME = "asr-pretrain"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, NAME, max_steps=20_000)
    parser.add_argument("--tokens", default="data/tts", help="token corpus with codec-rvq codes")
    parser.add_argument("--mask-prob", type=float, default=0.08)
    parser.add_argument("--decoder-weight", type=float, default=1.0)


def run(args: argparse.Namespace) -> int:
    index = read_token_index(args.tokens)
    overrides = json.loads(Path(args.config).read_text()) if args.config else {}
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    config = Speech2CConfig(
        asr=ASRConfig(**overrides),
        num_codes=int(index["codebook_sizes"][0]),
        codes=f"{index['codec']} layer 1",
        codes_fingerprint=str(index.get("fingerprint", "")),
        code_frame_rate=float(index["frame_rate"]),
        mask_prob=args.mask_prob,
        decoder_weight=args.decoder_weight,
    )
    model = Speech2CPretrainer(config)
    train_set = Speech2CDataset(args.tokens, args.data, "train", args.max_seconds, augmentation=augmentation(args))
    if find_training_state(args.run_dir) is None:
        plain = Speech2CDataset(args.tokens, args.data, "train", args.max_seconds)
        model.frontend.set_statistics(*feature_statistics(model.frontend, plain))
    valid_set = Speech2CDataset(args.tokens, args.data, "valid", args.max_seconds)
    trainer = Trainer(
        model, train_set, train_config(args, None), args.run_dir, collate_fn=collate_speech2c, valid_dataset=valid_set
    )
    summary = trainer.fit()
    if args.export and trainer.dist.is_main:
        ema = trainer.ema.applied_to(trainer.model) if trainer.ema is not None else contextlib.nullcontext()
        with ema:
            ledger = combined_ledger(Path(args.run_dir))
            card = {
                "task": "asr-pretrain",
                "name": Path(args.export).name,
                "description": f"Speech2C pre-training on unpaired speech, pseudo-codes: {config.codes}.",
                "data": str(args.data),
                "metrics": {"valid": summary.last_eval, "train": summary.last_metrics},
                "ledger": summarize_ledger(ledger).to_dict(),
                "recipe": f"speechkit train {NAME}",
            }
            out = Path(args.export)
            save_checkpoint(trainer.model.eval(), out, card)
            (out / LEDGER_FILE).write_text("".join(json.dumps(e) + "\n" for e in ledger))
    return 0
