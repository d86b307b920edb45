"""ProductVQ and CrossScaleRVQ: layouts, partial streams, dropout, bypass and re-initialisation."""

from __future__ import annotations

import pytest
import torch

from speechkit.errors import ConfigError
from speechkit.tokenizers.cross_scale_rvq import CrossScaleRVQ, ProductVQ, split_sizes

SHAPES = [(2, 4, 1), (2, 4, 1), (4, 2, 2)]  # (patches, channels, grid frames per token) per stream


def _rvq(**kwargs) -> CrossScaleRVQ:
    return CrossScaleRVQ(SHAPES, num_groups=2, codebook_size=8, codebook_dim=2, **kwargs)


def test_split_sizes_cover_the_channels():
    assert split_sizes(10, 3) == [4, 3, 3] and sum(split_sizes(385, 3)) == 385
    with pytest.raises(ConfigError):
        split_sizes(2, 3)


def test_product_vq_groups_are_independent_slices():
    pvq = ProductVQ(dim=9, num_groups=3, codebook_size=8, codebook_dim=2)
    x = torch.randn(4, 9, 6)
    pvq(x)  # k-means init
    pvq.eval()
    codes = pvq.encode(x)
    full = pvq.decode(codes)
    assert torch.allclose(pvq(x).quantized, full, atol=1e-6)
    partial = pvq.decode(codes[:, :2])
    assert torch.equal(partial[:, :6], full[:, :6]) and partial[:, 6:].abs().max() == 0
    # group 0's codes do not depend on the other slices
    y = x.clone()
    y[:, 3:] = torch.randn(4, 6, 6)
    assert torch.equal(pvq.encode(y)[:, 0], codes[:, 0])


def test_product_vq_inactive_groups_add_nothing():
    pvq = ProductVQ(dim=6, num_groups=3, codebook_size=8, codebook_dim=2)
    out = pvq(torch.randn(2, 6, 5), num_groups=torch.tensor([1, 3]))
    assert out.quantized[0, 2:].abs().max() == 0 and out.quantized[1, 2:].abs().max() > 0
    assert out.codes.shape == (2, 3, 5) and out.perplexity.shape == (3,)


def test_vector_layout_round_trips():
    rvq = _rvq()
    for stream, (patches, dim, m) in enumerate(SHAPES):
        x = torch.randn(2, patches, 6, dim)
        vectors = rvq._to_vectors(stream, x)
        assert vectors.shape == (2, patches * dim * m, 6 // m)
        assert torch.equal(rvq._from_vectors(stream, vectors), x)
    with pytest.raises(ValueError, match="stream 2 expects"):
        rvq._to_vectors(2, torch.randn(2, 4, 5, 2))  # 5 frames, 2 per token


def test_quantize_matches_encode_and_decode_in_eval():
    rvq = _rvq()
    target, decoded = torch.randn(3, 4, 6, 2), torch.randn(3, 4, 6, 2)
    counts = torch.full((3,), 6)
    rvq.quantize(2, target, decoded, counts)  # k-means init of stream 2
    rvq.eval()
    refined, out = rvq.quantize(2, target, decoded, counts)
    refined_enc, codes = rvq.encode(2, target, decoded, num_groups=2)
    assert torch.equal(codes, out.codes) and codes.shape == (3, 2, 3)
    assert torch.allclose(refined, refined_enc, atol=1e-6)
    assert torch.allclose(rvq.decode(2, codes, decoded), refined, atol=1e-6)
    _, first = rvq.encode(2, target, decoded, num_groups=1)
    assert torch.equal(first, codes[:, :1])


def test_dropout_keeps_whole_streams_in_training_only():
    rvq = _rvq(quantizer_dropout=1.0)
    counts = rvq.sample_num_codebooks(256, torch.device("cpu"))
    assert set(counts.tolist()) == {2, 4, 6}  # multiples of the 2 groups per stream
    assert rvq.sample_num_codebooks(4, torch.device("cpu"), num_codebooks=3).tolist() == [3] * 4
    rvq.eval()
    assert rvq.sample_num_codebooks(4, torch.device("cpu")).tolist() == [6] * 4
    with pytest.raises(ValueError, match="num_codebooks"):
        rvq.sample_num_codebooks(4, torch.device("cpu"), num_codebooks=7)


def test_bypass_then_enable_reinitialises_codebooks():
    rvq = _rvq(quantizer_dropout=1.0)
    target, decoded = torch.randn(8, 2, 4, 4), torch.zeros(8, 2, 4, 4)
    rvq.quantize(0, target, decoded, torch.full((8,), 6))  # first batch: k-means init
    layer = rvq.streams[0].layers[0]
    assert bool(layer.initialized)
    rvq.set_enabled(False)
    assert rvq.sample_num_codebooks(16, torch.device("cpu")).tolist() == [6] * 16  # no dropout
    refined, out = rvq.quantize(0, target, decoded, torch.full((8,), 6))
    expected = rvq._from_vectors(0, rvq.streams[0].bypass(rvq._to_vectors(0, target)))
    assert torch.equal(refined, expected)
    assert out.commitment_loss == 0 and out.usage.sum() == 0 and out.codes.abs().sum() == 0
    before = layer.codebook.clone()
    rvq.set_enabled(True)
    assert not bool(layer.initialized)
    rvq.quantize(0, target + 3.0, decoded, torch.full((8,), 6))
    assert bool(layer.initialized) and not torch.equal(layer.codebook, before)


def test_bitrate_and_sizes():
    rvq = _rvq()
    assert rvq.num_codebooks == 6 and rvq.codebook_sizes == (8,) * 6
    assert rvq.bitrate(50.0) == 50 * 3 * 6 and rvq.bitrate(50.0, 2) == 300.0
    with pytest.raises(ConfigError):
        CrossScaleRVQ([], num_groups=2)
    with pytest.raises(ConfigError):
        CrossScaleRVQ([(2, 0, 1)], num_groups=1)
