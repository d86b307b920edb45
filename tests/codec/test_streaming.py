"""Streaming encoder/decoder of the causal RVQ codec: chunked output equals offline, latency holds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechkit.codec.causal_rvq_codec import CausalRVQCodec, CausalRVQCodecConfig
from speechkit.codec.rvq_codec import RVQCodec, RVQCodecConfig
from speechkit.codec.streaming import StreamingDecoder, StreamingEncoder
from speechkit.errors import AudioError, BitstreamError, ConfigError

TINY = CausalRVQCodecConfig(
    dim=32, latent_dim=16, num_quantizers=4, codebook_size=32, encoder_blocks=(1, 2), decoder_blocks=(2, 1)
)


@pytest.fixture()
def model() -> CausalRVQCodec:
    return CausalRVQCodec(TINY).eval()


def _chunks(total: int, size: int | list[int]) -> list[slice]:
    sizes = size if isinstance(size, list) else [size]
    out, start, i = [], 0, 0
    while start < total:
        out.append(slice(start, min(total, start + sizes[i % len(sizes)])))
        start, i = start + sizes[i % len(sizes)], i + 1
    return out


@pytest.mark.parametrize("chunk", [1, 100, 160, 320, 333, 1000, [7, 500, 41, 320]])
def test_streaming_equals_offline(model, chunk):
    wav = np.random.default_rng(0).standard_normal(3000).astype(np.float32) * 0.3  # not a token multiple
    with torch.inference_mode():
        offline_codes = model.encode_codes(torch.from_numpy(wav)[None], num_codebooks=3)[0].numpy()
        offline_audio = model.decode_codes(torch.from_numpy(offline_codes)[None])[0].numpy()
    encoder, decoder = StreamingEncoder(model, num_codebooks=3), StreamingDecoder(model.task_api())
    code_parts = [encoder.push(wav[s]) for s in _chunks(len(wav), chunk)] + [encoder.flush()]
    codes = np.concatenate(code_parts, axis=1)
    np.testing.assert_array_equal(codes, offline_codes)
    # Feed the decoder in its own chunking (1, 2, 3 tokens ...), independent of the encoder's.
    audio_parts = [decoder.push(codes[:, s]) for s in _chunks(codes.shape[1], [1, 2, 3])]
    audio = np.concatenate([*audio_parts, decoder.flush()])
    assert audio.shape == offline_audio.shape == (3200,)
    np.testing.assert_allclose(audio, offline_audio, atol=1e-5, rtol=1e-5)


def test_flush_resets_for_a_second_stream(model):
    wav = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    encoder, decoder = StreamingEncoder(model), StreamingDecoder(model)
    first = np.concatenate([encoder.push(wav), encoder.flush()], axis=1)
    second = np.concatenate([encoder.push(wav[:10]), encoder.push(wav[10:]), encoder.flush()], axis=1)
    np.testing.assert_array_equal(first, second)
    audio_first = np.concatenate([decoder.push(first), decoder.flush()])
    audio_second = np.concatenate([decoder.push(second), decoder.flush()])
    np.testing.assert_array_equal(audio_first, audio_second)
    assert encoder.flush().shape == (4, 0) and decoder.flush().shape == (0,)


def test_emitted_audio_is_final_within_the_latency(model):
    """After n input samples, every sample t with t + L <= n is out (and equals offline); the
    sample right after what is out is not yet final for some n."""
    latency = model.algorithmic_latency_samples
    wav = np.random.default_rng(2).standard_normal(3200).astype(np.float32)
    with torch.inference_mode():
        offline = model.decode_codes(model.encode_codes(torch.from_numpy(wav)[None]))[0].numpy()
    encoder, decoder = StreamingEncoder(model), StreamingDecoder(model)
    emitted: list[np.ndarray] = []
    slack = []
    for n in range(1, len(wav) + 1):
        emitted.append(decoder.push(encoder.push(wav[n - 1 : n])))
        count = sum(len(e) for e in emitted)
        assert count >= n - latency + 1  # samples 0 .. n - L are out
        slack.append(count - (n - latency + 1))
    np.testing.assert_allclose(np.concatenate(emitted), offline[:count], atol=1e-5)
    assert min(slack[latency:]) == 0  # the bound is reached: L is the exact worst case
    assert model.algorithmic_latency_ms == 30.0


def test_bad_inputs_are_refused(model):
    encoder, decoder = StreamingEncoder(model), StreamingDecoder(model)
    with pytest.raises(AudioError, match="mono"):
        encoder.push(np.zeros((10, 2), dtype=np.float32))
    with pytest.raises(AudioError, match="NaN"):
        encoder.push(np.full(10, np.nan, dtype=np.float32))
    with pytest.raises(BitstreamError, match="codes must lie"):
        decoder.push(np.full((2, 3), 99))
    with pytest.raises(ValueError, match="num_codebooks"):
        StreamingEncoder(model, num_codebooks=5)
    offline = RVQCodec(RVQCodecConfig(dim=16, latent_dim=8, encoder_blocks=(1, 1), decoder_blocks=(1, 1)))
    with pytest.raises(ConfigError, match="CausalRVQCodec"):
        StreamingDecoder(offline)
