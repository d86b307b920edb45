"""Token files: exact round trip, size at the nominal bitrate, and refusal of bad or foreign files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

import speechkit
from speechkit.checkpoint import save_checkpoint
from speechkit.cli import main
from speechkit.codec.bitstream import read_bitstream, write_bitstream
from speechkit.codec.mel_rvq import MelRVQCodec, MelRVQCodecConfig
from speechkit.errors import BitstreamError
from speechkit.tokenizers.bitpacking import packed_size_bytes
from speechkit.tokenizers.tokens import Tokens


def _tokens(num_frames: int = 123, sizes=(1024,) * 6) -> Tokens:
    rng = np.random.default_rng(0)
    codes = np.stack([rng.integers(0, s, num_frames) for s in sizes])[None]
    return Tokens(
        codes, 50.0, sizes, kind="rvq_codec", extras={"num_samples": np.array([num_frames * 320 - 7])}
    )


def test_round_trip_is_exact_and_payload_matches_bitrate():
    tokens = _tokens()
    data = write_bitstream(tokens, model="m", fingerprint="f", sample_rate=16000)
    header, back = read_bitstream(data)
    assert back == tokens
    assert (
        header["payload_bytes"] == packed_size_bytes(123, tokens.codebook_sizes) == int(np.ceil(123 * 60 / 8))
    )
    assert len(data) - header["payload_bytes"] < 300  # fixed header cost


@pytest.mark.parametrize(
    "mangle,message",
    [
        (lambda d: d[:-1], "payload is"),
        (lambda d: d[:20], "truncated inside its header"),
        (lambda d: b"RIFF" + d[4:], "bad magic"),
        (lambda d: d[:4] + bytes([9]) + d[5:], "version 9"),
        (lambda d: d[:3], "too short"),
    ],
)
def test_malformed_files_are_refused(mangle, message):
    data = write_bitstream(_tokens(), model="m", fingerprint="f", sample_rate=16000)
    with pytest.raises(BitstreamError, match=message):
        read_bitstream(mangle(data))


def test_codec_refuses_tokens_of_other_weights(tmp_path, speech_16k):
    codec = speechkit.load("mel-rvq-demo")
    data = codec.to_bytes(codec.encode(speech_16k, 16000))
    other = save_checkpoint(MelRVQCodec(MelRVQCodecConfig()), tmp_path / "other-demo")
    with pytest.raises(BitstreamError, match="written by model 'mel-rvq-demo'"):
        speechkit.load(other).from_bytes(data)
    assert codec.from_bytes(data).num_frames == len(speech_16k) // 320 + 1


def test_cli_encode_decode_round_trip(tmp_path, speech_16k, capsys):
    stereo_44k = tmp_path / "in.flac"
    import soxr

    wav = soxr.resample(speech_16k, 16000, 44100)
    sf.write(stereo_44k, np.stack([wav, wav], axis=1), 44100)
    assert (
        main(
            [
                "encode",
                str(stereo_44k),
                "-o",
                str(tmp_path / "x.sktk"),
                "--model",
                "mel-rvq-demo",
                "--kbps",
                "1.6",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "converting 44100 Hz" in out and "4 codebooks" in out
    assert main(["decode", str(tmp_path / "x.sktk"), "-o", str(tmp_path / "y.wav")]) == 0
    decoded, sr = sf.read(tmp_path / "y.wav")
    assert sr == 16000 and abs(len(decoded) - len(speech_16k)) <= 1
    (tmp_path / "bad.sktk").write_bytes(b"garbage")
    assert main(["decode", str(tmp_path / "bad.sktk")]) == 2
    assert "too short" in capsys.readouterr().err
    assert main(["decode", str(tmp_path / "missing.sktk")]) == 2
