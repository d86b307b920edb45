"""``speechkit data speech|music|noise|meetings``: build the offline corpora from the command line.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="speechkit")
    >>> register(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["data", "speech", "--hours", "0.5"])
    >>> args.out, args.hours, args.workers
    ('data/speech', 0.5, 2)
    >>> args = parser.parse_args(["data", "meetings", "--meetings-per-split", "train=5", "test_ood=0"])
    >>> args.meetings_per_split["train"], args.meetings_per_split["test_ood"], args.speakers
    (5, 0, [2, 4])
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _print_summary(out: str) -> None:
    summary = json.loads((Path(out) / "corpus.json").read_text(encoding="utf-8"))
    print(f"{summary['kind']} corpus in {out} (built in {summary['build_seconds']:.0f} s)")
    keys = ("num_voices", "utterances", "meetings", "hours", "excerpts", "minutes", "overlap_share")
    for key in (*keys, "noise_types", "rirs"):
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


def _cmd_meetings(args: argparse.Namespace) -> int:
    from speechkit.data.meetings import MeetingConfig, build_meetings_corpus

    config = MeetingConfig(
        speakers=tuple(args.speakers),
        minutes=tuple(args.minutes),
        overlap_share=args.overlap,
        max_overlap=args.max_overlap,
        pause_mean=args.pause_mean,
        pause_max=args.pause_max,
        gain_jitter_db=args.gain_jitter_db,
    )
    build_meetings_corpus(
        args.out, args.speech, args.meetings_per_split, config, args.seed, progress=not args.quiet
    )
    _print_summary(args.out)
    return 0


class _SplitCounts(argparse.Action):
    """``split=N`` items over the default meetings per split (unlisted splits keep their default)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from speechkit.data.meetings import DEFAULT_MEETINGS_PER_SPLIT

        counts = dict(DEFAULT_MEETINGS_PER_SPLIT)
        for item in values:
            split, _, number = item.partition("=")
            if split not in counts or not number.isdigit():
                parser.error(f"{option_string} takes SPLIT=N with SPLIT one of {list(counts)}, got {item!r}")
            counts[split] = int(number)
        setattr(namespace, self.dest, counts)


def _common(parser: argparse.ArgumentParser, kind: str) -> None:
    parser.add_argument("--out", default=f"data/{kind}", help=f"corpus folder (default data/{kind})")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same corpus")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command (``speech``, ``music``, ``noise``, ``meetings``) to a CLI's subparsers."""
    data = subparsers.add_parser("data", help="build the offline speech / music / noise / meetings corpora")
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

    meetings = kinds.add_parser("meetings", help="multi-speaker conversations mixed from the speech corpus")
    _common(meetings, "meetings")
    meetings.add_argument(
        "--speech", default="data/speech", help="speech corpus folder (default data/speech)"
    )
    meetings.add_argument(
        "--meetings-per-split",
        nargs="+",
        action=_SplitCounts,
        default=None,
        metavar="SPLIT=N",
        help="meetings per split, e.g. train=50 test_ood=0; unlisted splits keep the defaults "
        "train=200 valid=20 test=40 test_ood=40 (a split's meetings use only that split's voices)",
    )
    meetings.add_argument(
        "--speakers", nargs=2, type=int, default=[2, 4], metavar=("MIN", "MAX"), help="speakers per meeting"
    )
    meetings.add_argument(
        "--minutes", nargs=2, type=float, default=[1.0, 2.0], metavar=("MIN", "MAX"), help="meeting length"
    )
    meetings.add_argument(
        "--overlap", type=float, default=0.1, help="target share of speech time with two speakers at once"
    )
    meetings.add_argument("--max-overlap", type=float, default=1.5, help="longest overlap of two turns, s")
    meetings.add_argument(
        "--pause-mean", type=float, default=0.5, help="mean pause between turns, s (exponential)"
    )
    meetings.add_argument("--pause-max", type=float, default=2.0, help="longest pause between turns, s")
    meetings.add_argument(
        "--gain-jitter-db", type=float, default=3.0, help="per-utterance gain range, +/- dB"
    )
    meetings.set_defaults(func=_cmd_meetings)
