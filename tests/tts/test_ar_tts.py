"""Autoregressive TTS with forward-backward decoding: reversal, the agreement term, caching, voices."""

from __future__ import annotations

import pytest
import torch

from speechkit.errors import ConfigError
from speechkit.tts.ar_tts import ARTTSConfig, ForwardBackwardTTS, reverse_valid

TINY = dict(
    dim=32, num_heads=2, text_layers=1, decoder_layers=1, codebook_size=16, global_num_codes=2,
    global_codebook_size=8, dropout=0.0,
)  # fmt: skip


def _batch(b=4, n=6, t=9):
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([t, t - 2, t - 4, 3])[:b]
    codes = torch.randint(0, 16, (b, t), generator=g) * (torch.arange(t)[None] < lengths[:, None])
    return {
        "phonemes": torch.randint(4, 80, (b, n), generator=g),
        "phoneme_lengths": torch.full((b,), n),
        "codes": codes,
        "code_lengths": lengths,
        "global_codes": torch.randint(0, 8, (b, 2), generator=g),
    }


def test_reverse_valid_is_an_involution_on_the_valid_part():
    batch = _batch()
    reversed_codes, index = reverse_valid(batch["codes"], batch["code_lengths"])
    twice, _ = reverse_valid(reversed_codes, batch["code_lengths"])
    assert torch.equal(twice, batch["codes"])
    assert reversed_codes[1, 0] == batch["codes"][1, 6] and reversed_codes[1, 7:].eq(0).all()


def test_baseline_has_no_backward_terms_and_fbd_has_them():
    base = ForwardBackwardTTS(ARTTSConfig(**TINY, backward_decoder=False, fbd_weight=0.0))
    _, metrics = base.training_step(_batch())
    assert set(metrics) == {"ce_forward"} and base.backward_decoder is None
    fbd = ForwardBackwardTTS(ARTTSConfig(**TINY))
    _, metrics = fbd.training_step(_batch())
    assert {"ce_forward", "ce_backward", "agreement"} <= set(metrics) and metrics["agreement"] > 0


def test_agreement_term_pulls_the_two_decoders_together():
    torch.manual_seed(0)
    model = ForwardBackwardTTS(ARTTSConfig(**TINY, fbd_weight=10.0))
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    batch = _batch()
    first = model.training_step(batch)[1]["agreement"]
    for _ in range(40):
        loss, metrics = model.training_step(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert metrics["agreement"] < 0.5 * first
    assert metrics["ce_forward"] < 2.5  # still learning the tokens (ln 17 = 2.83 at chance)


def test_cached_generation_matches_the_full_forward_pass():
    """Greedy decoding with the KV cache picks the argmax of the teacher-forced forward pass."""
    model = ForwardBackwardTTS(ARTTSConfig(**TINY)).eval()
    phonemes, voice = torch.randint(4, 80, (1, 5)), torch.tensor([[1, 3]])
    codes = model.generate(phonemes, voice, temperature=0.0, max_frames=8, min_frames=8)
    text, valid = model.encode_text(phonemes)
    inputs = torch.cat([torch.tensor([[model.bos_id]]), codes[:, :-1]], 1)
    h = model._decode(model.forward_decoder, inputs, torch.ones_like(inputs, dtype=torch.bool), text, valid,
                      model.speaker_vector(voice))
    logits = model.output(h)
    logits[..., model.eos_id] = float("-inf")
    assert torch.equal(logits.argmax(-1), codes)


def test_voice_changes_output_and_default_voice_round_trips():
    model = ForwardBackwardTTS(ARTTSConfig(**TINY))
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    for _ in range(5):  # the adaptive norms start as identity: a few steps let the voice in
        loss, _ = model.training_step(_batch())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    phonemes = torch.randint(4, 80, (1, 5))
    text, valid = model.encode_text(phonemes)
    inputs = torch.tensor([[model.bos_id, 3, 4]])
    mask = torch.ones_like(inputs, dtype=torch.bool)
    h_a = model._decode(model.forward_decoder, inputs, mask, text, valid, model.speaker_vector(torch.tensor([[0, 0]])))
    h_b = model._decode(model.forward_decoder, inputs, mask, text, valid, model.speaker_vector(torch.tensor([[7, 5]])))
    assert (h_a - h_b).abs().max() > 1e-3
    with pytest.raises(ConfigError, match="no default voice"):
        model.default_voice()
    model.set_default_voice(torch.tensor([4, 2]))
    assert model.default_voice().tolist() == [[4, 2]]
    with pytest.raises(ValueError, match="no speed control"):
        model.synthesize_tokens(phonemes, model.default_voice(), speed=1.5)
