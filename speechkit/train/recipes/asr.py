"""Train the E-Branchformer CTC/attention recogniser (asr): from scratch or fine-tuned from Speech2C.

    speechkit train asr --max-minutes 120 --export speechkit/checkpoints/asr              # DeCRED, from scratch
    speechkit train asr --no-decred --run-dir runs/asr-base                               # the ablation baseline
    speechkit train asr-pretrain --export runs/speech2c                                   # unpaired speech
    speechkit train asr --init-from runs/speech2c --max-utterances 400 --run-dir runs/asr-s2c-400
    speechkit train asr --max-utterances 400 --run-dir runs/asr-400                       # low-resource control

``--init-from`` takes a Speech2C pre-training checkpoint (its front-end, encoder and decoder are
copied; the architecture comes from its nested config) or an ASR checkpoint (continued). Training
evaluates greedy-CTC WER/CER on the first ``--eval-utterances`` valid utterances. Resumable and
``torchrun``-ready like every recipe.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from pathlib import Path

import torch

from speechkit.asr.model import ASRConfig, EBranchformerASR
from speechkit.asr.scoring import character_error_rate, word_error_rate
from speechkit.asr.speech2c import Speech2CPretrainer, init_asr_from_speech2c
from speechkit.checkpoint import load_model, save_checkpoint
from speechkit.decoders.ctc import ctc_greedy
from speechkit.train.asr_data import ASRAugmentation, ASRDataset, collate_asr, feature_statistics
from speechkit.train.ledger import summarize_ledger
from speechkit.train.recipes.codec_training import combined_ledger
from speechkit.train.train_config import TrainConfig
from speechkit.train.train_state import find_training_state
from speechkit.train.trainer import LEDGER_FILE, Trainer

logger = logging.getLogger(__name__)

NAME = "asr"


def add_common_arguments(parser: argparse.ArgumentParser, name: str, max_steps: int) -> None:
    parser.add_argument("--data", default="data/speech", help="speech corpus (manifests)")
    parser.add_argument("--noise", default="data/noise", help="noise/RIR corpus for augmentation")
    parser.add_argument("--run-dir", default=f"runs/{name}")
    parser.add_argument("--export", default=None, help="write the (EMA) checkpoint folder here")
    parser.add_argument("--max-steps", type=int, default=max_steps)
    parser.add_argument("--max-minutes", type=float, default=None, help="wall budget of this session")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=1000)
    parser.add_argument("--max-seconds", type=float, default=10.0, help="skip longer utterances")
    parser.add_argument("--no-augment", action="store_true", help="no speed/noise/RIR augmentation")
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--config", default=None, help="JSON file overriding ASR config fields")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, NAME, max_steps=40_000)
    parser.add_argument("--init-from", default=None, help="Speech2C or ASR checkpoint folder")
    parser.add_argument("--max-utterances", type=int, default=None, help="paired subset (low-resource runs)")
    parser.add_argument("--subset-seed", type=int, default=0, help="which random paired subset")
    parser.add_argument("--no-decred", action="store_true", help="baseline: no intermediate decoder classifiers")
    parser.add_argument("--eval-utterances", type=int, default=64)


def train_config(args: argparse.Namespace, best_metric: str | None) -> TrainConfig:
    return TrainConfig(
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        min_lr_ratio=0.02,
        weight_decay=0.01,
        grad_clip_norm=5.0,
        ema_decay=0.999,
        eval_every=args.eval_every,
        checkpoint_every=250,
        log_every=25,
        precision=args.precision,
        num_workers=args.num_workers,
        max_wall_minutes=args.max_minutes,
        best_metric=best_metric,
    )


def augmentation(args: argparse.Namespace) -> ASRAugmentation | None:
    return None if args.no_augment else ASRAugmentation.from_noise_corpus(args.noise)


def build_model(args: argparse.Namespace) -> tuple[EBranchformerASR, str]:
    """The model to train and where its weights come from."""
    overrides = json.loads(Path(args.config).read_text()) if args.config else {}
    if args.no_decred:
        overrides["intermediate_layers"] = []
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    if args.init_from is None or find_training_state(args.run_dir) is not None:
        return EBranchformerASR(ASRConfig(**overrides)), "scratch"
    source = load_model(args.init_from)
    if isinstance(source, Speech2CPretrainer):
        model = EBranchformerASR(source.config.asr.replace(**overrides))
        copied = init_asr_from_speech2c(model, source)
        logger.info("initialised %d tensors from the Speech2C checkpoint %s", copied, args.init_from)
        return model, f"speech2c:{args.init_from}"
    if overrides:
        logger.warning("--config is ignored when continuing an ASR checkpoint")
    return source.train(), f"continued:{args.init_from}"


@torch.no_grad()
def evaluate_ctc(model: EBranchformerASR, dataset: ASRDataset, count: int) -> dict[str, float]:
    """Greedy-CTC WER and CER on the first ``count`` utterances (cheap enough to run while training)."""
    refs, hyps = [], []
    for index in range(min(count, len(dataset))):
        item = dataset[index]
        encoded, _ = model.encode(item["wav"][None].to(next(model.parameters()).device))
        tokens = ctc_greedy(model.ctc_log_probs(encoded)[0].cpu().numpy()).tokens
        refs.append(dataset.texts[index])
        hyps.append(model.vocabulary.ids_to_text(tokens))
    return {"wer_ctc": word_error_rate(refs, hyps), "cer_ctc": character_error_rate(refs, hyps)}


def run(args: argparse.Namespace) -> int:
    data = Path(args.data)
    model, origin = build_model(args)
    train_set = ASRDataset(
        data / "train.jsonl", args.max_seconds, args.max_utterances, args.subset_seed, augmentation(args)
    )
    if origin == "scratch" and find_training_state(args.run_dir) is None:
        plain = ASRDataset(data / "train.jsonl", args.max_seconds, args.max_utterances, args.subset_seed)
        model.frontend.set_statistics(*feature_statistics(model.frontend, plain))
    valid_set = ASRDataset(data / "valid.jsonl", args.max_seconds, max_utterances=200)
    eval_set = ASRDataset(data / "valid.jsonl")
    logger.info(
        "asr: %d params, %d paired utterances (%.2f h), init %s",
        sum(p.numel() for p in model.parameters()), len(train_set), train_set.total_hours(), origin,
    )  # fmt: skip
    trainer = Trainer(
        model, train_set, train_config(args, "wer_ctc"), args.run_dir, collate_fn=collate_asr,
        valid_dataset=valid_set, evaluate_fn=lambda m: evaluate_ctc(m, eval_set, args.eval_utterances),
    )  # fmt: skip
    summary = trainer.fit()
    if args.export and trainer.dist.is_main:
        ema = trainer.ema.applied_to(trainer.model) if trainer.ema is not None else contextlib.nullcontext()
        with ema:
            variant = "baseline" if not model.config.intermediate_layers else "DeCRED"
            card = {
                "task": "asr",
                "name": Path(args.export).name,
                "description": f"E-Branchformer CTC/attention character ASR ({variant}; init {origin}).",
                "data": str(data),
                "paired_utterances": len(train_set),
                "paired_hours": round(train_set.total_hours(), 3),
                "metrics": {"valid": summary.last_eval, "train": summary.last_metrics},
                "headline_metrics": {k: round(v, 4) for k, v in summary.last_eval.items() if k == "wer_ctc"},
                "ledger": summarize_ledger(combined_ledger(Path(args.run_dir))).to_dict(),
                "recipe": f"speechkit train {NAME}" + (" --no-decred" if variant == "baseline" else ""),
            }
            out = Path(args.export)
            save_checkpoint(trainer.model.eval(), out, card, weights_dtype=torch.float16)
            ledger = combined_ledger(Path(args.run_dir))
            (out / LEDGER_FILE).write_text("".join(json.dumps(e) + "\n" for e in ledger))
    return 0
