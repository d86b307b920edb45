"""speechkit_rt.token_file: the runtime's numpy token file is byte-compatible with speechkit's both ways."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from speechkit.codec.bitstream import read_bitstream, write_bitstream
from speechkit.errors import BitstreamError as SdkBitstreamError
from speechkit.tokenizers.bitpacking import pack_codes as sdk_pack_codes
from speechkit.tokenizers.tokens import Tokens
from speechkit_rt.errors import BitstreamError
from speechkit_rt.token_file import (
    RuntimeTokens,
    pack_codes,
    packed_size_bytes,
    read_token_file,
    unpack_codes,
    write_token_file,
)

NAMES = {"model": "codec-rvq", "fingerprint": "0123456789abcdef", "sample_rate": 16000}
# (codebook sizes, frames, num_samples, global sizes): powers of two and not, one codebook, no frames.
CASES = [
    ((1024,) * 4, 37, 37 * 320 - 5, ()),
    ((3, 5, 1000), 11, None, ()),
    ((2,), 1, 320, ()),
    ((16, 16), 0, 0, ()),
    ((1024,), 25, 8000, (16, 16, 7)),
]


def _random_pair(sizes, frames, num_samples, global_sizes, seed=0) -> tuple[Tokens, RuntimeTokens]:
    """The same random codes as speechkit Tokens and as RuntimeTokens."""
    rng = np.random.default_rng(seed)
    codes = (
        np.stack([rng.integers(0, s, frames) for s in sizes])[None]
        .astype(np.int64)
        .reshape(1, len(sizes), frames)
    )
    extras: dict = {} if num_samples is None else {"num_samples": np.array([num_samples])}
    global_codes = None
    if global_sizes:
        global_codes = np.array([[rng.integers(0, s) for s in global_sizes]], dtype=np.int64)
        extras.update(global_codes=global_codes, global_codebook_sizes=global_sizes)
    sdk = Tokens(codes, 50.0, sizes, kind="rvq_codec", extras=extras)
    runtime = RuntimeTokens(codes, 50.0, sizes, "rvq_codec", num_samples, global_codes, global_sizes)
    return sdk, runtime


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"sizes{len(c[0])}-frames{c[1]}-global{len(c[3])}")
def test_runtime_file_is_byte_identical_to_the_sdks(case):
    sdk, runtime = _random_pair(*case)
    assert write_token_file(runtime, **NAMES) == write_bitstream(sdk, **NAMES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"sizes{len(c[0])}-frames{c[1]}-global{len(c[3])}")
def test_sdk_file_reads_to_identical_tokens(case):
    sdk, _ = _random_pair(*case, seed=1)
    header, tokens = read_token_file(write_bitstream(sdk, **NAMES))
    assert header == read_bitstream(write_bitstream(sdk, **NAMES))[0]
    np.testing.assert_array_equal(tokens.codes, sdk.codes)
    assert tokens.codebook_sizes == sdk.codebook_sizes and tokens.frame_rate == sdk.frame_rate
    assert tokens.kind == "rvq_codec"
    expected_samples = sdk.extras.get("num_samples")
    assert tokens.num_samples == (None if expected_samples is None else int(expected_samples[0]))
    if case[3]:
        np.testing.assert_array_equal(tokens.global_codes, sdk.extras["global_codes"])
        assert tokens.global_codebook_sizes == case[3]
    else:
        assert tokens.global_codes is None


def test_runtime_file_reads_back_in_the_sdk():
    _, runtime = _random_pair((1024,) * 3, 9, 2880, (16, 16))
    _, tokens = read_bitstream(write_token_file(runtime, **NAMES))
    np.testing.assert_array_equal(tokens.codes, runtime.codes)
    np.testing.assert_array_equal(tokens.extras["global_codes"], runtime.global_codes)


def test_version_1_file_is_read():
    """Version 1 (before global codes): the same header without the two global fields."""
    codes = np.array([[[1, 2, 3], [0, 7, 5]]])
    payload = pack_codes(codes[0], (8, 8))
    header = {"model": "m", "kind": "rvq_codec", "fingerprint": "f", "sample_rate": 16000, "frame_rate": 50.0,
              "codebook_sizes": [8, 8], "num_frames": 3, "num_samples": 960, "payload_bytes": len(payload)}  # fmt: skip
    encoded = json.dumps(header).encode()
    data = struct.pack(">4sBI", b"SKTK", 1, len(encoded)) + encoded + payload
    _, tokens = read_token_file(data)
    np.testing.assert_array_equal(tokens.codes, codes)
    assert tokens.num_samples == 960 and tokens.global_codes is None


def test_packing_matches_the_sdk_on_random_codes():
    rng = np.random.default_rng(3)
    sizes = (3, 1, 1000, 1024, 5, 2**20)
    codes = np.stack([rng.integers(0, s, 101) for s in sizes])
    data = pack_codes(codes, sizes)
    assert data == sdk_pack_codes(codes, sizes)
    assert len(data) == packed_size_bytes(101, sizes)
    np.testing.assert_array_equal(unpack_codes(data, sizes, 101), codes)


def _good_file() -> bytes:
    _, runtime = _random_pair((5, 1000), 7, 2240, ())  # 13 bits a frame: 91 bits, 5 padding bits
    return write_token_file(runtime, **NAMES)


def _with_header(data: bytes, **changes) -> bytes:
    length = struct.unpack(">I", data[5:9])[0]
    header = json.loads(data[9 : 9 + length])
    header.update(changes)
    encoded = json.dumps(header).encode()
    return data[:5] + struct.pack(">I", len(encoded)) + encoded + data[9 + length :]


CORRUPTIONS = {
    "too short": lambda d: d[:6],
    "bad magic": lambda d: b"OGGS" + d[4:],
    "unknown version": lambda d: d[:4] + bytes([3]) + d[5:],
    "truncated header": lambda d: d[:20],
    "header not json": lambda d: d[:9] + b"x" + d[10:],
    "header lacks a field": lambda d: _drop_field(d, "num_frames"),
    "truncated payload": lambda d: d[:-1],
    "padding bits set": lambda d: d[:-1] + bytes([d[-1] | 1]),
    "code past its codebook": lambda d: _with_header(d, codebook_sizes=[5, 600]),
}


def _drop_field(data: bytes, name: str) -> bytes:
    length = struct.unpack(">I", data[5:9])[0]
    header = json.loads(data[9 : 9 + length])
    del header[name]
    encoded = json.dumps(header).encode()
    return data[:5] + struct.pack(">I", len(encoded)) + encoded + data[9 + length :]


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupt_files_are_refused_like_the_sdk(name):
    bad = CORRUPTIONS[name](_good_file())
    with pytest.raises(BitstreamError) as runtime_err:
        read_token_file(bad)
    with pytest.raises(SdkBitstreamError) as sdk_err:
        read_bitstream(bad)
    # The same message, except that the runtime names itself where the SDK says "this speechkit".
    assert str(runtime_err.value) == str(sdk_err.value).replace("this speechkit", "this runtime")


def test_runtime_tokens_validate_and_are_immutable():
    tokens = RuntimeTokens(
        np.zeros((1, 2, 4), dtype=np.int32), 50, (8, 8), "rvq_codec", num_samples=np.int64(100)
    )
    assert tokens.codes.dtype == np.int64 and not tokens.codes.flags.writeable
    assert tokens.frame_rate == 50.0 and tokens.num_samples == 100 and tokens.duration_seconds == 4 / 50
    with pytest.raises(BitstreamError, match="outside"):
        RuntimeTokens(np.full((1, 1, 3), 8), 50.0, (8,), "rvq_codec")
    with pytest.raises(BitstreamError, match=r"\[1, K, N\]"):
        RuntimeTokens(np.zeros((2, 1, 3), dtype=np.int64), 50.0, (8,), "rvq_codec")
    with pytest.raises(BitstreamError, match="2 codebooks but 1"):
        RuntimeTokens(np.zeros((1, 2, 3), dtype=np.int64), 50.0, (8,), "rvq_codec")
    with pytest.raises(BitstreamError, match="integer"):
        RuntimeTokens(np.zeros((1, 1, 3)), 50.0, (8,), "rvq_codec")
    with pytest.raises(BitstreamError, match="frame_rate"):
        RuntimeTokens(np.zeros((1, 1, 3), dtype=np.int64), float("nan"), (8,), "rvq_codec")
    with pytest.raises(BitstreamError, match="both or neither"):
        RuntimeTokens(
            np.zeros((1, 1, 3), dtype=np.int64), 50.0, (8,), "x", global_codes=np.zeros((1, 2), int)
        )
    with pytest.raises(BitstreamError, match=r"\[1, G=2\]"):
        RuntimeTokens(
            np.zeros((1, 1, 3), dtype=np.int64), 50.0, (8,), "x", None, np.zeros((1, 2, 1), int), (4, 4)
        )
    with pytest.raises(BitstreamError, match="1..2"):
        tokens.select(3)
    assert tokens.select(1).codebook_sizes == (8,)
