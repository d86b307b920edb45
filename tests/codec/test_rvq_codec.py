"""The frame-rate RVQ codec: shapes, bitrate accounting, API errors, and a short overfit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechkit.codec.api import Codec
from speechkit.codec.rvq_codec import RVQCodec, RVQCodecConfig
from speechkit.errors import AudioError, BitstreamError
from speechkit.tokenizers.tokens import Tokens

TINY = RVQCodecConfig(
    dim=32, latent_dim=16, num_quantizers=4, codebook_size=32, encoder_blocks=(1, 1), decoder_blocks=(1, 1)
)


@pytest.fixture()
def codec() -> Codec:
    return Codec(RVQCodec(TINY).eval())


def test_shapes_and_bitrate(codec):
    assert codec.frame_rate == 50.0 and codec.codebook_sizes == (32,) * 4
    assert codec.bitrate(2) == 50 * 5 * 2
    wav = np.random.default_rng(0).standard_normal(16000 + 123).astype(np.float32) * 0.1
    tokens = codec.encode(wav, 16000, num_codebooks=3)
    assert tokens.codes.shape == (1, 3, 51)  # 16123 samples padded to 51 token hops of 320
    assert tokens.bitrate == 50 * 5 * 3
    assert codec.decode(tokens).shape == wav.shape


def test_fewer_codebooks_decode_and_more_are_refused(codec):
    wav = np.random.default_rng(1).standard_normal(3200).astype(np.float32)
    assert codec.decode(codec.encode(wav, 16000, num_codebooks=1)).shape == (3200,)
    with pytest.raises(ValueError, match="num_codebooks"):
        codec.encode(wav, 16000, num_codebooks=5)


def test_bad_input_and_foreign_tokens(codec):
    with pytest.raises(AudioError, match="silence"):
        codec.encode(np.zeros(1600, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="empty"):
        codec.encode(np.zeros(0, dtype=np.float32), 16000)
    bad = np.ones(1600, dtype=np.float32)
    bad[3] = np.inf
    with pytest.raises(AudioError, match="NaN or Inf"):
        codec.encode(bad, 16000)
    foreign = Tokens(np.zeros((1, 2, 5), dtype=np.int64), 50.0, (32, 32), kind="mel_rvq_codec")
    with pytest.raises(BitstreamError, match="made by a 'mel_rvq_codec' model"):
        codec.decode(foreign)
    wrong_sizes = Tokens(np.zeros((1, 2, 5), dtype=np.int64), 50.0, (16, 16), kind="rvq_codec")
    with pytest.raises(BitstreamError, match="codebook sizes"):
        codec.decode(wrong_sizes)


def test_stereo_44k_input_is_converted(codec):
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)], axis=1).astype(np.float32)
    tokens = codec.encode(stereo, 44100)
    assert tokens.extras["num_samples"][0] == 16000 and codec.decode(tokens).shape == (16000,)


@pytest.mark.slow
def test_overfits_a_two_second_clip(speech_16k):
    from speechkit.train.recipes.codec_training import CodecTrainingModule

    torch.manual_seed(0)
    module = CodecTrainingModule(RVQCodec(TINY.replace(quantizer_dropout=0.0)))
    clip = torch.from_numpy(speech_16k[8000 : 8000 + 32000])[None]
    optimizer = torch.optim.AdamW(module.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss, metrics = module.training_step(clip)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(metrics["mel"])
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3])
