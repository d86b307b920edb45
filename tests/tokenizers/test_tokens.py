"""Tokens: validation, immutability, derived numbers and selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechkit.errors import BitstreamError
from speechkit.tokenizers import Tokens


def make(codes=None, frame_rate=50.0, sizes=(1024,) * 8, kind="rvq_codec", **extras) -> Tokens:
    if codes is None:
        codes = np.random.default_rng(0).integers(0, 1024, (2, 8, 100))
    return Tokens(codes, frame_rate, sizes, kind, extras)


def test_properties_and_bitrate_arithmetic():
    tokens = make()
    assert (tokens.batch_size, tokens.num_codebooks, tokens.num_frames) == (2, 8, 100)
    assert tokens.duration_seconds == pytest.approx(2.0)
    assert tokens.bitrate == 4000.0  # 50 Hz x 8 codebooks x 10 bits
    mixed = Tokens(np.zeros((1, 4, 3), dtype=np.int64), 75, (3, 5, 1000, 4096), "x")
    assert mixed.bitrate == 75 * (2 + 3 + 10 + 12)
    assert isinstance(mixed.frame_rate, float)


def test_codes_are_an_immutable_int64_copy():
    source = np.zeros((1, 2, 5), dtype=np.int32)
    tokens = Tokens(source, 50.0, [16, 16], "x")
    source[0, 0, 0] = 3
    assert tokens.codes.dtype == np.int64 and tokens.codes[0, 0, 0] == 0
    assert tokens.codebook_sizes == (16, 16)
    with pytest.raises(ValueError):
        tokens.codes[0, 0, 0] = 1
    with pytest.raises(AttributeError):
        tokens.kind = "y"
    as_tensor = tokens.to_torch()
    as_tensor[0, 0, 0] = 7  # a writable copy
    assert as_tensor.dtype == torch.long and tokens.codes[0, 0, 0] == 0


@pytest.mark.parametrize("bad_value, codebook", [(1024, 3), (-1, 0)])
def test_out_of_range_codes_raise(bad_value, codebook):
    codes = np.zeros((1, 8, 4), dtype=np.int64)
    codes[0, codebook, 2] = bad_value
    with pytest.raises(BitstreamError, match=f"code {bad_value} in codebook {codebook}"):
        make(codes)


def test_per_codebook_ranges_are_checked_separately():
    codes = np.array([[[2, 2], [4, 4]]])  # codebook 0 holds 3 entries, codebook 1 holds 5
    assert make(codes, sizes=(3, 5)).num_codebooks == 2
    with pytest.raises(BitstreamError, match="codebook 0"):
        make(codes, sizes=(2, 5))


@pytest.mark.parametrize(
    "codes, sizes, message",
    [
        (np.zeros((8, 4), dtype=np.int64), (4,) * 8, "3-D"),
        (np.zeros((1, 1, 8, 4), dtype=np.int64), (4,), "3-D"),
        (np.zeros((1, 2, 4)), (4, 4), "integer dtype"),
        (np.zeros((1, 2, 4), dtype=bool), (4, 4), "integer dtype"),
        (torch.zeros(1, 2, 4, dtype=torch.long), (4, 4), "numpy array"),
        (np.zeros((1, 2, 4), dtype=np.int64), (4, 4, 4), "3 entries"),
        (np.zeros((1, 0, 4), dtype=np.int64), (), "K = 0"),
        (np.zeros((1, 1, 4), dtype=np.int64), (0,), ">= 1"),
    ],
)
def test_wrong_shapes_dtypes_and_sizes_raise(codes, sizes, message):
    with pytest.raises(BitstreamError, match=message):
        Tokens(codes, 50.0, sizes, "x")


def test_bad_frame_rate_kind_and_extras_raise():
    codes = np.zeros((2, 1, 4), dtype=np.int64)
    for frame_rate in (0.0, -5.0, float("nan"), float("inf"), "50"):
        with pytest.raises(BitstreamError, match="frame_rate"):
            Tokens(codes, frame_rate, (4,), "x")
    with pytest.raises(BitstreamError, match="kind"):
        Tokens(codes, 50.0, (4,), "")
    with pytest.raises(BitstreamError, match="global_embedding"):
        Tokens(codes, 50.0, (4,), "x", {"global_embedding": np.zeros((3, 16))})
    ok = Tokens(codes, 50.0, (4,), "x", {"global_embedding": np.zeros((2, 16))})
    assert ok.extras["global_embedding"].shape == (2, 16)


def test_errors_are_value_errors():
    with pytest.raises(ValueError):
        make(np.full((1, 8, 2), 5000))


def test_empty_frames_are_valid():
    tokens = make(np.zeros((1, 8, 0), dtype=np.int64))
    assert tokens.num_frames == 0 and tokens.duration_seconds == 0.0


def test_select_keeps_first_codebooks():
    tokens = make(speaker="a")
    first = tokens.select(3)
    np.testing.assert_array_equal(first.codes, tokens.codes[:, :3])
    assert first.codebook_sizes == (1024,) * 3 and first.bitrate == 1500.0
    assert first.kind == tokens.kind and first.extras == {"speaker": "a"}
    assert tokens.select(8) == tokens
    for bad in (0, 9, 2.0):
        with pytest.raises(BitstreamError):
            tokens.select(bad)


def test_equality_by_value_and_repr():
    emb = np.ones((2, 4))
    a, b = make(global_embedding=emb), make(global_embedding=emb.copy())
    assert a == b
    assert a != make(global_embedding=emb * 2)
    assert a != make(frame_rate=75.0, global_embedding=emb)
    assert "num_codebooks=8" in repr(a) and "global_embedding" in repr(a)
    with pytest.raises(TypeError):
        hash(a)
