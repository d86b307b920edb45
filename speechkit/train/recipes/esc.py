"""Train the ESC codec (esc): cross-scale residual VQ transformers, 12 x 1024 codes at 50 Hz, 1.5-6 kbps.

    speechkit train esc --max-minutes 120 --init-from speechkit/checkpoints/esc \\
        --export speechkit/checkpoints/esc

The shared codec recipe (losses, data, trainer, export) with ESC's quantizer pre-training
(Gu & Diao 2024, §3.4): a fresh model bypasses its quantizers for the first ``--pretrain-steps``
training passes (encoder, decoder and the factorised projections train as an autoencoder), then
switches them on, and the next batch k-means-initialises every codebook from the trained
residuals. The paper pre-trains 15 of 80 epochs. The countdown is a buffer of the model, so a
resumed run carries on where it stopped, and ``--init-from`` a trained checkpoint skips it.
Evaluations during pre-training measure untrained codebooks.
"""

from __future__ import annotations

import argparse

from speechkit.codec.esc import ESCCodec, ESCCodecConfig
from speechkit.train.recipes.codec_training import add_codec_arguments, train_codec

NAME = "esc"
DESCRIPTION = (
    "ESC speech codec (complex STFT patches, Swin-style window-attention encoder/decoder over "
    "frequency x time, cross-scale residual VQ 4 streams x 3 groups x 1024 at 50 Hz, quantizer "
    "pre-training, iSTFT head)."
)


class PretrainingESCFactory:
    """Builds a fresh :class:`ESCCodec` that starts with ``pretrain_steps`` of quantizer bypass.

    Stands in for the model class in :func:`train_codec` (it reads ``config_class`` and calls the
    class with a config), so the shared recipe needs no ESC-specific hook.

    Example:
        >>> make = PretrainingESCFactory(pretrain_steps=5)
        >>> codec = make(ESCCodecConfig(patch_bins=40, dims=(8, 8), depths=(0, 1), time_strides=(1, 2),
        ...                             head_dim=8, num_streams=2, num_groups=1, codebook_size=8))
        >>> codec.quantizers_enabled, int(codec.pretraining_steps_left)
        (False, 5)
    """

    config_class = ESCCodecConfig

    def __init__(self, pretrain_steps: int) -> None:
        self.pretrain_steps = pretrain_steps

    def __call__(self, config: ESCCodecConfig) -> ESCCodec:
        codec = ESCCodec(config)
        codec.begin_quantizer_pretraining(self.pretrain_steps)
        return codec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_codec_arguments(parser, NAME)
    parser.add_argument(
        "--pretrain-steps",
        type=int,
        default=2000,
        help="training passes with the quantizers bypassed before they are switched on and "
        "k-means initialised (ESC's pre-training stage; 0 disables it; ignored when resuming)",
    )


def run(args: argparse.Namespace) -> int:
    factory = PretrainingESCFactory(args.pretrain_steps)
    return train_codec(args, factory, {"name": NAME, "description": DESCRIPTION})
