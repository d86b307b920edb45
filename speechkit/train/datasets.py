"""Datasets over corpus manifests, for the trainer.

:class:`AudioCropDataset` holds a manifest's audio in memory as int16 (an hour of 16 kHz speech is
115 MB) and returns random fixed-length crops: the standard way codecs and vocoders are trained.
Crops are drawn from a generator seeded by (seed, index, draw count), so a run is reproducible.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from speechkit.audio import load_audio
from speechkit.data.manifest import read_manifest
from speechkit.errors import DataError

logger = logging.getLogger(__name__)


class AudioCropDataset(Dataset):
    """Random crops of ``segment_samples`` from the utterances of one or more manifests.

    Args:
        manifests: JSONL manifests (``speechkit data speech`` writes them).
        sample_rate: rate to load the audio at.
        segment_samples: crop length; shorter utterances are zero-padded at the end.
        seed: crop positions depend on (seed, index, draw count).
        max_utterances: read at most this many (the first ones of the manifests), for quick runs.
        gain_db_range: each crop is scaled by a gain drawn uniformly from this range (dB), limited so
            the crop never clips, so models meet quiet and loud input alike; (0, 0) disables it.
        progress: show a progress bar while loading.

    Returns (``__getitem__``):
        float32 tensor [segment_samples].
    """

    def __init__(
        self,
        manifests: Sequence[str | Path],
        sample_rate: int,
        segment_samples: int,
        seed: int = 0,
        max_utterances: int | None = None,
        gain_db_range: tuple[float, float] = (0.0, 0.0),
        progress: bool = True,
    ) -> None:
        records = [record for path in manifests for record in read_manifest(path)]
        if max_utterances is not None:
            records = records[:max_utterances]
        if not records:
            raise DataError(f"no utterances in {list(map(str, manifests))}")
        self.segment_samples, self.seed, self.gain_db_range = segment_samples, seed, gain_db_range
        self.audio: list[np.ndarray] = []
        for record in tqdm(records, desc="loading audio", disable=not progress, leave=False):
            wav, _ = load_audio(record.path, target_sample_rate=sample_rate)
            self.audio.append((np.clip(wav, -1, 1) * 32767).astype(np.int16))
        self.draws = np.zeros(len(self.audio), dtype=np.int64)
        logger.info("loaded %d utterances, %.2f h", len(self.audio), self.total_seconds(sample_rate) / 3600)

    def total_seconds(self, sample_rate: int) -> float:
        return sum(len(a) for a in self.audio) / sample_rate

    def __len__(self) -> int:
        return len(self.audio)

    def __getitem__(self, index: int) -> torch.Tensor:
        audio = self.audio[index]
        rng = np.random.default_rng((self.seed, index, int(self.draws[index])))
        self.draws[index] += 1
        segment = np.zeros(self.segment_samples, dtype=np.float32)
        if len(audio) <= self.segment_samples:
            segment[: len(audio)] = audio / 32768.0
        else:
            start = int(rng.integers(0, len(audio) - self.segment_samples + 1))
            segment[:] = audio[start : start + self.segment_samples] / 32768.0
        low, high = self.gain_db_range
        if high > low:
            peak = float(np.max(np.abs(segment)))
            gain = 10 ** (rng.uniform(low, high) / 20)
            if peak > 0:
                gain = min(gain, 0.99 / peak)
            segment *= gain
        return torch.from_numpy(segment)
