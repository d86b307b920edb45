"""Who spoke when: speech detection, multi-scale segments, clustering, and the MSDD decoder.

    diarizer = speechkit.speaker.Diarizer.load()                 # ecapa-tdnn + msdd checkpoints
    result = diarizer.diarize(wav, sample_rate)                  # Diarization: segments, speakers
    write_rttm("meeting.rttm", "meeting", result.segments)

Pipeline (offline):

1. speech activity detection (:mod:`speechkit.speaker.vad`);
2. uniform segments at every scale (1.5 / 1.0 / 0.5 s windows, 50 % shift) inside the speech, and
   the mapping of each base (0.5 s) step to the segment of each scale whose centre is nearest;
3. one ECAPA-TDNN embedding per segment per scale;
4. clustering with an estimated speaker count (NME-SC) of the base steps, on the 1.5 s scale's
   affinity alone (``method="single-scale"``) or the weighted fusion of all scales' (weights
   :data:`DEFAULT_SCALE_WEIGHTS`, ``"multiscale"``);
5. ``"msdd"`` (default): the speakers' per-scale average embeddings from step 4 and the per-step
   multi-scale embeddings go through :class:`~speechkit.speaker.msdd.MSDD`, which weighs the scales
   per step and gives each speaker an activity probability per step; a step holds every speaker
   above the threshold (at most two: the overlap the decoder was trained on), and always the most
   likely one, since speech detection said someone speaks.

Each base step stands for the time between the midpoints to its neighbours (clipped to its speech
region), so segments tile the detected speech exactly.

Bad input: NaN/Inf, empty and unreadable audio raise :class:`~speechkit.errors.AudioError`;
silence or audio with no detected speech gives an empty :class:`Diarization`; one short segment
gives one speaker; ``num_speakers`` larger than the segments allow raises a clear ValueError.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from speechkit.audio import check_sample_rate, check_waveform, resample, to_mono
from speechkit.speaker.clustering import (
    ClusteringConfig,
    cluster_affinity,
    cosine_affinity,
    multiscale_affinity,
)
from speechkit.speaker.rttm import Segment
from speechkit.speaker.segmentation import MultiScaleSegments, Scale, multiscale_segments
from speechkit.speaker.vad import detect_speech

logger = logging.getLogger(__name__)

METHODS = ("single-scale", "multiscale", "msdd")
#: Weights of the 1.5 / 1.0 / 0.5 s affinities in multi-scale clustering. Chosen on the valid meetings
#: (20, voices never trained on): equal weights 0.085 DER, these 0.071, single-scale 0.076; the
#: short scale's embeddings are the noisiest, so it weighs least (MSDD then uses every scale per step).
DEFAULT_SCALE_WEIGHTS = (0.5, 0.3, 0.2)
MAX_OVERLAP_SPEAKERS = 2


@dataclass(frozen=True)
class Diarization:
    """Result of a diarization: time-ordered segments (overlaps allowed) and the speaker count.

    ``step_times`` [T, 2] and ``step_speakers`` [T, S] (bool) are the base-step decisions the
    segments were made from; ``probabilities`` [S, T] is MSDD's output (None for clustering only).
    """

    segments: list[Segment]
    num_speakers: int
    method: str
    step_times: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    step_speakers: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=bool))
    probabilities: np.ndarray | None = None

    def speaker_seconds(self) -> dict[str, float]:
        """Speaking time per speaker label."""
        out: dict[str, float] = {}
        for segment in self.segments:
            out[segment.speaker] = out.get(segment.speaker, 0.0) + segment.duration
        return out


def step_extents(base: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """The time [T, 2] each base segment stands for: midpoints to its neighbours within its region.

    Example:
        >>> step_extents(np.array([[0.0, 0.5], [0.25, 0.75], [0.5, 1.0]]), np.array([[0.0, 1.0]])).tolist()
        [[0.0, 0.375], [0.375, 0.625], [0.625, 1.0]]
    """
    base = np.asarray(base, dtype=np.float64).reshape(-1, 2)
    regions = np.asarray(regions, dtype=np.float64).reshape(-1, 2)
    centres = base.mean(axis=1)
    region_of = np.clip(
        np.searchsorted(regions[:, 0], centres, side="right") - 1, 0, max(len(regions) - 1, 0)
    )
    out = np.zeros_like(base)
    for i in range(len(base)):
        r = region_of[i]
        same_prev = i > 0 and region_of[i - 1] == r
        same_next = i + 1 < len(base) and region_of[i + 1] == r
        out[i, 0] = (centres[i - 1] + centres[i]) / 2 if same_prev else regions[r, 0]
        out[i, 1] = (centres[i] + centres[i + 1]) / 2 if same_next else regions[r, 1]
    return out


def steps_to_segments(extents: np.ndarray, active: np.ndarray, names: Sequence[str]) -> list[Segment]:
    """Merge consecutive touching steps of each speaker into segments (time order).

    Args:
        extents: [T, 2] seconds; active: bool [T, S]; names: S speaker labels.
    """
    segments = []
    for s, name in enumerate(names):
        start = end = None
        for t in range(len(extents)):
            if active[t, s] and start is not None and abs(extents[t, 0] - end) < 1e-6:
                end = extents[t, 1]
                continue
            if start is not None:
                segments.append(Segment(start, end, name))
                start = None
            if active[t, s]:
                start, end = extents[t, 0], extents[t, 1]
        if start is not None:
            segments.append(Segment(start, end, name))
    return sorted(segments, key=lambda seg: (seg.start, seg.end, seg.speaker))


def speaker_centroids(
    embeddings: Sequence[np.ndarray], mapping: np.ndarray, labels: np.ndarray, num_speakers: int
) -> np.ndarray:
    """Unit-norm average embedding [S, K, D] of each speaker at each scale from base-step labels."""
    k_scales, dim = len(embeddings), embeddings[0].shape[1]
    out = np.zeros((num_speakers, k_scales, dim), dtype=np.float32)
    for s in range(num_speakers):
        for k in range(k_scales):
            rows = np.unique(mapping[k][labels == s])
            if len(rows):
                mean = embeddings[k][rows].mean(axis=0)
                out[s, k] = mean / max(np.linalg.norm(mean), 1e-8)
    return out


def _first_seen_order(labels: np.ndarray) -> np.ndarray:
    """Renumber labels 0, 1, ... in order of first appearance (dropping labels that never occur)."""
    _, first = np.unique(labels, return_index=True)
    rank = {int(label): i for i, label in enumerate(labels[np.sort(first)])}
    return np.array([rank[int(label)] for label in labels], dtype=np.int64)


def _label_names(count: int) -> list[str]:
    return [f"speaker_{i}" for i in range(count)]


class Diarizer:
    """Offline diarization with a :class:`~speechkit.speaker.api.SpeakerEncoder` and optional MSDD.

    Args:
        encoder: the speaker-embedding task API.
        msdd: an :class:`~speechkit.speaker.msdd.MSDD` model (eval mode) or None (clustering only).
        scales: segment scales, longest window first (MSDD's own when it is given).
        max_speakers: bound on the estimated speaker count.
    """

    def __init__(
        self,
        encoder,
        msdd=None,
        scales: Sequence[Scale] | None = None,
        max_speakers: int = 8,
        scale_weights: Sequence[float] | None = None,
    ) -> None:
        self.encoder, self.msdd = encoder, (msdd.eval() if msdd is not None else None)
        if scales is None and msdd is not None:
            scales = [Scale(w, s) for w, s in zip(msdd.config.windows, msdd.config.shifts, strict=True)]
        self.scales = (
            tuple(scales) if scales is not None else (Scale(1.5, 0.75), Scale(1.0, 0.5), Scale(0.5, 0.25))
        )
        self.max_speakers = max_speakers
        if scale_weights is None:
            same = len(self.scales) == len(DEFAULT_SCALE_WEIGHTS)
            scale_weights = DEFAULT_SCALE_WEIGHTS if same else (1.0,) * len(self.scales)
        self.scale_weights = tuple(scale_weights)
        self.sample_rate = encoder.sample_rate

    @classmethod
    def load(cls, speaker_model: str = "ecapa-tdnn", msdd_model: str | None = "msdd", **kwargs) -> Diarizer:
        """A diarizer from shipped (or local) checkpoints; ``msdd_model=None`` for clustering only."""
        from speechkit.registry import load

        encoder = load(speaker_model)
        msdd = None
        if msdd_model is not None:
            from speechkit.checkpoint import load_model, resolve_checkpoint

            msdd = load_model(resolve_checkpoint(msdd_model))
        return cls(encoder, msdd, **kwargs)

    # pieces shared with the MSDD recipe and the streaming diarizer --------------------------------
    def prepare(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        sample_rate = check_sample_rate(sample_rate)
        wav = to_mono(check_waveform(np.asarray(wav))).astype(np.float32)
        return wav if sample_rate == self.sample_rate else resample(wav, sample_rate, self.sample_rate)

    def segment_and_embed(
        self, wav: np.ndarray, regions: np.ndarray
    ) -> tuple[MultiScaleSegments, list[np.ndarray]]:
        """Multi-scale segments of the speech ``regions`` and their embeddings (one array per scale)."""
        segments = multiscale_segments(regions, self.scales)
        embeddings = [self.encoder.embed_segments(wav, seg) for seg in segments.segments]
        return segments, embeddings

    def cluster(
        self,
        segments: MultiScaleSegments,
        embeddings: list[np.ndarray],
        method: str,
        num_speakers: int | None,
    ) -> np.ndarray:
        """Base-step labels [T] from single-scale (the longest window) or fused multi-scale affinity."""
        if method == "single-scale":  # cluster the longest segments, then read labels at the base steps
            labels = cluster_affinity(cosine_affinity(embeddings[0]), num_speakers, self.max_speakers).labels
            return _first_seen_order(labels[segments.mapping[0]])
        affinity = multiscale_affinity(embeddings, segments.mapping, self.scale_weights)
        # consecutive base steps share their coarse segments, so each step's nearest neighbours are
        # its own ~window/shift temporal neighbours: NME-SC's p must reach past them, or it cuts
        # every speaker into runs of adjacent steps
        redundancy = int(np.ceil(2 * self.scales[0].window / self.scales[-1].shift))
        config = ClusteringConfig(min_p_neighbors=redundancy, min_search_neighbors=2 * redundancy)
        return cluster_affinity(affinity, num_speakers, self.max_speakers, config).labels

    @torch.no_grad()
    def decode(
        self, segments: MultiScaleSegments, embeddings: list[np.ndarray], labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """MSDD probabilities [S, T] and decisions bool [T, S] from clustering labels [T]."""
        num = int(labels.max()) + 1
        centroids = speaker_centroids(embeddings, segments.mapping, labels, num)
        stacked = np.stack([embeddings[k][segments.mapping[k]] for k in range(len(embeddings))])  # [K, T, D]
        probs, _ = self.msdd(torch.from_numpy(stacked)[None], torch.from_numpy(centroids)[None])
        probs = probs[0].numpy()
        return probs, decide_speakers(probs, self.msdd.config.threshold)

    def diarize(
        self, wav: np.ndarray, sample_rate: int, num_speakers: int | None = None, method: str | None = None
    ) -> Diarization:
        """Diarize one recording; ``method`` is one of :data:`METHODS` (default ``msdd`` when available)."""
        method = method or ("msdd" if self.msdd is not None else "multiscale")
        if method not in METHODS:
            raise ValueError(f"unknown diarization method {method!r}; choose one of {METHODS}")
        if method == "msdd" and self.msdd is None:
            raise ValueError("method 'msdd' needs an MSDD model; load one or use 'multiscale'")
        wav = self.prepare(wav, sample_rate)
        regions = np.asarray(detect_speech(wav, self.sample_rate).segments, dtype=np.float64).reshape(-1, 2)
        segments = multiscale_segments(regions, self.scales) if len(regions) else None
        if segments is None or segments.num_base_segments == 0:
            logger.info("no speech detected: empty diarization")
            return Diarization([], 0, method)
        segments, embeddings = self.segment_and_embed(wav, regions)
        labels = self.cluster(segments, embeddings, method, num_speakers)
        extents = step_extents(segments.base_segments, regions)
        num = int(labels.max()) + 1
        probs = None
        if method == "msdd":
            probs, active = self.decode(segments, embeddings, labels)
        else:
            active = np.zeros((len(labels), num), dtype=bool)
            active[np.arange(len(labels)), labels] = True
        keep = active.any(axis=0)
        active, names = active[:, keep], _label_names(int(keep.sum()))
        return Diarization(
            steps_to_segments(extents, active, names), len(names), method, extents, active,
            None if probs is None else probs[keep],
        )  # fmt: skip


def decide_speakers(probs: np.ndarray, threshold: float) -> np.ndarray:
    """Per-step decisions bool [T, S] from probabilities [S, T]: the most likely speaker always,
    the second one too when it passes ``threshold`` (at most :data:`MAX_OVERLAP_SPEAKERS`).

    Example:
        >>> decide_speakers(np.array([[0.9, 0.2, 0.7], [0.1, 0.3, 0.8]]), 0.5).astype(int).tolist()
        [[1, 0], [0, 1], [1, 1]]
    """
    probs = np.asarray(probs)
    order = np.argsort(-probs, axis=0)  # [S, T]
    active = np.zeros(probs.T.shape, dtype=bool)
    steps = np.arange(probs.shape[1])
    active[steps, order[0]] = True
    for rank in range(1, min(MAX_OVERLAP_SPEAKERS, probs.shape[0])):
        speaker = order[rank]
        active[steps, speaker] = probs[speaker, steps] >= threshold
    return active
