"""The causal RVQ codec: shapes, causality, latency bound, config/checkpoint round trips, a short fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechkit.checkpoint import load_model, save_checkpoint
from speechkit.codec.api import Codec
from speechkit.codec.causal_rvq_codec import CausalISTFT, CausalRVQCodec, CausalRVQCodecConfig
from speechkit.config import ModelConfig
from speechkit.errors import ConfigError
from speechkit.features import ISTFT, STFT
from speechkit.registry import config_from_dict

TINY = CausalRVQCodecConfig(
    dim=32, latent_dim=16, num_quantizers=4, codebook_size=32, encoder_blocks=(1, 1), decoder_blocks=(1, 1)
)


@pytest.fixture()
def model() -> CausalRVQCodec:
    return CausalRVQCodec(TINY).eval()


def test_shapes_bitrate_and_latency(model):
    codec = Codec(model)
    assert codec.frame_rate == 50.0 and codec.bitrate(2) == 50 * 5 * 2
    wav = np.random.default_rng(0).standard_normal(16000 + 123).astype(np.float32) * 0.1
    tokens = codec.encode(wav, 16000, num_codebooks=3)
    assert tokens.codes.shape == (1, 3, 51)
    assert codec.decode(tokens).shape == wav.shape
    assert model.algorithmic_latency_samples == 480 and model.algorithmic_latency_ms == 30.0
    longer = CausalRVQCodec(TINY.replace(n_fft=480))  # one more hop of overlap-add: one more hop of latency
    assert longer.algorithmic_latency_samples == 640


def test_causal_istft_matches_offline_istft_inside():
    """Away from the edges the causal OLA is the ordinary weighted OLA, so STFT -> CausalISTFT is exact."""
    n_fft, hop = 64, 16
    wav = torch.randn(1, 40 * hop)
    real, imag = STFT(n_fft, hop, padding="none")(torch.nn.functional.pad(wav, (n_fft - hop, 0)))
    out = CausalISTFT(n_fft, hop)(real, imag)
    assert out.shape == wav.shape
    assert torch.allclose(out[:, : -(n_fft - hop)], wav[:, : -(n_fft - hop)], atol=1e-4)
    reference = ISTFT(n_fft, hop, padding="same")  # the non-causal head agrees on the interior too
    assert reference.output_length(40) == out.shape[-1]


@pytest.mark.parametrize("position", [700, 1601, 2880])
def test_future_input_leaves_past_codes_and_audio_unchanged(model, position):
    wav = torch.randn(1, 3200)
    changed = wav.clone()
    changed[:, position:] += torch.randn(1, 3200 - position)
    codes, codes_changed = model.encode_codes(wav), model.encode_codes(changed)
    first_affected_token = position // model.hop_length
    assert torch.equal(codes[..., :first_affected_token], codes_changed[..., :first_affected_token])
    # A random tiny codebook may map both to the same code, so check the latents change from there on.
    latent, latent_changed = (model.encoder(model.analyse(x)) for x in (wav, changed))
    assert torch.equal(latent[..., :first_affected_token], latent_changed[..., :first_affected_token])
    assert not torch.allclose(latent[..., first_affected_token], latent_changed[..., first_affected_token])
    # Decoder: changing token m changes nothing before m * 320 - (n_fft - stft_hop) (overlap-add).
    later = codes.clone()
    later[..., first_affected_token:] = (later[..., first_affected_token:] + 1) % TINY.codebook_size
    audio, audio_changed = model.decode_codes(codes), model.decode_codes(later)
    end = first_affected_token * model.hop_length - (TINY.n_fft - TINY.hop_length)
    assert torch.equal(audio[:, :end], audio_changed[:, :end])
    assert not torch.allclose(audio[:, end:], audio_changed[:, end:])


def test_codec_latency_bound_holds_and_is_tight(model):
    """Output sample t never depends on input at or after t + L; the worst sample needs input t + L - 2."""
    latency = model.algorithmic_latency_samples

    def unquantized(x: torch.Tensor) -> torch.Tensor:  # RVQ is per frame; skipping it avoids code ties
        return model.synthesise(model.encoder(model.analyse(x)))

    wav = torch.randn(1, 3200)
    reference, reference_coded = unquantized(wav), model.decode_codes(model.encode_codes(wav))
    for cut in (*range(960, 1600, 40), 1599, 1919):  # input [0, cut) kept, the rest replaced
        changed = wav.clone()
        changed[:, cut:] = torch.randn(1, 3200 - cut)
        out, out_coded = unquantized(changed), model.decode_codes(model.encode_codes(changed))
        final = cut - latency + 1  # samples t with t + L <= cut
        assert torch.equal(out[:, :final], reference[:, :final])
        assert torch.equal(out_coded[:, :final], reference_coded[:, :final])
    # Tight: replacing token 4 (input 1280..1599) first moves sample 1121 (the Hann window is 0 at
    # sample 1120 of frame 8), which therefore waits for input sample 1599 = 1121 + L - 2.
    changed = wav.clone()
    changed[:, 1280:] = torch.randn(1, 3200 - 1280)
    moved = torch.nonzero((unquantized(changed) - reference)[0] != 0)[0].item()
    assert moved == 1121 and moved + latency - 2 == 1599


def test_config_round_trip_and_validation():
    config = TINY.replace(analysis_n_fft=640)
    rebuilt = config_from_dict(config.to_dict())
    assert rebuilt == config and isinstance(rebuilt, ModelConfig)
    with pytest.raises(ConfigError, match="multiple of hop_length"):
        CausalRVQCodecConfig(n_fft=400)
    with pytest.raises(ConfigError, match="unknown config keys"):
        CausalRVQCodecConfig.from_dict({**TINY.to_dict(), "causal": True})


def test_checkpoint_save_load_gives_identical_output(model, tmp_path):
    wav = torch.randn(1, 1600)
    save_checkpoint(model, tmp_path / "ckpt")
    loaded = load_model(tmp_path / "ckpt")
    assert isinstance(loaded, CausalRVQCodec)
    codes = model.encode_codes(wav)
    assert torch.equal(loaded.encode_codes(wav), codes)
    assert torch.equal(loaded.decode_codes(codes), model.decode_codes(codes))


@pytest.mark.slow
def test_short_training_reduces_the_loss():
    from speechkit.train.recipes.codec_training import CodecTrainingModule

    torch.manual_seed(0)
    module = CodecTrainingModule(CausalRVQCodec(TINY.replace(quantizer_dropout=0.0)))
    t = torch.arange(6400) / 16000
    batch = torch.stack([0.3 * torch.sin(2 * torch.pi * f * t) for f in (220.0, 330.0)])
    batch = batch + 0.01 * torch.randn_like(batch)
    optimizer = torch.optim.AdamW(module.parameters(), lr=2e-3)
    losses = []
    for _ in range(20):
        loss, _ = module.training_step(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])
