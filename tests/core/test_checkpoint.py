"""Checkpoints and the registry: strict save/load, identical outputs, clear errors, shipped names."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import speechkit
from speechkit.checkpoint import load_model, save_checkpoint, shipped_checkpoints
from speechkit.codec.mel_rvq import MelRVQCodec, MelRVQCodecConfig
from speechkit.errors import CheckpointError, ConfigError
from speechkit.registry import build_model, config_from_dict, model_class


@pytest.fixture()
def tiny_checkpoint(tmp_path):
    model = MelRVQCodec(MelRVQCodecConfig(num_quantizers=2, codebook_size=16, griffin_lim_iters=2))
    with torch.no_grad():
        model.quantizer.train()
        model.quantizer(torch.randn(1, 80, 400))  # k-means init so the codebook is not default
    model.eval()
    return save_checkpoint(model, tmp_path / "ckpt", {"task": "codec"}), model


def test_save_load_gives_identical_outputs(tiny_checkpoint):
    path, model = tiny_checkpoint
    loaded = load_model(path)
    wav = torch.randn(1, 3200)
    assert torch.equal(model.encode_codes(wav), loaded.encode_codes(wav))
    codes = model.encode_codes(wav)
    assert torch.allclose(model.decode_codes(codes), loaded.decode_codes(codes))
    card = json.loads((path / "card.json").read_text())
    assert card["kind"] == "mel_rvq_codec" and card["parameters"] == sum(
        p.numel() for p in model.parameters()
    )


def test_truncated_or_altered_weights_are_refused(tiny_checkpoint):
    path, _ = tiny_checkpoint
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="does not match the sha256"):
        load_model(path)
    # Without the card's hash the safetensors reader itself must refuse the truncated file.
    (path / "card.json").write_text("{}")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_model(path)


def test_config_that_does_not_match_weights(tiny_checkpoint):
    path, _ = tiny_checkpoint
    config = json.loads((path / "config.json").read_text())
    config["codebook_size"] = 32
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="has shape"):
        load_model(path)
    config["codebook_size"] = 16
    config["surprise"] = 1
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unknown config keys"):
        load_model(path)


def test_missing_files_and_unknown_names(tmp_path, tiny_checkpoint):
    path, _ = tiny_checkpoint
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        load_model(path)
    with pytest.raises(CheckpointError, match="shipped names"):
        speechkit.load("no-such-model")
    with pytest.raises(ConfigError, match="unknown model kind"):
        config_from_dict({"kind": "warp_drive", "version": 1})


def test_registry_builds_from_config_alone():
    config = MelRVQCodecConfig(num_quantizers=3, codebook_size=8)
    model = build_model(config_from_dict(config.to_dict()))
    assert isinstance(model, model_class("mel_rvq_codec")) and model.codebook_sizes == (8, 8, 8)


def test_shipped_default_loads_by_name_and_round_trips(speech_16k):
    names = [c.name for c in shipped_checkpoints()]
    assert "mel-rvq-demo" in names
    codec = speechkit.load("mel-rvq-demo")
    tokens = codec.encode(speech_16k, 16000)
    assert tokens.bitrate == pytest.approx(codec.bitrate())
    decoded = codec.decode(tokens)
    assert decoded.shape == speech_16k.shape and np.all(np.isfinite(decoded))
    # The fitted quantizer must reproduce the mel envelope far better than silence would.
    from speechkit_rt.features import log_mel_spectrogram

    ref = log_mel_spectrogram(speech_16k, 16000, 1024, 320, 80, power=1.0)
    out = log_mel_spectrogram(decoded, 16000, 1024, 320, 80, power=1.0)
    assert np.abs(out - ref).mean() < 0.5 * np.abs(ref - ref.mean()).mean()


def test_float16_storage_halves_size_and_loads_as_float32(tmp_path):
    model = MelRVQCodec(MelRVQCodecConfig(num_quantizers=2, codebook_size=16)).eval()
    full = save_checkpoint(model, tmp_path / "fp32")
    half = save_checkpoint(model, tmp_path / "fp16", weights_dtype=torch.float16)
    assert (half / "model.safetensors").stat().st_size < 0.6 * (full / "model.safetensors").stat().st_size
    loaded = load_model(half)
    assert all(p.dtype == torch.float32 for p in loaded.state_dict().values() if p.is_floating_point())
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(loaded.state_dict()[key], value, rtol=1e-3, atol=1e-4)
