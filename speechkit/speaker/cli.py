"""``speechkit embed | verify | diarize``: the speaker commands.

    speechkit embed in.wav [-o emb.json]              192-d embedding (JSON list, or printed)
    speechkit verify a.wav b.wav [--threshold T]      score and decision (exit 0 either way)
    speechkit diarize meeting.wav [--format rttm|json] [--speakers N] [--method msdd|multiscale|single-scale]
    speechkit diarize meeting.wav --stream            labels as audio arrives (sliding window)

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="speechkit")
    >>> register(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["diarize", "m.wav", "--format", "json"])
    >>> args.format, args.method, args.speakers
    ('json', None, None)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_SPEAKER_MODEL = "ecapa-tdnn"
DEFAULT_DIARIZER = "msdd"


def _read(path: str, sample_rate: int):
    from speechkit.audio import load_audio
    from speechkit.errors import AudioError

    if not Path(path).is_file():
        raise AudioError(f"audio file not found: {path}")
    return load_audio(path, sample_rate)[0]


def _cmd_embed(args: argparse.Namespace) -> int:
    from speechkit.registry import load

    encoder = load(args.model)
    vector = encoder.embed(_read(args.input, encoder.sample_rate), encoder.sample_rate)
    text = json.dumps([round(float(v), 6) for v in vector])
    if args.output:
        Path(args.output).write_text(text + "\n")
        print(f"{args.input} -> {args.output}: {len(vector)}-d embedding")
    else:
        print(text)
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from speechkit.registry import load

    encoder = load(args.model)
    rate = encoder.sample_rate
    result = encoder.verify(_read(args.a, rate), _read(args.b, rate), rate, threshold=args.threshold)
    decision = "same speaker" if result.same_speaker else "different speakers"
    print(f"score {result.score:.4f} threshold {result.threshold:.4f}: {decision}")
    return 0


def _segments_json(file_id: str, result) -> str:
    return json.dumps(
        {
            "file": file_id,
            "num_speakers": result.num_speakers,
            "method": result.method,
            "segments": [
                {"start": round(s.start, 3), "end": round(s.end, 3), "speaker": s.speaker}
                for s in result.segments
            ],
        },
        indent=2,
    )


def _cmd_diarize(args: argparse.Namespace) -> int:
    from speechkit.registry import load
    from speechkit.speaker.rttm import write_rttm

    diarizer = load(args.model)
    wav = _read(args.input, diarizer.sample_rate)
    file_id = Path(args.input).stem
    if args.stream:
        from speechkit.speaker.streaming import StreamingDiarizer

        stream = StreamingDiarizer(diarizer)
        hop = int(0.5 * diarizer.sample_rate)
        for start in range(0, len(wav), hop):
            for segment in stream.accept(wav[start : start + hop]):
                print(
                    f"[{segment.start:7.2f}-{segment.end:7.2f}] {segment.speaker}",
                    file=sys.stderr,
                    flush=True,
                )
        result = stream.finish()
    else:
        result = diarizer.diarize(wav, diarizer.sample_rate, num_speakers=args.speakers, method=args.method)
    if args.format == "json":
        rendered = _segments_json(file_id, result) + "\n"
    else:
        import io

        buffer = io.StringIO()
        write_rttm(buffer, file_id, result.segments)
        rendered = buffer.getvalue()
    if args.output:
        Path(args.output).write_text(rendered)
        print(
            f"{args.input} -> {args.output}: {result.num_speakers} speakers, {len(result.segments)} segments"
        )
    else:
        sys.stdout.write(rendered)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``embed``, ``verify`` and ``diarize``."""
    embed = subparsers.add_parser("embed", help="speaker embedding of a recording")
    embed.add_argument("input", help="audio file")
    embed.add_argument("-o", "--output", default=None, help="write the JSON list here")
    embed.add_argument("--model", default=DEFAULT_SPEAKER_MODEL)
    embed.set_defaults(func=_cmd_embed)

    verify = subparsers.add_parser("verify", help="are two recordings the same speaker?")
    verify.add_argument("a", help="first audio file")
    verify.add_argument("b", help="second audio file")
    verify.add_argument("--threshold", type=float, default=None, help="override the calibrated threshold")
    verify.add_argument("--model", default=DEFAULT_SPEAKER_MODEL)
    verify.set_defaults(func=_cmd_verify)

    diarize = subparsers.add_parser("diarize", help="who spoke when (RTTM or JSON)")
    diarize.add_argument("input", help="audio file")
    diarize.add_argument("--format", default="rttm", choices=["rttm", "json"])
    diarize.add_argument("-o", "--output", default=None, help="write here instead of stdout")
    diarize.add_argument("--speakers", type=int, default=None, help="the speaker count, if known")
    diarize.add_argument("--method", default=None, choices=["msdd", "multiscale", "single-scale"])
    diarize.add_argument("--stream", action="store_true", help="sliding-window labels as audio arrives")
    diarize.add_argument(
        "--model", default=DEFAULT_DIARIZER, help="MSDD checkpoint (names its speaker model)"
    )
    diarize.set_defaults(func=_cmd_diarize)
