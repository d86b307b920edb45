"""TTS training data on top of a token corpus (``speechkit.train.token_corpus``).

Three steps, each writing next to the tokens so later steps and later sessions reuse them:

1. ``phonemize_split``: the text frontend's phoneme ids per utterance (``<split>.phonemes.jsonl``);
2. the aligner trains on audio + phonemes (``AlignerDataset``), then ``align_split`` writes
   per-phoneme durations in codec frames (``<split>.durations.jsonl``);
3. ``MaskedTTSDataset`` serves phonemes, durations, a window of codec frames and a prompt taken
   from another utterance of the same speaker.
"""

from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from tqdm import tqdm

from speechkit.audio import load_audio
from speechkit.errors import DataError, SpeechkitError
from speechkit.train.token_corpus import TokenSplit, read_token_index, read_token_split
from speechkit.tts.durations import beta_binomial_prior

logger = logging.getLogger(__name__)


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        raise DataError(f"{path} is missing (see speechkit.train.tts_data)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def phonemize_split(token_dir: str | Path, split: str, frontend) -> Path:
    """Write ``<split>.phonemes.jsonl``: ``{"ids": [...]}`` per utterance (``null`` if the text fails)."""
    token_dir = Path(token_dir)
    records = _read_jsonl(token_dir / f"{split}.tokens.jsonl")
    rows, failed = [], 0
    for record in tqdm(records, desc=f"phonemize {split}", unit="utt"):
        try:
            rows.append({"ids": list(frontend.phonemize(record["text"]).ids)})
        except SpeechkitError as err:
            failed += 1
            logger.warning("cannot phonemize %r: %s", record["text"], err)
            rows.append({"ids": None})
    out = token_dir / f"{split}.phonemes.jsonl"
    _write_jsonl(out, rows)
    logger.info("%s: %d utterances phonemized, %d failed", split, len(rows) - failed, failed)
    return out


def read_phonemes(token_dir: str | Path, split: str) -> list[list[int] | None]:
    return [row["ids"] for row in _read_jsonl(Path(token_dir) / f"{split}.phonemes.jsonl")]


def read_durations(token_dir: str | Path, split: str) -> list[list[int] | None]:
    return [row["durations"] for row in _read_jsonl(Path(token_dir) / f"{split}.durations.jsonl")]


class AlignerDataset(Dataset):
    """Audio (padded to the token frames) + phoneme ids + the alignment prior, per utterance."""

    def __init__(self, token_dir: str | Path, split: str, data_dir: str | Path, max_frames: int = 600) -> None:
        token_dir, self.data_dir = Path(token_dir), Path(data_dir)
        index = read_token_index(token_dir)
        self.sample_rate, self.hop_length = int(index["sample_rate"]), int(index["hop_length"])
        records = _read_jsonl(token_dir / f"{split}.tokens.jsonl")
        phonemes = read_phonemes(token_dir, split)
        self.items = [
            (r, p)
            for r, p in zip(records, phonemes, strict=True)
            if p is not None and len(p) <= r["frames"] <= max_frames
        ]
        if not self.items:
            raise DataError(f"no alignable utterances in {token_dir}/{split}")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        record, phonemes = self.items[index]
        wav, _ = load_audio(self.data_dir / record["path"], target_sample_rate=self.sample_rate)
        frames = record["frames"]
        wav = np.pad(wav, (0, max(0, frames * self.hop_length - len(wav))))[: frames * self.hop_length]
        return {"audio": wav, "phonemes": phonemes, "frames": frames}


def collate_aligner(items: list[dict]) -> dict[str, Tensor]:
    """Pad a list of :class:`AlignerDataset` items; the prior is -inf-free log beta-binomial [B, T, N]."""
    max_samples = max(len(it["audio"]) for it in items)
    max_tokens = max(len(it["phonemes"]) for it in items)
    max_frames = max(it["frames"] for it in items)
    audio = torch.zeros(len(items), max_samples)
    phonemes = torch.zeros(len(items), max_tokens, dtype=torch.long)
    prior = torch.zeros(len(items), max_frames, max_tokens)
    for b, it in enumerate(items):
        audio[b, : len(it["audio"])] = torch.from_numpy(it["audio"])
        phonemes[b, : len(it["phonemes"])] = torch.tensor(it["phonemes"])
        prior[b, : it["frames"], : len(it["phonemes"])] = torch.from_numpy(
            beta_binomial_prior(len(it["phonemes"]), it["frames"])
        )
    return {
        "audio": audio,
        "phonemes": phonemes,
        "phoneme_lengths": torch.tensor([len(it["phonemes"]) for it in items]),
        "frame_lengths": torch.tensor([it["frames"] for it in items]),
        "prior": prior,
    }


@torch.no_grad()
def align_split(aligner, token_dir: str | Path, split: str, data_dir: str | Path) -> Path:
    """Write ``<split>.durations.jsonl``: frames per phoneme (summing to the utterance's frames)."""
    token_dir = Path(token_dir)
    records = _read_jsonl(token_dir / f"{split}.tokens.jsonl")
    phonemes = read_phonemes(token_dir, split)
    index = read_token_index(token_dir)
    hop = int(index["hop_length"])
    aligner.eval()
    rows = []
    for record, ids in tqdm(list(zip(records, phonemes, strict=True)), desc=f"align {split}", unit="utt"):
        if ids is None or len(ids) > record["frames"]:
            rows.append({"durations": None})
            continue
        wav, _ = load_audio(Path(data_dir) / record["path"], target_sample_rate=int(index["sample_rate"]))
        wav = torch.from_numpy(np.pad(wav, (0, max(0, record["frames"] * hop - len(wav)))))[None]
        mel = aligner.features(wav, record["frames"])
        durations = aligner.durations(torch.tensor([ids]), mel)[0]
        rows.append({"durations": durations.tolist()})
    out = token_dir / f"{split}.durations.jsonl"
    _write_jsonl(out, rows)
    return out


class MaskedTTSDataset(Dataset):
    """Utterances with phonemes, durations, a window of codec frames and a same-speaker prompt.

    Args:
        token_dir: the token corpus folder with phonemes and durations written.
        split: corpus split.
        num_codebooks: codec layers served (the model's K).
        max_frames: window length T of the target frames (a random window of longer utterances).
        prompt_frames: longest prompt P (a random crop of another utterance of the same speaker).
        prompt_text_probability: share of items that also carry the prompt's phonemes and durations.
        seed: seed of the prompt choice and crops (the trainer's sampler shuffles independently).
    """

    def __init__(
        self,
        token_dir: str | Path,
        split: str,
        num_codebooks: int,
        max_frames: int = 100,
        prompt_frames: int = 150,
        prompt_text_probability: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.tokens: TokenSplit = read_token_split(token_dir, split)
        phonemes, durations = read_phonemes(token_dir, split), read_durations(token_dir, split)
        self.num_codebooks, self.max_frames, self.prompt_frames = num_codebooks, max_frames, prompt_frames
        self.prompt_text_probability = prompt_text_probability
        self.items = [
            (u, p, d)
            for u, (p, d) in enumerate(zip(phonemes, durations, strict=True))
            if p is not None and d is not None
        ]
        by_speaker: dict[str, list[int]] = defaultdict(list)
        for position, (u, _, _) in enumerate(self.items):
            by_speaker[self.tokens.records[u]["speaker"]].append(position)
        self.by_speaker = dict(by_speaker)
        self.rng = random.Random(seed)
        if not self.items:
            raise DataError(f"no utterance of {split} has both phonemes and durations")

    def __len__(self) -> int:
        return len(self.items)

    def _prompt(self, position: int) -> dict:
        """A crop of another utterance of the same speaker, cut on phoneme boundaries."""
        utt = self.items[position][0]
        speaker = self.tokens.records[utt]["speaker"]
        others = [p for p in self.by_speaker[speaker] if p != position] or [position]
        utt_p, phonemes, durations = self.items[self.rng.choice(others)]
        codes = self.tokens.codes(utt_p)[: self.num_codebooks]
        ends = np.cumsum(durations)
        starts = ends - np.asarray(durations)
        latest = max(0, int(ends[-1]) - self.prompt_frames)
        first = self.rng.choice([i for i, s in enumerate(starts) if s <= latest])
        start = int(starts[first])
        last = first + int(np.searchsorted(ends[first:] - start, self.prompt_frames, side="right"))
        last = min(max(last, first + 1), len(durations))
        end = min(int(ends[last - 1]), start + self.prompt_frames)
        out = {"prompt_codes": codes[:, start:end]}
        if self.rng.random() < self.prompt_text_probability:
            kept = list(durations[first:last])
            kept[-1] -= int(sum(kept)) - (end - start)  # a phoneme longer than the crop is cut
            out["prompt_phonemes"] = phonemes[first:last]
            out["prompt_durations"] = kept
        return out

    def __getitem__(self, position: int) -> dict:
        utt, phonemes, durations = self.items[position]
        codes = self.tokens.codes(utt)[: self.num_codebooks]
        total = codes.shape[1]
        start = self.rng.randrange(max(1, total - self.max_frames + 1))
        window = codes[:, start : start + self.max_frames]
        return {
            "phonemes": phonemes,
            "durations": durations,
            "codes": window,
            "frame_start": start,
            **self._prompt(position),
        }


def _pad_list(rows: list[list[int]], value: int = 0) -> Tensor:
    out = torch.full((len(rows), max(len(r) for r in rows)), value, dtype=torch.long)
    for b, r in enumerate(rows):
        out[b, : len(r)] = torch.as_tensor(r, dtype=torch.long)
    return out


def _pad_codes(rows: list[np.ndarray]) -> Tensor:
    out = torch.zeros(len(rows), rows[0].shape[0], max(r.shape[1] for r in rows), dtype=torch.long)
    for b, r in enumerate(rows):
        out[b, :, : r.shape[1]] = torch.from_numpy(r)
    return out


def collate_masked_tts(items: list[dict]) -> dict[str, Tensor]:
    """Pad :class:`MaskedTTSDataset` items into the batch :meth:`MobileSpeech.training_step` reads.

    Prompt phonemes are padded with 0 and zero durations for items without them (they then add a
    constant; the model learns to read the codes alone, as at inference without a transcript).
    """
    batch = {
        "phonemes": _pad_list([it["phonemes"] for it in items]),
        "phoneme_lengths": torch.tensor([len(it["phonemes"]) for it in items]),
        "durations": _pad_list([it["durations"] for it in items]),
        "codes": _pad_codes([it["codes"] for it in items]),
        "frame_start": torch.tensor([it["frame_start"] for it in items]),
        "frame_lengths": torch.tensor([it["codes"].shape[1] for it in items]),
        "prompt_codes": _pad_codes([it["prompt_codes"] for it in items]),
        "prompt_lengths": torch.tensor([it["prompt_codes"].shape[1] for it in items]),
    }
    if any("prompt_phonemes" in it for it in items):
        batch["prompt_phonemes"] = _pad_list([it.get("prompt_phonemes", [0]) for it in items])
        batch["prompt_durations"] = _pad_list([it.get("prompt_durations", [0]) for it in items])
    return batch


class ARTTSDataset(Dataset):
    """Whole utterances for autoregressive TTS: phonemes, the single-stream codes and speaker codes.

    The speaker (global) codes come from another utterance of the same speaker with probability
    ``other_prompt_probability`` (else the utterance's own), so the model learns to take the voice
    from a prompt, as at inference.
    """

    def __init__(
        self,
        token_dir: str | Path,
        split: str,
        max_frames: int = 250,
        other_prompt_probability: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.tokens = read_token_split(token_dir, split)
        if self.tokens.global_codes is None:
            raise DataError(f"{token_dir}/{split} has no global codes: encode it with a Single-Codec model")
        phonemes = read_phonemes(token_dir, split)
        self.items = [
            (u, p)
            for u, p in enumerate(phonemes)
            if p is not None and 1 <= self.tokens.records[u]["frames"] <= max_frames
        ]
        if not self.items:
            raise DataError(f"no utterance of {token_dir}/{split} has phonemes and <= {max_frames} frames")
        by_speaker: dict[str, list[int]] = defaultdict(list)
        for u, _ in self.items:
            by_speaker[self.tokens.records[u]["speaker"]].append(u)
        self.by_speaker = dict(by_speaker)
        self.other_prompt_probability = other_prompt_probability
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, position: int) -> dict:
        utt, phonemes = self.items[position]
        prompt = utt
        if self.rng.random() < self.other_prompt_probability:
            prompt = self.rng.choice(self.by_speaker[self.tokens.records[utt]["speaker"]])
        return {
            "phonemes": phonemes,
            "codes": self.tokens.codes(utt)[0],
            "global_codes": self.tokens.global_codes[prompt],
        }


def collate_ar_tts(items: list[dict]) -> dict[str, Tensor]:
    """Pad :class:`ARTTSDataset` items into the batch :meth:`ForwardBackwardTTS.training_step` reads."""
    return {
        "phonemes": _pad_list([it["phonemes"] for it in items]),
        "phoneme_lengths": torch.tensor([len(it["phonemes"]) for it in items]),
        "codes": _pad_list([it["codes"].tolist() for it in items]),
        "code_lengths": torch.tensor([len(it["codes"]) for it in items]),
        "global_codes": torch.from_numpy(np.stack([it["global_codes"] for it in items])).long(),
    }
