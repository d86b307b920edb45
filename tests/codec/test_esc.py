"""ESC codec: shapes and bitrates, step-wise decoding, quantizer pre-training, API and checkpoint
round trips, the recipe's command line, and a short overfit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechkit.checkpoint import load_model, save_checkpoint
from speechkit.codec.api import Codec
from speechkit.codec.esc import ESCCodec, ESCCodecConfig, stream_scales
from speechkit.errors import ConfigError

# 8 patches of 40 bins at 100 Hz (no blocks) -> 4 at 50 Hz -> 2 at 50 Hz; 3 streams x 2 groups of 16.
TINY = ESCCodecConfig(
    patch_bins=40,
    dims=(16, 16, 32),
    depths=(0, 1, 1),
    time_strides=(1, 2, 1),
    head_dim=8,
    num_streams=3,
    num_groups=2,
    codebook_size=16,
)


def _fitted_codebooks(model: ESCCodec) -> ESCCodec:
    """One training pass k-means-initialises every codebook; returns the model in eval mode."""
    model.train()(torch.randn(2, 6400) * 0.1)
    return model.eval()


def test_default_config_rates_and_size():
    model = ESCCodec(ESCCodecConfig())
    codec = Codec(model)
    assert codec.frame_rate == 50.0 and codec.codebook_sizes == (1024,) * 12
    assert [codec.num_codebooks_for(kbps) for kbps in (1.5, 3.0, 6.0)] == [3, 6, 12]
    assert codec.bitrate(3) == 1500.0 and codec.bitrate() == 6000.0
    assert model.stream_scales == (3, 3, 2, 1) and model.num_patches == [16, 8, 4, 2]
    assert 0.5e6 < sum(p.numel() for p in model.parameters()) < 3e6


def test_shapes_and_bitrate_through_the_api():
    codec = Codec(ESCCodec(TINY).eval())
    assert codec.bitrate(2) == 50 * 4 * 2
    wav = np.random.default_rng(0).standard_normal(16000 + 123).astype(np.float32) * 0.1
    tokens = codec.encode(wav, 16000, num_codebooks=3)
    assert tokens.codes.shape == (1, 3, 51) and tokens.bitrate == 50 * 4 * 3
    assert codec.decode(tokens).shape == wav.shape
    with pytest.raises(ValueError, match="num_codebooks"):
        codec.encode(wav, 16000, num_codebooks=7)


def test_forward_with_n_codebooks_equals_encode_then_decode():
    model = _fitted_codebooks(ESCCodec(TINY))
    wav = torch.randn(2, 3200) * 0.1
    with torch.no_grad():
        outputs = [model(wav, num_codebooks=n) for n in range(1, 7)]
    for n, out in enumerate(outputs, start=1):
        codes = model.encode_codes(wav, n)
        assert codes.shape == (2, n, 10) and torch.equal(codes, out.quantizer.codes[:, :n])
        assert torch.allclose(model.decode_codes(codes), out.audio, atol=1e-5)
    # every added codebook changes the decoded audio (partial streams included)
    assert all(not torch.allclose(a.audio, b.audio) for a, b in zip(outputs, outputs[1:], strict=False))


def test_training_pass_reports_every_codebook():
    model = ESCCodec(TINY.replace(quantizer_dropout=1.0)).train()
    out = model(torch.randn(8, 3200) * 0.1)
    q = out.quantizer
    assert out.audio.shape == (8, 3200) and q.codes.shape == (8, 6, 10)
    assert q.perplexity.shape == (6,) and q.usage.shape == (6,) and q.commitment_loss > 0
    assert set(q.num_stages.tolist()) <= {2, 4, 6}  # dropout keeps whole streams
    out.audio.pow(2).mean().backward()
    assert model.encoder[1].blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_pretraining_bypasses_then_initialises_codebooks():
    model = ESCCodec(TINY).train()
    model.begin_quantizer_pretraining(2)
    layers = [layer for stream in model.quantizer.streams for layer in stream.layers]
    wav = torch.randn(2, 3200) * 0.1
    for _ in range(2):
        assert not model.quantizers_enabled
        out = model(wav)
        assert out.quantizer.commitment_loss == 0 and out.quantizer.usage.sum() == 0
        assert not any(bool(layer.initialized) for layer in layers)
    assert model.quantizers_enabled and int(model.pretraining_steps_left) == 0
    out = model(wav)  # first quantized pass: k-means on the pre-trained residuals
    assert all(bool(layer.initialized) for layer in layers) and out.quantizer.usage.min() > 0
    assert out.quantizer.commitment_loss > 0


def test_pretraining_countdown_is_saved_with_the_weights():
    model = ESCCodec(TINY)
    model.begin_quantizer_pretraining(5)
    model.train()(torch.randn(1, 3200) * 0.1)
    restored = ESCCodec(TINY)
    restored.load_state_dict(model.state_dict())
    assert int(restored.pretraining_steps_left) == 4 and not restored.quantizers_enabled
    restored.set_quantizers_enabled(True)
    assert restored.quantizers_enabled and int(restored.pretraining_steps_left) == 0


def test_token_file_and_checkpoint_round_trip(tmp_path):
    model = _fitted_codebooks(ESCCodec(TINY))
    save_checkpoint(model, tmp_path / "esc-tiny")
    codec = load_model(tmp_path / "esc-tiny").task_api()
    assert codec.kind == "esc_codec"
    wav = np.random.default_rng(1).standard_normal(6400).astype(np.float32) * 0.1
    tokens = codec.encode(wav, 16000, num_codebooks=4)
    restored = codec.from_bytes(codec.to_bytes(tokens))
    assert np.array_equal(restored.codes, tokens.codes)
    decoded = codec.decode(restored)
    assert decoded.shape == wav.shape and np.allclose(decoded, Codec(model).decode(tokens), atol=1e-5)


def test_config_json_round_trip_and_validation(tmp_path):
    TINY.save(tmp_path / "config.json")
    assert ESCCodecConfig.load(tmp_path / "config.json") == TINY
    assert ESCCodecConfig.from_dict(ESCCodecConfig().to_dict()) == ESCCodecConfig()
    with pytest.raises(ConfigError, match="bins"):
        ESCCodec(TINY.replace(patch_bins=30))
    with pytest.raises(ConfigError, match="time_strides"):
        ESCCodec(TINY.replace(time_strides=(1, 2, 2)))
    with pytest.raises(ConfigError, match="streams"):
        stream_scales(5, num_scales=3)
    with pytest.raises(ValueError, match="multiple of 320"):
        ESCCodec(TINY).encode_codes(torch.randn(1, 1000))


def test_train_esc_help(capsys):
    from speechkit.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "esc", "--help"])
    assert exit_info.value.code == 0
    assert "--pretrain-steps" in capsys.readouterr().out


@pytest.mark.slow
def test_overfits_a_two_second_clip_coarse_to_fine(speech_16k):
    from speechkit.train.recipes.codec_training import CodecTrainingModule

    torch.manual_seed(0)
    codec = ESCCodec(TINY)
    codec.begin_quantizer_pretraining(15)
    module = CodecTrainingModule(codec)
    clip = torch.from_numpy(speech_16k[8000 : 8000 + 32000])[None]
    optimizer = torch.optim.AdamW(module.parameters(), lr=3e-3)
    losses = []
    for _ in range(80):
        loss, metrics = module.training_step(clip)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(metrics["mel"])
    assert codec.quantizers_enabled and metrics["usage_min"] > 0
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3])
    codec.eval()
    with torch.no_grad():  # step-wise decoding: each added stream lowers the mel error
        errors = [
            float(module.mel_loss(codec.decode_codes(codec.encode_codes(clip, n)), clip)) for n in (2, 4, 6)
        ]
    assert errors[0] > errors[1] > errors[2], errors
