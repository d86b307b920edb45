"""``speechkit-rt``: inspect a bundle and run codec and speaker bundles on WAV files, without torch.

Commands::

    speechkit-rt info BUNDLE                                   what the manifest says (any task)
    speechkit-rt encode BUNDLE IN.wav [-o OUT.sktk] [--kbps X | --codebooks K]
    speechkit-rt decode BUNDLE IN.sktk [-o OUT.wav] [--subtype PCM_16|PCM_24|PCM_32|FLOAT]
    speechkit-rt transcribe BUNDLE IN.wav [--method ctc_greedy|joint|attention] [--json]
    speechkit-rt embed BUNDLE IN.wav [-o OUT.json]             speaker embedding (JSON list)
    speechkit-rt verify BUNDLE A.wav B.wav [--threshold T]     score and same / different speaker

Token files are the ones ``speechkit encode`` / ``speechkit decode`` read and write, so either tool
decodes what the other encoded when both name the same model and weights.

Exit codes: 0 success; 1 an input the runtime refuses (unreadable or bad audio, a malformed token
file, one written by another model); 2 a command-line usage error; 3 a bundle refused or unusable
(tampered, unknown format version, not a codec, a graph onnxruntime cannot load).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from speechkit_rt import __version__
from speechkit_rt.bundle import Bundle
from speechkit_rt.errors import BundleError, SpeechkitRtError

EXIT_OK, EXIT_INPUT, EXIT_USAGE, EXIT_BUNDLE = 0, 1, 2, 3


def _cmd_info(args: argparse.Namespace) -> int:
    with Bundle.open(args.bundle) as bundle:
        m = bundle.manifest
        layout, quant = m["token_layout"], m["quantization"]
        total = sum(entry["bytes"] for entry in m["files"].values())
        print(f"bundle       {args.bundle}")
        print(f"model        {m['model_name']} ({m['model_kind']}), task {m['task']}")
        print(
            f"format       {m['format']} v{m['format_version']}, speechkit {m['speechkit_version']}, {m['created']}"
        )
        print(f"audio        {m['sample_rate']} Hz, {m['frame_rate']:g} token frames/s")
        if layout["num_codebooks"]:  # speaker bundles have no tokens
            print(f"tokens       {layout['num_codebooks']} codebooks of sizes {layout['codebook_sizes']}")
        if layout.get("global_codebook_sizes"):
            print(f"global codes {layout['global_codebook_sizes']}")
        if layout.get("bitrates_bps"):
            print(f"bitrates     {', '.join(f'{b / 1000:g}' for b in layout['bitrates_bps'])} kbps")
        bits = "" if quant.get("bits") is None else f", {quant['bits']} bits"
        group = "" if quant.get("group_size") is None else f", groups of {quant['group_size']}"
        method = "" if not quant.get("method") else f", {quant['method']}"
        print(f"quantization {quant['mode']}{bits}{group}{method}")
        for name, graph in sorted(m["graphs"].items()):
            ins = ", ".join(_tensor(t) for t in graph["inputs"])
            outs = ", ".join(_tensor(t) for t in graph["outputs"])
            state = f" state {graph['state']}" if graph.get("state") else ""
            print(f"graph        {name} ({graph['runtime']}, {graph['file']}): {ins} -> {outs}{state}")
        for key, value in sorted(m["metrics"].items()):
            print(f"metric       {key} = {value:g}")
        print(f"files        {len(m['files'])}, {total / 1e6:.2f} MB, every sha256 verified")
    return EXIT_OK


def _tensor(tensor: dict) -> str:
    return f"{tensor['name']} {tensor['dtype']} [{', '.join(str(axis) for axis in tensor['shape'])}]"


def _cmd_encode(args: argparse.Namespace) -> int:
    from speechkit_rt.audio_io import read_wav
    from speechkit_rt.codec import CodecRuntime

    with CodecRuntime.open(args.bundle, num_threads=args.threads) as codec:
        wav, sample_rate = read_wav(args.input)
        if sample_rate != codec.sample_rate:
            print(f"note: converting {sample_rate} Hz to the codec's {codec.sample_rate} Hz")
        num_codebooks = args.codebooks or (codec.num_codebooks_for(args.kbps) if args.kbps else None)
        tokens = codec.encode(wav, sample_rate, num_codebooks)
        data = codec.to_bytes(tokens)
    output = Path(args.output or Path(args.input).with_suffix(".sktk"))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)
    seconds = len(wav) / sample_rate
    print(
        f"{args.input} ({seconds:.2f} s) -> {output}: {tokens.num_codebooks} codebooks, "
        f"{tokens.bitrate / 1000:.2f} kbps nominal, {len(data)} bytes "
        f"({8 * len(data) / seconds / 1000:.2f} kbps with header)"
    )
    return EXIT_OK


def _cmd_decode(args: argparse.Namespace) -> int:
    from speechkit_rt.audio_io import write_wav
    from speechkit_rt.codec import CodecRuntime
    from speechkit_rt.errors import BitstreamError

    path = Path(args.input)
    if not path.is_file():
        raise BitstreamError(f"token file not found: {path}")
    with CodecRuntime.open(args.bundle, num_threads=args.threads) as codec:
        wav = codec.decode(codec.from_bytes(path.read_bytes()))
        sample_rate = codec.sample_rate
    output = write_wav(args.output or path.with_suffix(".wav"), wav, sample_rate, subtype=args.subtype)
    print(f"{path} -> {output}: {len(wav) / sample_rate:.2f} s at {sample_rate} Hz")
    return EXIT_OK


def _cmd_embed(args: argparse.Namespace) -> int:
    from speechkit_rt.audio_io import read_wav
    from speechkit_rt.speaker import SpeakerRuntime

    with SpeakerRuntime.open(args.bundle, num_threads=args.threads) as speaker:
        wav, sample_rate = read_wav(args.input)
        vector = speaker.embed(wav, sample_rate)
    text = json.dumps([round(float(v), 6) for v in vector])
    if args.output:
        Path(args.output).write_text(text + "\n")
        print(f"{args.input} -> {args.output}: {len(vector)}-d embedding")
    else:
        print(text)
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from speechkit_rt.audio_io import read_wav
    from speechkit_rt.speaker import SpeakerRuntime

    with SpeakerRuntime.open(args.bundle, num_threads=args.threads) as speaker:
        (wav_a, rate_a), (wav_b, rate_b) = read_wav(args.a), read_wav(args.b)
        score = speaker.score(speaker.embed(wav_a, rate_a), speaker.embed(wav_b, rate_b))
        threshold = speaker.threshold if args.threshold is None else args.threshold
    decision = "same speaker" if score >= threshold else "different speakers"
    print(f"score {score:.4f} threshold {threshold:.4f}: {decision}")
    return EXIT_OK


def _cmd_transcribe(args: argparse.Namespace) -> int:
    from speechkit_rt.asr import ASRRuntime
    from speechkit_rt.audio_io import read_wav

    with ASRRuntime.open(args.bundle, num_threads=args.threads) as asr:
        wav, sample_rate = read_wav(args.input)
        transcript = asr.transcribe(wav, sample_rate, method=args.method, beam_size=args.beam_size)
    if args.json:
        print(transcript.to_json())
    else:
        print(transcript.text)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The ``speechkit-rt`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="speechkit-rt", description="Torch-free runtime for speechkit bundles."
    )
    parser.add_argument("--version", action="version", version=f"speechkit-rt {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="verify a bundle and print its manifest")
    info.add_argument("bundle", help="bundle folder or .zip")
    info.set_defaults(func=_cmd_info)

    encode = sub.add_parser("encode", help="compress a WAV file to a token file (.sktk)")
    encode.add_argument("bundle", help="codec bundle folder or .zip")
    encode.add_argument("input", help="WAV file (PCM or float, any rate and channel count)")
    encode.add_argument("-o", "--output", default=None, help="token file (default: input with .sktk)")
    rate = encode.add_mutually_exclusive_group()
    rate.add_argument("--kbps", type=float, default=None, help="target bitrate (nearest codebook count)")
    rate.add_argument("--codebooks", type=int, default=None, help="number of codebooks to keep")
    encode.set_defaults(func=_cmd_encode)

    decode = sub.add_parser("decode", help="decode a token file to a WAV file")
    decode.add_argument("bundle", help="codec bundle folder or .zip")
    decode.add_argument("input", help="token file written by speechkit-rt encode or speechkit encode")
    decode.add_argument("-o", "--output", default=None, help="WAV file (default: input with .wav)")
    decode.add_argument("--subtype", default="PCM_16", choices=("PCM_16", "PCM_24", "PCM_32", "FLOAT"))
    decode.set_defaults(func=_cmd_decode)

    embed = sub.add_parser("embed", help="speaker embedding of a WAV file (JSON list)")
    embed.add_argument("bundle", help="speaker bundle folder or .zip")
    embed.add_argument("input", help="WAV file (PCM or float, any rate and channel count)")
    embed.add_argument("-o", "--output", default=None, help="JSON file (default: print)")
    embed.set_defaults(func=_cmd_embed)

    verify = sub.add_parser("verify", help="are two WAV files the same speaker? (exit 0 either way)")
    verify.add_argument("bundle", help="speaker bundle folder or .zip")
    verify.add_argument("a", help="first WAV file")
    verify.add_argument("b", help="second WAV file")
    verify.add_argument(
        "--threshold", type=float, default=None, help="decision threshold (default: the bundle's)"
    )
    verify.set_defaults(func=_cmd_verify)

    transcribe = sub.add_parser("transcribe", help="speech to text with an ASR bundle")
    transcribe.add_argument("bundle", help="ASR bundle folder or .zip")
    transcribe.add_argument("input", help="WAV file (PCM or float, any rate and channel count)")
    transcribe.add_argument(
        "--method", default="ctc_greedy", choices=("ctc_greedy", "joint", "attention"),
        help="greedy CTC (default), attention beam search with CTC prefix scores, or attention alone",
    )  # fmt: skip
    transcribe.add_argument("--beam-size", type=int, default=4, help="beam width (joint, attention)")
    transcribe.add_argument("--json", action="store_true", help="JSON: text, word times and confidences")
    transcribe.add_argument("--threads", type=int, default=None, help="onnxruntime threads per graph")
    transcribe.set_defaults(func=_cmd_transcribe)

    for command in (encode, decode, embed, verify):
        command.add_argument("--threads", type=int, default=None, help="onnxruntime threads per graph")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except BundleError as err:
        print(f"speechkit-rt: bundle refused: {err}", file=sys.stderr)
        return EXIT_BUNDLE
    except (SpeechkitRtError, ValueError) as err:
        print(f"speechkit-rt: error: {err}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as err:
        print(f"speechkit-rt: error: {err}", file=sys.stderr)
        return EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
