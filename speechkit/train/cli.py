"""``speechkit train RECIPE``: one subcommand per recipe, each reproducing a shipped checkpoint.

Recipes run single-process or under ``torchrun --nproc_per_node=N -m speechkit.cli train RECIPE``;
the trainer picks up torchrun's environment itself.
"""

from __future__ import annotations

import argparse
import importlib

# recipe name -> module with ``add_arguments(parser)`` and ``run(args) -> int``
RECIPES: dict[str, str] = {
    "mel-rvq-demo": "speechkit.train.recipes.mel_rvq_demo",
    "codec-rvq": "speechkit.train.recipes.codec_rvq",
    "codec-rvq-causal": "speechkit.train.recipes.codec_rvq_causal",
    "esc": "speechkit.train.recipes.esc",
    "single-codec": "speechkit.train.recipes.single_codec",
    "tts-aligner": "speechkit.train.recipes.tts_aligner",
    "mobilespeech": "speechkit.train.recipes.mobilespeech",
    "ar-tts": "speechkit.train.recipes.ar_tts",
    "asr-pretrain": "speechkit.train.recipes.asr_pretrain",
    "asr": "speechkit.train.recipes.asr",
    "speaker": "speechkit.train.recipes.speaker",
    "msdd": "speechkit.train.recipes.msdd",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` with one sub-subcommand per recipe."""
    train = subparsers.add_parser("train", help="run a training recipe")
    recipes = train.add_subparsers(dest="recipe", required=True)
    for name, module_name in RECIPES.items():
        module = importlib.import_module(module_name)
        parser = recipes.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(parser)
        parser.set_defaults(func=module.run)
