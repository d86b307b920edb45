"""Streaming diarization: speaker labels on a sliding window as audio arrives, stable across windows.

Every ``hop_seconds`` of new audio the last ``window_seconds`` are diarized on their own (speech
detection, multi-scale segments, NME-SC clustering), then the window's clusters are matched to the
speakers found so far by the cosine of their multi-scale centroids (Hungarian assignment; a
cluster below ``match_threshold`` with enough steps becomes a new speaker, a smaller one joins its
nearest speaker, and so does one whose best match passes the threshold but lost the one-to-one
assignment, since a window can split a voice in two). With an MSDD model the window's steps are
then decoded against those global centroids, so a speaker keeps its label for the whole stream and
overlap gets two labels. Steps
are emitted once their extent ends ``lookahead_seconds`` before the newest sample (so the longest
segment around them is complete) and are never revised; each emitted step updates its speaker's
centroid.

Latency: a step is labelled at most ``hop_seconds + lookahead_seconds`` after its end (2.0 s with
the defaults, plus the time to process a hop). Memory is flat: the audio buffer holds one window,
segment embeddings are cached for the segments still inside it, and only the emitted segments grow
(a few bytes per speaker turn).

Example:
    >>> StreamingDiarizer.latency_seconds(hop_seconds=1.0, lookahead_seconds=1.0)
    2.0
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from speechkit.audio import check_waveform, to_mono
from speechkit.speaker.diarize import (
    Diarization,
    decide_speakers,
    speaker_centroids,
    step_extents,
    steps_to_segments,
)
from speechkit.speaker.rttm import Segment
from speechkit.speaker.segmentation import multiscale_segments
from speechkit.speaker.vad import detect_speech

MIN_NEW_SPEAKER_STEPS = 6  # 1.5 s of base steps: fewer is not enough evidence for a new speaker


class _CachedEncoder:
    """Segment embeddings keyed by absolute (start, end) in ms, pruned as the window moves."""

    def __init__(self, encoder) -> None:
        self.encoder, self.cache = encoder, {}

    def embed(self, wav: np.ndarray, offset: float, segments: np.ndarray) -> np.ndarray:
        keys = [(round((a + offset) * 1000), round((b + offset) * 1000)) for a, b in segments]
        todo = [i for i, key in enumerate(keys) if key not in self.cache]
        if todo:
            for i, vector in zip(todo, self.encoder.embed_segments(wav, segments[todo]), strict=True):
                self.cache[keys[i]] = vector
        if not keys:
            return np.zeros((0, self.encoder.embedding_dim), dtype=np.float32)
        return np.stack([self.cache[key] for key in keys])

    def prune(self, before_ms: int) -> None:
        self.cache = {key: v for key, v in self.cache.items() if key[1] > before_ms}


class StreamingDiarizer:
    """Diarize a stream chunk by chunk with a :class:`~speechkit.speaker.diarize.Diarizer`.

    ``accept(chunk)`` returns the newly finalised segments (label, start, end; consecutive steps of
    a speaker may arrive as separate pieces); ``finish()`` flushes and returns the whole
    :class:`~speechkit.speaker.diarize.Diarization` with touching pieces merged.
    """

    def __init__(
        self,
        diarizer,
        window_seconds: float = 12.0,
        hop_seconds: float = 1.0,
        lookahead_seconds: float = 1.0,
        match_threshold: float | None = None,
        use_msdd: bool = True,
    ) -> None:
        if not 0 < hop_seconds <= window_seconds / 2 or lookahead_seconds < 0:
            raise ValueError("need 0 < hop_seconds <= window_seconds / 2 and lookahead_seconds >= 0")
        self.diarizer = diarizer
        self.rate = diarizer.sample_rate
        self.window, self.hop, self.lookahead = window_seconds, hop_seconds, lookahead_seconds
        threshold = getattr(diarizer.encoder, "cosine_threshold", 0.5)
        self.match_threshold = threshold if match_threshold is None else match_threshold
        self.use_msdd = use_msdd and diarizer.msdd is not None
        self.encoder = _CachedEncoder(diarizer.encoder)
        self.buffer = np.zeros(0, dtype=np.float32)
        self.buffer_start = 0.0  # stream time of buffer[0]
        self.received = 0  # samples so far
        self.pending = 0  # samples since the last hop
        self.emitted_until = 0.0
        self.sums: list[np.ndarray] = []  # per global speaker: [K, D] sum of emitted step embeddings
        self.steps: list[tuple[float, float, np.ndarray]] = []  # emitted (start, end, active [S_global])

    @staticmethod
    def latency_seconds(hop_seconds: float = 1.0, lookahead_seconds: float = 1.0) -> float:
        """Worst-case delay from the end of a step to its label (processing time not included)."""
        return hop_seconds + lookahead_seconds

    @property
    def num_speakers(self) -> int:
        return len(self.sums)

    def accept(self, chunk: np.ndarray) -> list[Segment]:
        """Add audio (mono float at the diarizer's rate); returns segments finalised by it."""
        chunk = to_mono(check_waveform(np.asarray(chunk), name="chunk")).astype(np.float32)
        self.buffer = np.concatenate([self.buffer, chunk])
        self.received += len(chunk)
        self.pending += len(chunk)
        out = []
        while self.pending >= self.hop * self.rate:
            self.pending -= int(self.hop * self.rate)
            out += self._process(final=False)
        return out

    def finish(self) -> Diarization:
        """Label everything left and return the whole stream's diarization."""
        self._process(final=True)
        return self.result()

    def result(self) -> Diarization:
        if not self.steps:
            return Diarization([], 0, "streaming")
        extents = np.array([[a, b] for a, b, _ in self.steps])
        active = np.zeros((len(self.steps), self.num_speakers), dtype=bool)
        for t, (_, _, speakers) in enumerate(self.steps):
            active[t, : len(speakers)] = speakers
        names = [f"speaker_{i}" for i in range(self.num_speakers)]
        return Diarization(
            steps_to_segments(extents, active, names), self.num_speakers, "streaming", extents, active
        )

    # one hop ----------------------------------------------------------------------------------
    def _process(self, final: bool) -> list[Segment]:
        now = self.received / self.rate
        keep = int(self.window * self.rate)
        if len(self.buffer) > keep:
            self.buffer_start += (len(self.buffer) - keep) / self.rate
            self.buffer = self.buffer[-keep:]
        if not len(self.buffer) or float(np.max(np.abs(self.buffer))) == 0.0:
            self.emitted_until = now
            return []
        regions = np.asarray(detect_speech(self.buffer, self.rate).segments, dtype=np.float64).reshape(-1, 2)
        segments = multiscale_segments(regions, self.diarizer.scales) if len(regions) else None
        if segments is None or segments.num_base_segments == 0:
            return []
        embeddings = [self.encoder.embed(self.buffer, self.buffer_start, s) for s in segments.segments]
        self.encoder.prune(int(self.buffer_start * 1000))
        extents = step_extents(segments.base_segments, regions) + self.buffer_start
        horizon = now if final else now - self.lookahead
        new = (extents[:, 0] >= self.emitted_until - 1e-6) & (extents[:, 1] <= horizon + 1e-6)
        if not new.any():
            return []
        labels = self.diarizer.cluster(segments, embeddings, "multiscale", None)
        to_global = self._match(embeddings, segments.mapping, labels, new)
        stacked = np.stack([embeddings[k][segments.mapping[k]] for k in range(len(embeddings))])  # [K, T, D]
        active = np.zeros((len(labels), self.num_speakers), dtype=bool)
        if self.use_msdd:  # decode against the voices this window holds, not every voice so far
            import torch

            present = np.unique(to_global)
            centroids = np.stack(
                [
                    self.sums[g] / np.maximum(np.linalg.norm(self.sums[g], axis=-1, keepdims=True), 1e-8)
                    for g in present
                ]
            )
            with torch.no_grad():
                probs, _ = self.diarizer.msdd(
                    torch.from_numpy(stacked.astype(np.float32))[None],
                    torch.from_numpy(centroids.astype(np.float32))[None],
                )
            active[:, present] = decide_speakers(probs[0].numpy(), self.diarizer.msdd.config.threshold)
        else:
            active[np.arange(len(labels)), to_global[labels]] = True
        out_steps = []
        for t in np.flatnonzero(new):
            self.steps.append((float(extents[t, 0]), float(extents[t, 1]), active[t].copy()))
            for s in np.flatnonzero(active[t]):
                self.sums[s] += stacked[:, t]
            out_steps.append(t)
        self.emitted_until = float(extents[out_steps[-1], 1])
        names = [f"speaker_{i}" for i in range(self.num_speakers)]
        return steps_to_segments(extents[out_steps], active[out_steps], names)

    def _match(self, embeddings, mapping, labels, new) -> np.ndarray:
        """Global speaker index of each local cluster; creates speakers for unmatched clusters."""
        num_local = int(labels.max()) + 1
        local = speaker_centroids(embeddings, mapping, labels, num_local)  # [L, K, D]
        to_global = np.full(num_local, -1, dtype=np.int64)
        similarity = None
        if self.sums:
            known = np.stack(
                [s / np.maximum(np.linalg.norm(s, axis=-1, keepdims=True), 1e-8) for s in self.sums]
            )
            similarity = np.einsum("lkd,gkd->lg", local, known) / local.shape[1]  # mean cosine over scales
            rows, cols = linear_sum_assignment(-similarity)
            for r, c in zip(rows, cols, strict=True):
                if similarity[r, c] >= self.match_threshold:
                    to_global[r] = c
        for cluster in np.flatnonzero(to_global < 0):
            steps = int(np.sum(labels == cluster))
            # a second local cluster of a known voice (the window split it) joins that voice
            close = similarity is not None and similarity[cluster].max() >= self.match_threshold
            if similarity is not None and (close or steps < MIN_NEW_SPEAKER_STEPS):
                to_global[cluster] = int(np.argmax(similarity[cluster]))
            else:
                to_global[cluster] = len(self.sums)
                self.sums.append(local[cluster].astype(np.float64).copy())
        return to_global
