"""The ``speechkit`` command line.

    speechkit demo [-o DIR]          round-trip the bundled speech sample through the default codec
    speechkit encode IN -o OUT.sktk  compress audio to a token file (--model, --kbps)
    speechkit decode IN.sktk -o OUT.wav
    speechkit synthesize TEXT -o OUT.wav   text to speech (--prompt REF.wav clones a voice, --model)
    speechkit transcribe IN.wav      speech to text (--format txt|json|srt, --stream, --model)
    speechkit embed IN.wav           speaker embedding; ``verify A.wav B.wav`` same speaker or not
    speechkit diarize IN.wav         who spoke when (--format rttm|json, --speakers N, --stream)
    speechkit models                 list shipped checkpoints (name, task, size, headline metrics)
    speechkit data speech|music|noise   build the offline corpora
    speechkit train RECIPE ...       run a training recipe (single process or under torchrun)
    speechkit export MODEL ...       export a codec to a quantised ONNX / Core ML bundle (speechkit_export)

Errors a user can cause (a missing file, bad audio, an unknown model) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from speechkit.errors import SpeechkitError


def _cmd_models(args: argparse.Namespace) -> int:
    from speechkit.checkpoint import shipped_checkpoints

    rows = [("name", "task", "kind", "size", "headline metrics")]
    for ckpt in shipped_checkpoints():
        size = f"{ckpt.size_bytes / 1e6:.2f} MB"
        rows.append((ckpt.name, ckpt.task, str(ckpt.card.get("kind", "?")), size, ckpt.headline))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import numpy as np

    from speechkit.assets import sample_speech_path, sample_speech_text
    from speechkit.audio import load_audio, save_audio
    from speechkit.registry import load

    out_dir = Path(args.output)
    args.model = args.model or default_codec()
    codec = load(args.model)
    wav, sample_rate = load_audio(args.input or sample_speech_path(), target_sample_rate=codec.sample_rate)
    start = time.perf_counter()
    tokens = codec.encode(wav, sample_rate)
    decoded = codec.decode(tokens)
    elapsed = time.perf_counter() - start
    save_audio(out_dir / "input.wav", wav, codec.sample_rate)
    save_audio(out_dir / "decoded.wav", decoded, codec.sample_rate)
    np.save(out_dir / "tokens.npy", tokens.codes)
    duration = len(wav) / codec.sample_rate
    print(f"model        {args.model} ({codec.kind})")
    if args.input is None:
        print(f"input        bundled sample, {duration:.2f} s: {sample_speech_text()!r}")
    else:
        print(f"input        {args.input}, {duration:.2f} s")
    print(
        f"tokens       {tokens.num_codebooks} codebooks x {tokens.num_frames} frames at {tokens.frame_rate:g} Hz"
    )
    print(f"bitrate      {tokens.bitrate / 1000:.2f} kbps")
    print(f"round trip   {elapsed:.2f} s ({duration / max(elapsed, 1e-9):.1f}x real time)")
    print(f"wrote        {out_dir / 'input.wav'}, {out_dir / 'decoded.wav'}, {out_dir / 'tokens.npy'}")
    return 0


DEFAULT_CODECS = ("codec-rvq", "mel-rvq-demo")  # the first one shipped is the default


def default_codec() -> str:
    from speechkit.checkpoint import shipped_checkpoints

    names = {c.name for c in shipped_checkpoints()}
    return next((name for name in DEFAULT_CODECS if name in names), DEFAULT_CODECS[-1])


def _cmd_encode(args: argparse.Namespace) -> int:
    from speechkit.audio import load_audio
    from speechkit.registry import load

    codec = load(args.model or default_codec())
    wav, sample_rate = load_audio(args.input)
    if sample_rate != codec.sample_rate:
        print(f"note: converting {sample_rate} Hz to the codec's {codec.sample_rate} Hz")
    num_codebooks = args.codebooks or (codec.num_codebooks_for(args.kbps) if args.kbps else None)
    tokens = codec.encode(wav, sample_rate, num_codebooks)
    data = codec.to_bytes(tokens)
    output = Path(args.output or Path(args.input).with_suffix(".sktk"))
    output.write_bytes(data)
    seconds = len(wav) / sample_rate
    total_kbps = 8 * len(data) / seconds / 1000
    print(
        f"{args.input} ({seconds:.2f} s) -> {output}: {tokens.num_codebooks} codebooks, "
        f"{tokens.bitrate / 1000:.2f} kbps nominal, {len(data)} bytes ({total_kbps:.2f} kbps with header)"
    )
    return 0


def _cmd_decode(args: argparse.Namespace) -> int:
    from speechkit.audio import save_audio
    from speechkit.codec.bitstream import read_bitstream
    from speechkit.errors import BitstreamError
    from speechkit.registry import load

    path = Path(args.input)
    if not path.is_file():
        raise BitstreamError(f"token file not found: {path}")
    data = path.read_bytes()
    header, _ = read_bitstream(data)
    codec = load(args.model or header["model"])
    wav = codec.decode(codec.from_bytes(data))
    output = Path(args.output or path.with_suffix(".wav"))
    save_audio(output, wav, codec.sample_rate)
    print(
        f"{path} -> {output}: {len(wav) / codec.sample_rate:.2f} s at {codec.sample_rate} Hz ({codec.name})"
    )
    return 0


DEFAULT_TTS = "mobilespeech"


def _cmd_synthesize(args: argparse.Namespace) -> int:
    from speechkit.audio import load_audio, save_audio
    from speechkit.registry import load

    if args.text is None and args.file is None:
        raise SpeechkitError("give the text to speak, or --file with a text file")
    if args.file is not None:
        path = Path(args.file)
        if not path.is_file():
            raise SpeechkitError(f"text file not found: {path}")
        text = path.read_text(encoding="utf-8", errors="replace")
    else:
        text = args.text
    tts = load(args.model)
    prompt, prompt_rate = (None, None) if args.prompt is None else load_audio(args.prompt)
    start = time.perf_counter()
    chunks = []
    stream = tts.stream(text, prompt, prompt_rate, speed=args.speed, seed=args.seed, progress=not args.quiet)
    for chunk in stream:
        chunks.append(chunk)
    import numpy as np

    audio = np.concatenate(chunks)
    elapsed = time.perf_counter() - start
    output = save_audio(args.output, audio, tts.sample_rate)
    seconds = len(audio) / tts.sample_rate
    voice = args.prompt or f"default voice ({tts.model.config.KIND})"
    print(
        f"{output}: {seconds:.2f} s at {tts.sample_rate} Hz, {len(chunks)} sentence(s), voice: {voice}; "
        f"synthesised in {elapsed:.2f} s (real-time factor {elapsed / max(seconds, 1e-9):.3f})"
    )
    return 0


DEFAULT_ASR = "asr"


def _cmd_transcribe(args: argparse.Namespace) -> int:
    from speechkit.asr.api import audio_file_blocks
    from speechkit.errors import AudioError
    from speechkit.registry import load

    if not Path(args.input).is_file():
        raise AudioError(f"audio file not found: {args.input}")
    asr = load(args.model)
    blocks = audio_file_blocks(args.input, asr.sample_rate, block_seconds=0.32 if args.stream else 10.0)
    if args.stream:
        from speechkit.asr.streaming import join_finals

        finals = []
        for update in asr.stream(asr.sample_rate).process(blocks):
            if update.is_final:
                finals.append(update)
                if args.format == "txt" and args.output is None:
                    print(f"[{update.start:7.2f}-{update.end:7.2f}] {update.text}", flush=True)
            elif not args.quiet:
                print(f"  ... {update.text}", file=sys.stderr, flush=True)
        transcript = join_finals(finals)
    else:
        transcript = asr.transcribe_blocks(blocks)
    rendered = {"txt": transcript.text + "\n", "json": transcript.to_json() + "\n", "srt": transcript.to_srt()}[args.format]
    if args.output:
        Path(args.output).write_text(rendered)
        print(f"{args.input} -> {args.output}: {len(transcript.words)} words")
    elif not (args.stream and args.format == "txt"):
        sys.stdout.write(rendered)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="speechkit", description="Edge audio and speech SDK.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="round-trip a speech sample through the default codec")
    demo.add_argument("-o", "--output", default="out", help="folder for input.wav, decoded.wav, tokens.npy")
    demo.add_argument("-i", "--input", default=None, help="audio file (default: the bundled sample)")
    demo.add_argument("--model", default=None, help="shipped name or checkpoint folder (default: best codec)")
    demo.set_defaults(func=_cmd_demo)

    encode = sub.add_parser("encode", help="compress audio to a token file (.sktk)")
    encode.add_argument("input", help="audio file in any format/rate/channels soundfile reads")
    encode.add_argument("-o", "--output", default=None, help="token file (default: input with .sktk)")
    encode.add_argument("--model", default=None, help="codec name or folder (default: best shipped codec)")
    rate = encode.add_mutually_exclusive_group()
    rate.add_argument("--kbps", type=float, default=None, help="target bitrate (nearest codebook count)")
    rate.add_argument("--codebooks", type=int, default=None, help="number of codebooks to keep")
    encode.set_defaults(func=_cmd_encode)

    decode = sub.add_parser("decode", help="decode a token file to audio")
    decode.add_argument("input", help="token file written by speechkit encode")
    decode.add_argument("-o", "--output", default=None, help="wav/flac/ogg (default: input with .wav)")
    decode.add_argument("--model", default=None, help="override the model named in the file")
    decode.set_defaults(func=_cmd_decode)

    synth = sub.add_parser("synthesize", help="text to speech (default voice, or --prompt to clone one)")
    synth.add_argument("text", nargs="?", default=None, help="text to speak (or --file)")
    synth.add_argument("-f", "--file", default=None, help="read the text from this UTF-8 file")
    synth.add_argument("-o", "--output", default="speech.wav", help="audio file to write (wav/flac/ogg)")
    synth.add_argument("--prompt", default=None, help="reference speech (a few seconds) whose voice to use")
    synth.add_argument("--model", default=DEFAULT_TTS, help="TTS model name or checkpoint folder")
    synth.add_argument("--speed", type=float, default=1.0, help="> 1 speaks faster")
    synth.add_argument("--seed", type=int, default=0, help="sampling seed (same seed, same audio)")
    synth.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(func=_cmd_synthesize)

    transcribe = sub.add_parser("transcribe", help="speech to text (txt, json with word times, or srt)")
    transcribe.add_argument("input", help="audio file in any format/rate/channels soundfile reads")
    transcribe.add_argument("--format", default="txt", choices=["txt", "json", "srt"])
    transcribe.add_argument("-o", "--output", default=None, help="write here instead of stdout")
    transcribe.add_argument("--stream", action="store_true", help="decode chunk by chunk, partials on stderr")
    transcribe.add_argument("--model", default=DEFAULT_ASR, help="ASR model name or checkpoint folder")
    transcribe.add_argument("-q", "--quiet", action="store_true", help="no partial results")
    transcribe.set_defaults(func=_cmd_transcribe)

    models = sub.add_parser("models", help="list shipped checkpoints")
    models.set_defaults(func=_cmd_models)

    from speechkit.data.cli import register as register_data
    from speechkit.speaker.cli import register as register_speaker
    from speechkit.train.cli import register as register_train
    from speechkit_export.cli import register as register_export

    register_speaker(sub)
    register_data(sub)
    register_train(sub)
    register_export(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except SpeechkitError as err:
        print(f"speechkit: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
