"""MSDD training data: per-meeting multi-scale embeddings, speaker centroids and step labels.

Embedding every segment of every scale is the expensive part, so it is done once per split by
:func:`build_msdd_cache` with the shipped (frozen) speaker encoder and stored as safetensors:
for meeting ``i``, ``i/embeddings`` [K, T, D] (the segment of each scale mapped to every base step),
``i/centroids`` [S, K, D] (oracle: each reference speaker's average over the steps where they speak
alone) and ``i/labels`` [S, T] (1 when the speaker covers at least half of the step's extent).
Segments come from the same speech detection and segmentation as inference
(:class:`~speechkit.speaker.diarize.Diarizer`), so the decoder sees inference-time steps.

:class:`MSDDDataset` serves random crops of ``max_steps`` steps with the speakers in a random order
and the centroids jittered (clustering never finds the oracle averages).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from torch import Tensor
from torch.utils.data import Dataset
from tqdm import tqdm

from speechkit.audio import load_audio
from speechkit.data.meetings import read_meetings
from speechkit.errors import DataError
from speechkit.speaker.diarize import Diarizer, speaker_centroids, step_extents
from speechkit.speaker.rttm import Segment, read_rttm
from speechkit.speaker.vad import detect_speech

logger = logging.getLogger(__name__)


def step_labels(extents: np.ndarray, reference: list[Segment], speakers: list[str]) -> np.ndarray:
    """uint8 [S, T]: speaker ``s`` covers at least half of step ``t``'s extent.

    Example:
        >>> ref = [Segment(0.0, 1.0, "a"), Segment(0.8, 2.0, "b")]
        >>> step_labels(np.array([[0.0, 0.5], [0.5, 1.0], [1.0, 1.5]]), ref, ["a", "b"]).tolist()
        [[1, 1, 0], [0, 0, 1]]
    """
    labels = np.zeros((len(speakers), len(extents)), dtype=np.uint8)
    index = {name: i for i, name in enumerate(speakers)}
    lengths = np.maximum(extents[:, 1] - extents[:, 0], 1e-9)
    covered = np.zeros((len(speakers), len(extents)))
    for seg in reference:
        overlap = np.minimum(extents[:, 1], seg.end) - np.maximum(extents[:, 0], seg.start)
        covered[index[seg.speaker]] += np.maximum(overlap, 0.0)
    labels[covered / lengths >= 0.5] = 1
    return labels


def meeting_example(diarizer: Diarizer, wav: np.ndarray, reference: list[Segment], speakers: list[str]):
    """(embeddings [K, T, D], centroids [S, K, D], labels [S, T]) of one meeting, or None without speech."""
    regions = np.asarray(detect_speech(wav, diarizer.sample_rate).segments, dtype=np.float64).reshape(-1, 2)
    if not len(regions):
        return None
    segments, embeddings = diarizer.segment_and_embed(wav, regions)
    if segments.num_base_segments == 0:
        return None
    extents = step_extents(segments.base_segments, regions)
    labels = step_labels(extents, reference, speakers)
    alone = np.where(labels.sum(0) == 1, labels.argmax(0), -1)
    centroids = speaker_centroids(embeddings, segments.mapping, alone, len(speakers))
    stacked = np.stack([embeddings[k][segments.mapping[k]] for k in range(len(embeddings))])
    return stacked.astype(np.float16), centroids.astype(np.float16), labels


def build_msdd_cache(
    diarizer: Diarizer, meetings_dir: str | Path, split: str, out: str | Path, max_meetings: int | None = None
) -> Path:
    """Embed the meetings of ``split`` once and write the safetensors cache ``out``."""
    meetings_dir, out = Path(meetings_dir), Path(out)
    meetings = read_meetings(meetings_dir / f"{split}.jsonl")[:max_meetings]
    tensors: dict[str, np.ndarray] = {}
    count = 0
    for meeting in tqdm(meetings, desc=f"msdd cache {split}", unit="meeting"):
        wav, _ = load_audio(meetings_dir / meeting.path, diarizer.sample_rate)
        reference = next(iter(read_rttm(meetings_dir / meeting.rttm).values()), [])
        example = meeting_example(diarizer, wav, reference, list(meeting.speakers))
        if example is None:
            logger.warning("no speech detected in %s: skipped", meeting.path)
            continue
        for name, array in zip(("embeddings", "centroids", "labels"), example, strict=True):
            tensors[f"{count}/{name}"] = np.ascontiguousarray(array)
        count += 1
    if not count:
        raise DataError(f"no usable meetings in {meetings_dir / split}.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata={"meetings": str(count), "split": split})
    return out


class MSDDDataset(Dataset):
    """Crops of cached meetings: ``{"embeddings" [K, T, D], "centroids" [S, K, D], "labels" [S, T]}``."""

    def __init__(
        self, cache: str | Path, max_steps: int = 96, crops_per_meeting: int = 8, jitter: float = 0.05
    ) -> None:
        if not Path(cache).is_file():
            raise DataError(f"MSDD cache not found: {cache} (the msdd recipe builds it)")
        tensors = load_file(str(cache))
        count = len({key.split("/")[0] for key in tensors})
        self.meetings = [
            tuple(tensors[f"{i}/{name}"] for name in ("embeddings", "centroids", "labels"))
            for i in range(count)
        ]
        self.max_steps, self.crops, self.jitter = max_steps, crops_per_meeting, jitter

    def __len__(self) -> int:
        return len(self.meetings) * self.crops

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        embeddings, centroids, labels = self.meetings[index // self.crops]
        steps = embeddings.shape[1]
        start = int(torch.randint(0, max(steps - self.max_steps, 0) + 1, ()))
        stop = min(start + self.max_steps, steps)
        order = torch.randperm(centroids.shape[0])
        c = torch.from_numpy(centroids.astype(np.float32))[order]
        if self.jitter:
            c = torch.nn.functional.normalize(c + self.jitter * torch.randn_like(c), dim=-1)
        return {
            "embeddings": torch.from_numpy(embeddings[:, start:stop].astype(np.float32)),
            "centroids": c,
            "labels": torch.from_numpy(labels[:, start:stop].astype(np.int64))[order],
        }


def collate_msdd(items: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Pad steps and speakers: -> embeddings, centroids, labels, speaker_mask [B, S], step_mask [B, T]."""
    k, _, d = items[0]["embeddings"].shape
    t = max(i["embeddings"].shape[1] for i in items)
    s = max(i["centroids"].shape[0] for i in items)
    b = len(items)
    embeddings, centroids = torch.zeros(b, k, t, d), torch.zeros(b, s, k, d)
    labels = torch.zeros(b, s, t, dtype=torch.int64)
    speaker_mask, step_mask = torch.zeros(b, s, dtype=torch.bool), torch.zeros(b, t, dtype=torch.bool)
    for i, item in enumerate(items):
        n_t, n_s = item["embeddings"].shape[1], item["centroids"].shape[0]
        embeddings[i, :, :n_t] = item["embeddings"]
        centroids[i, :n_s] = item["centroids"]
        labels[i, :n_s, :n_t] = item["labels"]
        speaker_mask[i, :n_s], step_mask[i, :n_t] = True, True
    return {"embeddings": embeddings, "centroids": centroids, "labels": labels,
            "speaker_mask": speaker_mask, "step_mask": step_mask}  # fmt: skip
