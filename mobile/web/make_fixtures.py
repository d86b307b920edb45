"""Write the fixtures the browser e2e test (``e2e.mjs``) checks against: a tiny codec bundle, a tampered
copy, an input WAV and the Python runtime's codes and decoded audio for it.

Run from the repository root with the project venv (needs torch, speechkit and speechkit_export to
export the bundle; the reference numbers come from the torch-free ``speechkit_rt``)::

    .venv/bin/python mobile/web/make_fixtures.py /tmp/skweb-fixtures
    node mobile/web/e2e.mjs --fixtures /tmp/skweb-fixtures
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

# Tiny random RVQ codec (as in tests/mobile/test_codec_runtime.py): exports in a few seconds on CPU.
TINY = {
    "n_fft": 64,
    "hop_length": 16,
    "dim": 16,
    "latent_dim": 8,
    "num_quantizers": 3,
    "codebook_size": 16,
    "encoder_blocks": (1, 1),
    "decoder_blocks": (1, 1),
}
NAME, FINGERPRINT = "tiny-rvq", "0123456789abcdef"
CLIP_SECONDS = 1.0


def build_bundle(out_dir: Path, quant: str = "none") -> Path:
    """Export the tiny codec with ``speechkit_export.pipeline.export_model`` to ``out_dir``."""
    import torch

    from speechkit.codec.rvq_codec import RVQCodec, RVQCodecConfig
    from speechkit_export.pipeline import export_model

    torch.manual_seed(0)
    model = RVQCodec(RVQCodecConfig(**TINY)).eval()
    model.checkpoint_name, model.fingerprint = NAME, FINGERPRINT
    export_model(model, out_dir, quant=quant, progress=False, corpus_dir="/no/corpus")
    return out_dir


def tamper(bundle: Path, out_dir: Path) -> Path:
    """A copy of ``bundle`` with one byte of decoder.onnx flipped (same size, wrong sha256)."""
    shutil.copytree(bundle, out_dir)
    path = out_dir / "decoder.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return out_dir


def write_reference(bundle: Path, wav_path: Path, out_path: Path, num_codebooks: int) -> dict:
    """Run the Python runtime on ``wav_path`` and write codes [1, k, N] and decoded audio as JSON."""
    from speechkit_rt import CodecRuntime, read_wav

    wav, sample_rate = read_wav(wav_path)
    with CodecRuntime.open(bundle, num_threads=1) as codec:
        tokens = codec.encode(wav, sample_rate, num_codebooks)
        audio = codec.decode(tokens)
        reference = {
            "num_codebooks": num_codebooks,
            "codes_shape": list(tokens.codes.shape),
            "codes": tokens.codes.reshape(-1).tolist(),
            "num_samples": int(tokens.num_samples),
            "audio": [float(x) for x in audio],
            "bitrate_bps": codec.bitrate(num_codebooks),
            "sample_rate": codec.sample_rate,
        }
    out_path.write_text(json.dumps(reference))
    return reference


def write_fixtures(out_dir: Path, quant: str = "none") -> Path:
    """Write ``bundle/``, ``tampered/``, ``input.wav`` and ``reference.json`` (all K and k = 1) under ``out_dir``."""
    from speechkit.assets import sample_speech_path
    from speechkit.audio import load_audio
    from speechkit_rt import write_wav

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle = build_bundle(out_dir / "bundle", quant)
    tamper(bundle, out_dir / "tampered")
    wav, sample_rate = load_audio(sample_speech_path(), target_sample_rate=16000)
    # An odd length checks the pad-to-hop and trim steps; PCM16 is what a user's file usually is.
    clip = np.asarray(wav[: int(CLIP_SECONDS * sample_rate) + 7], dtype=np.float32)
    write_wav(out_dir / "input.wav", clip, sample_rate)
    num_codebooks = TINY["num_quantizers"]
    write_reference(bundle, out_dir / "input.wav", out_dir / "reference.json", num_codebooks)
    write_reference(bundle, out_dir / "input.wav", out_dir / "reference_k1.json", 1)
    return out_dir


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--quant", default="none", help="export quant mode (none or int8)")
    args = parser.parse_args()
    if args.out_dir.exists():
        sys.exit(f"{args.out_dir} exists; pick a new folder")
    write_fixtures(args.out_dir, args.quant)
