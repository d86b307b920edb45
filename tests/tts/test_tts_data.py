"""TTS training data: prompts from the same speaker, consistent prompt durations, padding."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from speechkit.errors import DataError
from speechkit.train.tts_data import MaskedTTSDataset, collate_masked_tts


def _fake_corpus(folder, speakers=("a", "b"), per_speaker=3, k=4, seed=0):
    rng = np.random.default_rng(seed)
    records, phonemes, durations, chunks, offsets = [], [], [], [], [0]
    for s in speakers:
        for i in range(per_speaker):
            n = int(rng.integers(5, 15))
            dur = rng.integers(1, 8, size=n)
            frames = int(dur.sum())
            # each frame's code 0 carries the utterance number, so a test can tell utterances apart
            codes = rng.integers(0, 1024, size=(k, frames)).astype(np.int16)
            codes[0] = len(records)
            records.append({"path": f"{s}{i}.wav", "text": "x", "speaker": s, "frames": frames})
            phonemes.append({"ids": rng.integers(4, 80, size=n).tolist()})
            durations.append({"durations": dur.tolist()})
            chunks.append(codes)
            offsets.append(offsets[-1] + frames)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"codes": np.concatenate(chunks, 1), "offsets": np.array(offsets, dtype=np.int64)},
              str(folder / "train.tokens.safetensors"))
    for name, rows in (("tokens", records), ("phonemes", phonemes), ("durations", durations)):
        (folder / f"train.{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return records


def test_prompt_is_another_utterance_of_the_same_speaker(tmp_path):
    records = _fake_corpus(tmp_path)
    ds = MaskedTTSDataset(tmp_path, "train", 4, max_frames=20, prompt_frames=10, prompt_text_probability=1.0)
    for position in range(len(ds)):
        item = ds[position]
        utt = int(item["codes"][0, 0])
        prompt_utt = int(item["prompt_codes"][0, 0])
        assert prompt_utt != utt
        assert records[prompt_utt]["speaker"] == records[utt]["speaker"]
        assert item["prompt_codes"].shape[1] <= 10
        assert sum(item["prompt_durations"]) == item["prompt_codes"].shape[1]
        assert len(item["prompt_durations"]) == len(item["prompt_phonemes"])
        assert item["codes"].shape[1] <= 20


def test_collate_pads_and_keeps_lengths(tmp_path):
    _fake_corpus(tmp_path)
    ds = MaskedTTSDataset(tmp_path, "train", 3, max_frames=20, prompt_frames=10, prompt_text_probability=0.5)
    batch = collate_masked_tts([ds[i] for i in range(len(ds))])
    assert batch["codes"].shape[:2] == (6, 3)
    assert batch["phonemes"].shape == batch["durations"].shape
    for b in range(6):
        n = int(batch["phoneme_lengths"][b])
        assert (batch["phonemes"][b, n:] == 0).all() and (batch["phonemes"][b, :n] != 0).all()
    assert torch.equal(batch["frame_lengths"], torch.tensor([ds[i]["codes"].shape[1] for i in range(6)]))


def test_missing_durations_are_a_clear_error(tmp_path):
    _fake_corpus(tmp_path)
    (tmp_path / "train.durations.jsonl").unlink()
    with pytest.raises(DataError, match="durations.jsonl is missing"):
        MaskedTTSDataset(tmp_path, "train", 4)
