"""Train the frame-rate RVQ codec (codec-rvq): 12 x 1024 codes at 50 Hz, 0.5-6 kbps.

    speechkit train codec-rvq --max-minutes 120 --init-from speechkit/checkpoints/codec-rvq \\
        --export speechkit/checkpoints/codec-rvq
"""

from __future__ import annotations

import argparse

from speechkit.codec.rvq_codec import RVQCodec
from speechkit.train.recipes.codec_training import add_codec_arguments, train_codec

NAME = "codec-rvq"
DESCRIPTION = "Frame-rate RVQ speech codec (STFT in, ConvNeXt at 100/50 Hz, RVQ 12x1024 with quantizer dropout, iSTFT head)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_codec_arguments(parser, NAME)


def run(args: argparse.Namespace) -> int:
    return train_codec(args, RVQCodec, {"name": NAME, "description": DESCRIPTION})
