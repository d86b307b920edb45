"""Train the causal, streaming RVQ codec (codec-rvq-causal): 12 x 1024 codes at 50 Hz, 30 ms latency.

    speechkit train codec-rvq-causal --data data/speech --run-dir runs/codec-rvq-causal \\
        --max-minutes 120 --export speechkit/checkpoints/codec-rvq-causal
"""

from __future__ import annotations

import argparse

from speechkit.codec.causal_rvq_codec import CausalRVQCodec
from speechkit.train.recipes.codec_training import add_codec_arguments, train_codec

NAME = "codec-rvq-causal"
DESCRIPTION = (
    "Causal streaming RVQ speech codec (causal STFT in, causal ConvNeXt at 100/50 Hz, RVQ 12x1024 "
    "with quantizer dropout, causal overlap-add iSTFT head; 30 ms algorithmic latency)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_codec_arguments(parser, NAME)


def run(args: argparse.Namespace) -> int:
    return train_codec(args, CausalRVQCodec, {"name": NAME, "description": DESCRIPTION})
