"""The ASR model: shapes, chunk masks, DeCRED combinations, save/load, Speech2C pieces."""

from __future__ import annotations

import math

import pytest
import torch

from speechkit.asr.decred import combine_layer_log_probs
from speechkit.asr.encoder import EBranchformerEncoder
from speechkit.asr.model import ASRConfig, EBranchformerASR
from speechkit.asr.speech2c import (
    Speech2CConfig,
    Speech2CPretrainer,
    codes_at_encoder_frames,
    deduplicate,
    init_asr_from_speech2c,
    span_mask,
)
from speechkit.checkpoint import load_model, save_checkpoint
from speechkit.errors import ConfigError
from speechkit.nn.masks import chunk_attention_mask


def test_default_config_size_and_frame_rate():
    model = EBranchformerASR(ASRConfig())
    params = sum(p.numel() for p in model.parameters())
    assert 5e6 < params < 10e6
    assert model.frame_shift_seconds == pytest.approx(0.04)


def test_chunk_mask_bounds_context():
    mask = chunk_attention_mask(12, chunk_size=4, num_left_chunks=1)
    for t in range(12):
        chunk = t // 4
        allowed = [s for s in range(12) if chunk - 1 <= s // 4 <= chunk]
        assert mask[t].nonzero().flatten().tolist() == allowed
    assert chunk_attention_mask(6, 2, None)[5].all()  # unlimited left context


def test_chunked_encoder_ignores_the_future_beyond_its_chunk():
    torch.manual_seed(0)
    enc = EBranchformerEncoder(16, depth=3, num_heads=2, cgmlp_mult=2, kernel_size=5, causal_convs=True).eval()
    x = torch.randn(1, 16, 16)
    lengths = torch.tensor([16])
    base = enc(x, lengths, chunk_size=4)
    changed = x.clone()
    changed[:, 8:] = torch.randn(1, 8, 16)  # new content in chunks 2 and 3
    out = enc(changed, lengths, chunk_size=4)
    assert torch.allclose(out[:, :8], base[:, :8], atol=1e-5)
    assert not torch.allclose(out[:, 8:12], base[:, 8:12], atol=1e-3)
    full = enc(changed, lengths)  # full context: the past sees the change
    assert not torch.allclose(full[:, :8], base[:, :8], atol=1e-3)


def test_decred_combinations():
    probs = [torch.tensor([0.2, 0.8]), torch.tensor([0.6, 0.4]), torch.tensor([0.5, 0.5])]
    logs = [p.log() for p in probs]
    linear = combine_layer_log_probs(logs, "linear", [1.0, 1.0, 2.0]).exp()
    assert torch.allclose(linear, (probs[0] + probs[1] + 2 * probs[2]) / 4)
    log_linear = combine_layer_log_probs(logs, "log_linear", [1.0, 1.0, 2.0]).exp()
    geometric = (probs[0] * probs[1] * probs[2] ** 2) ** 0.25
    assert torch.allclose(log_linear, geometric / geometric.sum())
    assert torch.equal(combine_layer_log_probs(logs, "final"), logs[-1])
    assert math.isclose(float(log_linear.sum()), 1.0, rel_tol=1e-6)
    with pytest.raises(ConfigError):
        combine_layer_log_probs(logs, "linear", [1.0, 1.0])
    with pytest.raises(ConfigError):
        combine_layer_log_probs(logs, "mean")


def test_decoder_step_matches_teacher_forcing_for_every_head():
    model = EBranchformerASR(ASRConfig.tiny(decoder_layers=3, intermediate_layers=(1, 2))).eval()
    memory = torch.randn(1, 6, 32)
    tokens = torch.tensor([[2, 7, 8, 3]])
    heads = model.decoder(tokens, torch.ones(1, 4, dtype=torch.bool), memory, None)
    assert len(heads) == 3
    state = model.decoder.initial_state(1)
    for t in range(4):
        step_heads, state = model.decoder.step(tokens[:, t], state, memory, None)
        for full, step in zip(heads, step_heads):
            assert torch.allclose(full[:, t], step, atol=1e-5)


def test_baseline_has_no_intermediate_heads_and_bad_layers_raise():
    model = EBranchformerASR(ASRConfig.tiny(intermediate_layers=()))
    assert model.decoder.num_heads_out == 1 and len(model.decoder.intermediate_norms) == 0
    with pytest.raises(ConfigError):
        EBranchformerASR(ASRConfig.tiny(decoder_layers=2, intermediate_layers=(2,)))


def test_save_load_round_trip(tmp_path):
    model = EBranchformerASR(ASRConfig.tiny()).eval()
    model.frontend.set_statistics(torch.full((40,), -3.0), torch.full((40,), 2.0))
    save_checkpoint(model, tmp_path / "asr")
    loaded = load_model(tmp_path / "asr")
    wav = torch.randn(1, 8000)
    a, _ = model.encode(wav)
    b, _ = loaded.encode(wav)
    assert torch.equal(a, b)
    assert torch.equal(loaded.frontend.feature_mean, model.frontend.feature_mean)
    assert loaded.config == model.config


def test_config_refuses_another_vocabulary():
    data = ASRConfig.tiny().to_dict()
    data["vocab_size"] = 40
    with pytest.raises(ConfigError):
        ASRConfig.from_dict(data)


def test_speech2c_pieces_and_fine_tuning_init(tmp_path):
    assert codes_at_encoder_frames(
        torch.arange(10)[None], torch.tensor([10]), 4, 50.0, (torch.arange(4) * 4 + 3) * 0.01
    )[0].tolist() == [[1, 3, 5, 7]]
    mask = span_mask(torch.tensor([50, 20]), 50, 0.08, 5)
    assert not mask[1, 20:].any() and mask[0].any()
    packed, lengths = deduplicate(torch.tensor([[1, 1, 2, 2, 2, 1]]), torch.ones(1, 6, dtype=torch.bool))
    assert packed.tolist() == [[1, 2, 1]] and lengths.tolist() == [3]

    pre = Speech2CPretrainer(Speech2CConfig(asr=ASRConfig.tiny(), num_codes=16))
    save_checkpoint(pre, tmp_path / "s2c")
    pre = load_model(tmp_path / "s2c")  # the nested config round-trips
    asr = EBranchformerASR(ASRConfig.tiny())
    embedding_before = asr.decoder.embedding.weight.clone()
    copied = init_asr_from_speech2c(asr, pre)
    assert copied > 10
    assert torch.equal(asr.encoder.blocks[0].attn.qkv.weight, pre.encoder.blocks[0].attn.qkv.weight)
    assert torch.equal(asr.decoder.transformer.blocks[0].cross.q.weight, pre.decoder.transformer.blocks[0].cross.q.weight)
    assert torch.equal(asr.decoder.embedding.weight, embedding_before)  # characters: fresh
    with pytest.raises(ConfigError):
        init_asr_from_speech2c(EBranchformerASR(ASRConfig.tiny(dim=48)), pre)
