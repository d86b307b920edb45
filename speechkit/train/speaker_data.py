"""Speaker-embedding training data: random crops labelled by pseudo-speaker, with noise and reverb.

Every corpus speaker of the split is heard at ``len(shifts)`` vocal-tract scales; each (speaker,
shift) pair is its own class, so the model learns that a voice moved by 13-15 % is someone else
(corpus speakers themselves differ by warps of at most 8 %, see :mod:`speechkit.data.speakers`).
A shift is applied either by resampling (speed: pitch, formants and tempo together) or, with
probability ``vtlp_prob``, by the model's VTLP-warped filterbank (``warp`` index, same tempo);
both move the spectrum by the same factor, so they share the label. Noise and room reverberation
come from the ASR augmentation (its ``corrupt``), never a speed change, which would change the voice.

Example:
    >>> from speechkit.train.speaker_data import pseudo_speaker_label
    >>> pseudo_speaker_label(speaker=2, shift=1, num_shifts=3)
    7
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from speechkit.audio import resample
from speechkit.data.manifest import read_manifest
from speechkit.errors import DataError
from speechkit.train.asr_data import ASRAugmentation, _item_rng, _pad, _read_mono


def pseudo_speaker_label(speaker: int, shift: int, num_shifts: int) -> int:
    """Class index of corpus speaker ``speaker`` heard at shift ``shift``."""
    return speaker * num_shifts + shift


class SpeakerCropDataset(Dataset):
    """Items ``{"wav": [crop] float32, "label": int, "warp": int}`` from a corpus manifest.

    Args:
        manifest: ``data/speech/train.jsonl``.
        shifts: vocal-tract scales; index 0 must be 1.0 and the list must equal the model's
            ``vtlp_factors`` (the ``warp`` index refers to it).
        crop_seconds: training crop length (shorter utterances are kept whole).
        vtlp_prob: share of shifted items warped by the filterbank instead of resampled.
        augmentation: noise / reverberation (``corrupt`` only) or None.
    """

    def __init__(
        self,
        manifest: str | Path,
        shifts: tuple[float, ...] = (1.0, 0.87, 1.15),
        crop_seconds: float = 2.0,
        vtlp_prob: float = 0.5,
        augmentation: ASRAugmentation | None = None,
        sample_rate: int = 16000,
    ) -> None:
        if not shifts or shifts[0] != 1.0:
            raise DataError("shifts must start with 1.0")
        self.records = list(read_manifest(manifest))
        if not self.records:
            raise DataError(f"no utterances in {manifest}")
        self.speakers = sorted({r.speaker for r in self.records})
        self.speaker_index = {s: i for i, s in enumerate(self.speakers)}
        self.shifts, self.crop = tuple(shifts), int(crop_seconds * sample_rate)
        self.vtlp_prob, self.augmentation, self.sample_rate = vtlp_prob, augmentation, sample_rate

    @property
    def num_classes(self) -> int:
        return len(self.speakers) * len(self.shifts)

    def __len__(self) -> int:
        return len(self.records) * len(self.shifts)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        record, shift = self.records[index // len(self.shifts)], index % len(self.shifts)
        rng = _item_rng()
        wav = _read_mono(record.path, self.sample_rate)
        warp = 0
        if shift:
            if rng.random() < self.vtlp_prob:
                warp = shift
            else:  # played `factor` times faster: every frequency times `factor`
                factor = self.shifts[shift]
                wav = resample(wav, int(round(self.sample_rate * factor)), self.sample_rate)
        if len(wav) > self.crop:
            start = int(rng.integers(0, len(wav) - self.crop + 1))
            wav = wav[start : start + self.crop]
        if self.augmentation is not None:
            wav = self.augmentation.corrupt(wav, rng)
        label = pseudo_speaker_label(self.speaker_index[record.speaker], shift, len(self.shifts))
        return {
            "wav": torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)),
            "label": torch.tensor(label),
            "warp": torch.tensor(warp),
        }


def collate_speaker(items: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """-> ``wav`` [B, T], ``wav_lengths`` [B], ``labels`` [B], ``warp`` [B]."""
    wav, wav_lengths = _pad([i["wav"] for i in items])
    return {
        "wav": wav,
        "wav_lengths": wav_lengths,
        "labels": torch.stack([i["label"] for i in items]),
        "warp": torch.stack([i["warp"] for i in items]),
    }
