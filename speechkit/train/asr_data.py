"""ASR training data: paired (audio, characters) and unpaired (audio, pseudo-codes) datasets, on-the-fly
augmentation (speed perturbation, noise, reverberation) and global feature statistics.

Audio is read per item from the corpus manifests (``data/speech/<split>.jsonl``); pseudo-codes come
from the token corpus (``data/tts``: codec-rvq tokens of the same utterances, first RVQ layer).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import Tensor
from torch.utils.data import Dataset

from speechkit.asr.text import CharVocabulary, normalize_text
from speechkit.audio import resample
from speechkit.data.augment import add_noise, apply_rir
from speechkit.data.manifest import read_manifest
from speechkit.errors import DataError
from speechkit.train.token_corpus import read_token_split

logger = logging.getLogger(__name__)


def _read_mono(path: str | Path, sample_rate: int) -> np.ndarray:
    wav, rate = sf.read(str(path), dtype="float32", always_2d=True)
    wav = wav.mean(axis=1)
    return wav if rate == sample_rate else resample(wav, rate, sample_rate)


@dataclass
class ASRAugmentation:
    """Random speed perturbation (Ko et al. 2015: resampling, so tempo and pitch change together),
    additive noise at a random SNR and room reverberation, each with its own probability."""

    sample_rate: int = 16000
    speed_factors: tuple[float, ...] = (0.9, 1.0, 1.1)
    noises: tuple[np.ndarray, ...] = ()
    rirs: tuple[np.ndarray, ...] = ()
    noise_prob: float = 0.3
    snr_db: tuple[float, float] = (5.0, 25.0)
    rir_prob: float = 0.2

    @classmethod
    def from_noise_corpus(
        cls, folder: str | Path, sample_rate: int = 16000, split: str = "train"
    ) -> ASRAugmentation:
        """Noise clips and RIRs of ``speechkit data noise`` (an absent folder gives speed perturbation only)."""
        folder = Path(folder)
        noises, rirs = [], []
        if (folder / "noise.jsonl").exists():
            noises = [
                _read_mono(c.path, sample_rate)
                for c in read_manifest(folder / "noise.jsonl")
                if c.split == split
            ]
        if (folder / "rir.jsonl").exists():
            rirs = [
                _read_mono(c.path, sample_rate)
                for c in read_manifest(folder / "rir.jsonl")
                if c.split == split
            ]
        if not noises:
            logger.warning("no noise corpus in %s: training without noise/RIR augmentation", folder)
        return cls(sample_rate, noises=tuple(noises), rirs=tuple(rirs))

    def __call__(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        factor = float(rng.choice(self.speed_factors))
        if factor != 1.0:  # played `factor` times faster
            wav = resample(wav, int(round(self.sample_rate * factor)), self.sample_rate)
        return self.corrupt(wav, rng)

    def corrupt(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Reverberation and noise only (no speed change: for targets tied to time or to the voice)."""
        if float(np.max(np.abs(wav))) == 0.0:
            return wav
        if self.rirs and rng.random() < self.rir_prob:
            wav = apply_rir(wav, self.rirs[int(rng.integers(len(self.rirs)))])
        if self.noises and rng.random() < self.noise_prob:
            noise = self.noises[int(rng.integers(len(self.noises)))]
            wav = add_noise(wav, noise, float(rng.uniform(*self.snr_db)), rng)
        peak = float(np.max(np.abs(wav)))
        return wav / peak * 0.95 if peak > 1.0 else wav


def _item_rng() -> np.random.Generator:
    # seeded from torch's generator, which the trainer seeds and checkpoints
    return np.random.default_rng(int(torch.randint(0, 2**31 - 1, ())))


class ASRDataset(Dataset):
    """Paired utterances of ``manifest``: items ``{"wav": [T] float32, "tokens": [L] int64}``.

    Args:
        manifest: a corpus manifest (``data/speech/train.jsonl``).
        max_seconds: skip longer utterances; max_utterances: keep a fixed random subset (the
            low-resource experiment: same ``seed``, same subset); augmentation: applied per item.
    """

    def __init__(
        self,
        manifest: str | Path,
        max_seconds: float | None = None,
        max_utterances: int | None = None,
        seed: int = 0,
        augmentation: ASRAugmentation | None = None,
        sample_rate: int = 16000,
    ) -> None:
        records = [r for r in read_manifest(manifest) if max_seconds is None or r.duration <= max_seconds]
        if max_utterances is not None:
            order = np.random.default_rng(seed).permutation(len(records))[:max_utterances]
            records = [records[i] for i in sorted(order)]
        if not records:
            raise DataError(f"no utterances left in {manifest} (max_seconds={max_seconds})")
        self.records, self.augmentation, self.sample_rate = records, augmentation, sample_rate
        self.vocabulary = CharVocabulary()
        self.texts = [normalize_text(r.text) for r in records]

    def __len__(self) -> int:
        return len(self.records)

    def total_hours(self) -> float:
        return sum(r.duration for r in self.records) / 3600

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        wav = _read_mono(self.records[index].path, self.sample_rate)
        if self.augmentation is not None:
            wav = self.augmentation(wav, _item_rng())
        tokens = self.vocabulary.text_to_ids(self.texts[index])
        return {
            "wav": torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)),
            "tokens": torch.tensor(tokens),
        }


def _pad(tensors: list[Tensor]) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([len(t) for t in tensors])
    out = torch.zeros(len(tensors), max(1, int(lengths.max())), dtype=tensors[0].dtype)
    for i, t in enumerate(tensors):
        out[i, : len(t)] = t
    return out, lengths


def collate_asr(items: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """-> ``wav`` [B, T], ``wav_lengths`` [B], ``tokens`` [B, L] (0-padded), ``token_lengths`` [B]."""
    wav, wav_lengths = _pad([i["wav"] for i in items])
    tokens, token_lengths = _pad([i["tokens"] for i in items])
    return {"wav": wav, "wav_lengths": wav_lengths, "tokens": tokens, "token_lengths": token_lengths}


class Speech2CDataset(Dataset):
    """Unpaired speech with pseudo-codes: ``{"wav": [T], "codes": [N] int64}`` (codes of RVQ ``layer``).

    Transcripts in the token corpus are never read. Speed perturbation would shift the codes, so
    only additive noise and reverberation are applied (``augmentation.speed_factors`` is ignored).
    """

    def __init__(
        self,
        tokens_dir: str | Path,
        data_dir: str | Path,
        split: str,
        max_seconds: float | None = None,
        layer: int = 0,
        augmentation: ASRAugmentation | None = None,
        sample_rate: int = 16000,
    ) -> None:
        self.split_tokens = read_token_split(tokens_dir, split)
        self.data_dir, self.layer, self.sample_rate = Path(data_dir), layer, sample_rate
        self.augmentation = augmentation
        self.indices = [
            i
            for i, r in enumerate(self.split_tokens.records)
            if max_seconds is None or r["num_samples"] / sample_rate <= max_seconds
        ]
        if not self.indices:
            raise DataError(f"no utterances in the {split} token split of {tokens_dir}")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        u = self.indices[index]
        wav = _read_mono(self.data_dir / self.split_tokens.records[u]["path"], self.sample_rate)
        if self.augmentation is not None:
            wav = self.augmentation.corrupt(wav, _item_rng())
        codes = torch.from_numpy(self.split_tokens.codes(u)[self.layer])
        return {"wav": torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)), "codes": codes}


def collate_speech2c(items: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """-> ``wav`` [B, T], ``wav_lengths`` [B], ``codes`` [B, N] (0-padded), ``code_lengths`` [B]."""
    wav, wav_lengths = _pad([i["wav"] for i in items])
    codes, code_lengths = _pad([i["codes"] for i in items])
    return {"wav": wav, "wav_lengths": wav_lengths, "codes": codes, "code_lengths": code_lengths}


@torch.no_grad()
def feature_statistics(frontend, dataset: Dataset, count: int = 200, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Mean and std [n_mels] of the front-end's log-mel over up to ``count`` random items (no augmentation)."""
    order = np.random.default_rng(seed).permutation(len(dataset))[:count]
    total, total_sq, frames = 0.0, 0.0, 0
    for i in order:
        wav = dataset[int(i)]["wav"]
        mel = frontend.mel(wav[None])[0]  # [n_mels, N], before normalisation
        total = total + mel.double().sum(1)
        total_sq = total_sq + mel.double().pow(2).sum(1)
        frames += mel.shape[1]
    mean = total / frames
    std = (total_sq / frames - mean.pow(2)).clamp_min(1e-8).sqrt()
    return mean.float(), std.float()
