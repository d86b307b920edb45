"""``speechkit data speech|music|noise``: build the offline corpora from the command line.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="speechkit")
    >>> register(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["data", "speech", "--hours", "0.5"])
    >>> args.out, args.hours, args.workers
    ('data/speech', 0.5, 2)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _print_summary(out: str) -> None:
    summary = json.loads((Path(out) / "corpus.json").read_text(encoding="utf-8"))
    print(f"{summary['kind']} corpus in {out} (built in {summary['build_seconds']:.0f} s)")
    for key in ("num_voices", "utterances", "hours", "excerpts", "minutes", "noise_types", "rirs"):
        if key in summary:
            print(f"  {key:<12} {summary[key]}")
    if "speakers" in summary:
        print(f"  {'speakers':<12} { {split: len(ids) for split, ids in summary['speakers'].items()} }")
    if summary.get("failures"):
        print(f"  {len(summary['failures'])} items failed and were skipped (listed in corpus.json)")


def _cmd_speech(args: argparse.Namespace) -> int:
    from speechkit.data.speech import build_speech_corpus

    held_out = None if args.held_out_engine == "none" else args.held_out_engine
    build_speech_corpus(args.out, args.hours, args.seed, args.workers, held_out, progress=not args.quiet)
    _print_summary(args.out)
    return 0


def _cmd_music(args: argparse.Namespace) -> int:
    from speechkit.data.music import build_music_corpus

    build_music_corpus(
        args.out, args.minutes, args.seed, args.sample_rate, args.workers, progress=not args.quiet
    )
    _print_summary(args.out)
    return 0


def _cmd_noise(args: argparse.Namespace) -> int:
    from speechkit.data.noise import build_noise_corpus

    build_noise_corpus(
        args.out, args.minutes, args.seed, args.sample_rate, args.num_rirs, args.speech_corpus, not args.quiet
    )
    _print_summary(args.out)
    return 0


def _common(parser: argparse.ArgumentParser, kind: str) -> None:
    parser.add_argument("--out", default=f"data/{kind}", help=f"corpus folder (default data/{kind})")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same corpus")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command (subcommands ``speech``, ``music``, ``noise``) to a CLI's subparsers."""
    data = subparsers.add_parser("data", help="build the offline speech / music / noise corpora")
    kinds = data.add_subparsers(dest="corpus", required=True)

    speech = kinds.add_parser("speech", help="multi-speaker English speech from espeak-ng, flite, festival")
    _common(speech, "speech")
    speech.add_argument("--hours", type=float, default=1.0, help="total hours over all splits")
    speech.add_argument("--workers", type=int, default=2, help="synthesis processes")
    speech.add_argument(
        "--held-out-engine",
        default="festival",
        choices=["festival", "flite", "espeak-ng", "none"],
        help="engine kept out of training as the test_ood split",
    )
    speech.set_defaults(func=_cmd_speech)

    music = kinds.add_parser("music", help="music21 score excerpts rendered by fluidsynth")
    _common(music, "music")
    music.add_argument("--minutes", type=float, default=20.0, help="total minutes")
    music.add_argument("--workers", type=int, default=2, help="render processes")
    music.add_argument("--sample-rate", type=int, default=24000)
    music.set_defaults(func=_cmd_music)

    noise = kinds.add_parser("noise", help="generated noise types and synthetic room impulse responses")
    _common(noise, "noise")
    noise.add_argument("--minutes", type=float, default=10.0, help="total minutes of noise")
    noise.add_argument("--num-rirs", type=int, default=200, help="number of room impulse responses")
    noise.add_argument("--sample-rate", type=int, default=16000)
    noise.add_argument("--speech-corpus", default=None, help="speech corpus folder to make babble from")
    noise.add_argument(
        "--workers", type=int, default=1, help="accepted for symmetry; generation is one process"
    )
    noise.set_defaults(func=_cmd_noise)
