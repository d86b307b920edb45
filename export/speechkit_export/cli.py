"""``speechkit export``: a codec or speaker checkpoint to a quantised, verified ONNX / Core ML bundle.

::

    speechkit export codec-rvq --quant decoupleq-w2 -o bundles/codec-rvq-w2 --zip
    speechkit export ecapa-tdnn --quant int8 -o bundles/ecapa-int8         # speaker embedder (ONNX only)
    speechkit export msdd -o bundles/msdd                                  # MSDD diarization decoder
    speechkit export asr --quant int8 -o bundles/asr-int8                  # speech recognition (ONNX only)
    speechkit export codec-rvq --format coreml --quant palettize4 -o bundles/codec-rvq.mlbundle
    python -m speechkit_export.cli codec-rvq --quant int8      # the same, without the speechkit CLI

Prints a summary (bundle size, per-graph parity against the float32 torch model, PESQ-WB / STOI when
measured). Errors a user can cause (an unknown model or mode, a mode the format does not support)
print one line and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from speechkit.errors import SpeechkitError

QUANT_HELP = (
    "ONNX: none, int8 (= int8-dynamic), int8-static, w4 (MatMulNBits), rtn-w4/w3/w2, gptq-w4/w3/w2, "
    "decoupleq-w4/w3/w2 (any -w2..-w8); Core ML: none, int8, palettize4, palettize2 (default none)"
)


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``export`` subcommand to a ``speechkit`` subparser set."""
    parser = sub.add_parser(
        "export",
        help="export a codec or speaker model to a quantised ONNX / Core ML bundle",
        description="Export a model to a bundle: graphs, quantisation, parity check, manifest.",
    )
    add_arguments(parser)
    parser.set_defaults(func=run_export)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The export options (shared by ``speechkit export`` and ``python -m speechkit_export.cli``)."""
    parser.add_argument("model", help="shipped model name (see `speechkit models`) or checkpoint folder")
    parser.add_argument("--format", choices=("onnx", "coreml"), default="onnx", help="graph format")
    parser.add_argument("--quant", default="none", help=QUANT_HELP)
    parser.add_argument(
        "-o", "--output", default=None, help="bundle folder (default ./<model>-<format>-<quant>)"
    )
    parser.add_argument("--zip", action="store_true", help="also write <output>.zip")
    parser.add_argument(
        "--group-size", type=int, default=64, help="weights per scale (rtn/gptq/decoupleq, w4)"
    )
    parser.add_argument(
        "--float-encoder",
        action="store_true",
        help="leave the encoder float (tokens bit-identical to the SDK's; the bundle about twice as large)",
    )
    parser.add_argument("--calibration", nargs="+", default=None, help="audio files to calibrate on")
    parser.add_argument(
        "--corpus", default="data/speech", help="speech corpus for calibration and parity clips"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_export(args: argparse.Namespace) -> int:
    """Run an export from parsed arguments and print its summary."""
    from speechkit_export.pipeline import export_model
    from speechkit_rt.errors import SpeechkitRtError

    output = args.output or f"{Path(args.model).name}-{args.format}-{args.quant}"
    try:
        report = export_model(
            args.model,
            output,
            format=args.format,
            quant=args.quant,
            group_size=args.group_size,
            calibration_audio=args.calibration,
            zip=args.zip,
            progress=not args.no_progress,
            quantize_encoder=not args.float_encoder,
            corpus_dir=args.corpus,
        )
    except SpeechkitRtError as err:  # the bundle writer's refusals
        raise SpeechkitError(str(err)) from err
    print(report.summary())
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m speechkit_export.cli MODEL [options]``: the same as ``speechkit export``."""
    parser = argparse.ArgumentParser(prog="speechkit export", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return run_export(args)
    except SpeechkitError as err:
        print(f"speechkit export: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
