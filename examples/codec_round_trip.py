"""Encode a speech file to tokens and decode it back with a shipped codec.

    python examples/codec_round_trip.py [input.wav] [--model mel-rvq-demo]

Any format, rate and channel count that libsndfile reads is accepted; the codec converts it.
"""

from __future__ import annotations

import argparse

import speechkit
from speechkit.assets import sample_speech_path
from speechkit.audio import load_audio, save_audio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", nargs="?", default=str(sample_speech_path()))
    parser.add_argument("--model", default="mel-rvq-demo")
    parser.add_argument("-o", "--output", default="decoded.wav")
    args = parser.parse_args()

    codec = speechkit.load(args.model)
    wav, sample_rate = load_audio(args.input)
    tokens = codec.encode(wav, sample_rate)
    print(f"{tokens.num_codebooks} codebooks x {tokens.num_frames} frames, {tokens.bitrate / 1000:.2f} kbps")
    save_audio(args.output, codec.decode(tokens), codec.sample_rate)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
