"""MobileSpeech: the training step's masking, generation, prompts, save/load."""

from __future__ import annotations

import pytest
import torch

from speechkit.checkpoint import load_model, save_checkpoint
from speechkit.errors import ConfigError
from speechkit.tts.mobilespeech import MobileSpeech, MobileSpeechConfig

TINY = dict(
    dim=32, num_heads=2, text_layers=1, prompt_layers=1, duration_layers=1, decoder_layers=1,
    num_codebooks=3, codebook_size=16, default_prompt_frames=12, dropout=0.0,
)  # fmt: skip


def _batch(b=4, n=6, t=10, p=8, k=3, v=16):
    g = torch.Generator().manual_seed(0)
    return {
        "phonemes": torch.randint(4, 80, (b, n), generator=g),
        "phoneme_lengths": torch.full((b,), n),
        "durations": torch.full((b, n), 3),
        "codes": torch.randint(0, v, (b, k, t), generator=g),
        "frame_start": torch.zeros(b, dtype=torch.long),
        "frame_lengths": torch.full((b,), t),
        "prompt_codes": torch.randint(0, v, (b, k, p), generator=g),
        "prompt_lengths": torch.full((b,), p),
    }


def test_training_step_learns_a_fixed_batch():
    model = MobileSpeech(MobileSpeechConfig(**TINY))
    batch = _batch()
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    first = None
    for _ in range(60):
        loss, metrics = model.training_step(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else metrics
    assert metrics["token_ce"] < 0.6 * first["token_ce"]
    assert metrics["duration_mse"] < 0.2 * first["duration_mse"]


def test_layers_above_the_target_are_hidden_from_the_decoder():
    """Changing codes of layers > j must not change layer j's logits (the high-level mask)."""
    model = MobileSpeech(MobileSpeechConfig(**TINY)).eval()
    b = _batch(b=1)
    text, tv = model.encode_text(b["phonemes"])
    prompt, pv = model.encode_prompt(b["prompt_codes"])
    from speechkit.tts.durations import length_regulate

    frames = length_regulate(text, b["durations"])[:, :10]
    valid = torch.ones(1, 10, dtype=torch.bool)
    codes = b["codes"].clone()
    codes[:, 1:] = model.mask_id
    layer0 = torch.tensor([0])
    ref = model.decoder_logits(codes, layer0, frames, valid, prompt, pv)
    changed = b["codes"].clone()
    changed[:, 0] = codes[:, 0]
    changed[:, 1:] = model.mask_id
    assert torch.allclose(ref, model.decoder_logits(changed, layer0, frames, valid, prompt, pv))
    leaked = b["codes"].clone()  # layers 1, 2 visible: logits differ, so the mask above matters
    assert not torch.allclose(ref, model.decoder_logits(leaked, layer0, frames, valid, prompt, pv))


def test_generate_shapes_durations_and_determinism():
    model = MobileSpeech(MobileSpeechConfig(**TINY)).eval()
    phonemes, prompt = torch.randint(4, 80, (1, 7)), torch.randint(0, 16, (1, 3, 12))
    a = model.generate(phonemes, prompt, steps=(3,), generator=torch.Generator().manual_seed(1))
    b = model.generate(phonemes, prompt, steps=(3,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.codes, b.codes)
    assert a.codes.shape[:2] == (1, 3) and a.codes.shape[2] == int(a.durations.sum())
    assert (a.codes >= 0).all() and (a.codes < 16).all() and (a.durations >= 1).all()
    fixed = model.generate(phonemes, prompt, durations=torch.full((1, 7), 2), num_codebooks=2)
    assert fixed.codes.shape == (1, 2, 14)
    faster = model.generate(phonemes, prompt, durations=None, speed=4.0)
    assert int(faster.durations.sum()) <= int(a.durations.sum())


def test_the_prompt_changes_the_output():
    torch.manual_seed(0)
    model = MobileSpeech(MobileSpeechConfig(**TINY)).eval()
    phonemes, d = torch.randint(4, 80, (1, 7)), torch.full((1, 7), 2)
    one = model.generate(phonemes, torch.zeros(1, 3, 12, dtype=torch.long), durations=d, temperature=0.0)
    two = model.generate(phonemes, torch.full((1, 3, 12), 9), durations=d, temperature=0.0)
    assert not torch.equal(one.codes, two.codes)


def test_default_prompt_is_saved_with_the_weights(tmp_path):
    model = MobileSpeech(MobileSpeechConfig(**TINY)).eval()
    with pytest.raises(ConfigError, match="no default voice"):
        model.default_prompt()
    model.set_default_prompt(torch.randint(0, 16, (5, 20)))  # 5 layers, 20 frames: kept 3 x 12
    save_checkpoint(model, tmp_path / "ms", {"task": "tts"})
    loaded = load_model(tmp_path / "ms")
    assert torch.equal(loaded.default_prompt(), model.default_prompt())
    assert loaded.default_prompt().shape == (1, 3, 12)
    phonemes = torch.randint(4, 80, (1, 5))
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(
        loaded.generate(phonemes, loaded.default_prompt(), generator=g()).codes,
        model.generate(phonemes, model.default_prompt(), generator=g()).codes,
    )


def test_config_checks_layer_weights():
    with pytest.raises(ConfigError, match="layer_weights needs 3 entries"):
        MobileSpeech(MobileSpeechConfig(**{**TINY, "layer_weights": (1.0, 2.0)}))
