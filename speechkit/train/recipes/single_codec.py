"""Train Single-Codec (single-codec): one 4096-code token stream at 25 Hz (300 bps) plus a global embedding.

    speechkit train single-codec --max-minutes 120 --init-from speechkit/checkpoints/single-codec \\
        --export speechkit/checkpoints/single-codec

Crops default to 2 s (not 1 s as the RVQ codec): the BLSTMs and the resampling module see more
context, the reference encoder pools over more frames, and a batch of 16 crops holds 800 token
frames for the 4096 codes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from speechkit.codec.single_codec import SingleCodec, SingleCodecConfig
from speechkit.tokenizers.bitpacking import bits_per_code
from speechkit.train.recipes.codec_training import add_codec_arguments, train_codec

NAME = "single-codec"
DESCRIPTION = (
    "Single-Codec (Li et al. 2024): log-mel in, ConvNeXt + hybrid sampling + resampling module + BLSTM, "
    "one 4096-code VQ at 25 Hz (300 bps), a reference encoder's global embedding as 4 x 10-bit codes per "
    "utterance conditioning an AdaLN ConvNeXt decoder, iSTFT head."
)
DEFAULT_SEGMENT_SECONDS = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_codec_arguments(parser, NAME)
    parser.set_defaults(segment_seconds=DEFAULT_SEGMENT_SECONDS)


def run(args: argparse.Namespace) -> int:
    overrides = json.loads(Path(args.config).read_text()) if args.config else {}
    config = SingleCodecConfig(**overrides)  # the model train_codec builds from the same overrides
    card = {
        "name": NAME,
        "description": DESCRIPTION,
        "global_bits_per_utterance": config.global_num_codes * bits_per_code(config.global_codebook_size),
    }
    return train_codec(args, SingleCodec, card)
