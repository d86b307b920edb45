"""ECAPA-TDNN: warped front-end, masking, AAM margin, pseudo-speaker data, a short training run."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from speechkit.errors import ConfigError, DataError
from speechkit.features import mel_filterbank
from speechkit.speaker.ecapa import ECAPATDNN, ECAPAConfig, warped_filterbank
from speechkit.train.speaker_data import SpeakerCropDataset, collate_speaker

TINY = dict(channels=32, embedding_dim=16, attention_channels=8, se_channels=8, res2net_scale=4)


def tiny_model(num_classes: int = 4, **overrides) -> ECAPATDNN:
    torch.manual_seed(0)
    return ECAPATDNN(ECAPAConfig(num_classes=num_classes, **{**TINY, **overrides}))


def test_warped_filterbank_moves_a_formant_by_alpha():
    """A tone at f through the plain bank looks like a tone at f / alpha through the alpha-warped bank."""
    n_fft, rate = 512, 16000
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    tone = np.exp(-0.5 * ((freqs - 2000.0) / 40.0) ** 2)
    moved = np.exp(-0.5 * ((freqs - 2000.0 * 1.15) / (40.0 * 1.15)) ** 2)
    plain_of_moved = mel_filterbank(rate, n_fft, 40) @ moved
    warped_of_tone = warped_filterbank(rate, n_fft, 40, 1.15) @ tone
    assert np.argmax(plain_of_moved) == np.argmax(warped_of_tone)
    assert np.argmax(mel_filterbank(rate, n_fft, 40) @ tone) < np.argmax(warped_of_tone)


def test_embedding_is_unit_norm_and_ignores_padding():
    model = tiny_model().eval()
    wav = torch.randn(1, 12000) * 0.1
    alone = model.embed(wav)
    padded = torch.cat([wav, torch.zeros(1, 8000)], dim=1)
    batch = model.embed(torch.cat([padded, torch.randn(1, 20000) * 0.1]), torch.tensor([12000, 20000]))
    assert torch.allclose(alone.norm(dim=-1), torch.ones(1), atol=1e-5)
    assert torch.allclose(alone[0], batch[0], atol=1e-5)


def test_aam_margin_only_lowers_the_target_logit():
    model = tiny_model()
    embeddings, labels = torch.randn(6, 16), torch.tensor([0, 1, 2, 3, 0, 1])
    plain, margined = model.aam_logits(embeddings), model.aam_logits(embeddings, labels)
    target = torch.nn.functional.one_hot(labels, 4).bool()
    assert torch.all(margined[target] < plain[target])
    assert torch.allclose(margined[~target], plain[~target])


def test_config_checks():
    with pytest.raises(ConfigError, match="vtlp_factors"):
        ECAPAConfig(vtlp_factors=(0.9, 1.0))
    with pytest.raises(ConfigError, match="divisible"):
        ECAPAConfig(channels=30, res2net_scale=8)


def _tiny_corpus(tmp_path, speakers=("a", "b", "c"), per_speaker=6):
    """Speaker = a harmonic tone with its own fundamental; utterances differ in length and phase."""
    rng = np.random.default_rng(0)
    rows = []
    for s, name in enumerate(speakers):
        for u in range(per_speaker):
            n = int(16000 * rng.uniform(1.0, 2.0))
            t = np.arange(n) / 16000
            f0 = 110.0 * (1.6**s)
            wav = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6)) / h for h in range(1, 6))
            wav = 0.2 * wav / np.max(np.abs(wav)) + 0.003 * rng.standard_normal(n)
            path = tmp_path / f"{name}{u}.wav"
            sf.write(path, wav.astype(np.float32), 16000)
            rows.append(
                {"path": path.name, "text": "x", "speaker": name, "engine": "tone", "voice": name,
                 "duration": n / 16000, "sample_rate": 16000, "split": "train", "perturbation": {}}
            )  # fmt: skip
    manifest = tmp_path / "train.jsonl"
    import json

    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def test_dataset_labels_are_speaker_times_shift(tmp_path):
    data = SpeakerCropDataset(_tiny_corpus(tmp_path), shifts=(1.0, 0.87, 1.15), crop_seconds=0.5)
    assert data.num_classes == 9 and len(data) == 18 * 3
    torch.manual_seed(0)
    items = [data[i] for i in range(len(data))]
    labels = [int(i["label"]) for i in items]
    assert sorted(set(labels)) == list(range(9))
    assert all(len(i["wav"]) <= 8000 for i in items)
    assert all(int(i["warp"]) in (0, int(i["label"]) % 3) for i in items)
    batch = collate_speaker(items[:4])
    assert batch["wav"].shape[0] == 4 and batch["labels"].tolist() == labels[:4]
    with pytest.raises(DataError, match="1.0"):
        SpeakerCropDataset(tmp_path / "train.jsonl", shifts=(0.9,))


@pytest.mark.slow
def test_short_training_separates_tone_speakers(tmp_path):
    """60 steps on three tone 'speakers': same-speaker cosine ends above different-speaker cosine."""
    data = SpeakerCropDataset(_tiny_corpus(tmp_path), shifts=(1.0,), crop_seconds=0.8)
    model = tiny_model(num_classes=data.num_classes, vtlp_factors=(1.0,))
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    torch.manual_seed(0)
    for _ in range(60):
        batch = collate_speaker([data[int(i)] for i in torch.randint(0, len(data), (12,))])
        loss, metrics = model.training_step(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        embs = torch.cat([model.embed(data[i]["wav"][None]) for i in range(len(data))])
    labels = torch.tensor([int(data[i]["label"]) for i in range(len(data))])
    cos = embs @ embs.T
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~torch.eye(len(labels), dtype=torch.bool)
    assert cos[same & off_diagonal].mean() > cos[~same].mean() + 0.3
    assert metrics["accuracy"] > 0.6
