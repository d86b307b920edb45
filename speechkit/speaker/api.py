"""The speaker task API: embeddings, verification, enrolment and identification.

    encoder = speechkit.load("ecapa-tdnn")
    vector = encoder.embed(wav, sample_rate)                     # unit-norm float32 [192]
    result = encoder.verify(wav_a, wav_b, sample_rate)           # score, threshold, same_speaker
    encoder.enroll("alice", [wav1, wav2], sample_rate)
    match = encoder.identify(wav, sample_rate)                   # best enrolled name or None

Scores are cosine similarities of L2-normalised embeddings; when the checkpoint says so
(``asnorm_top_k > 0``, chosen at export because it lowered the valid EER) they are AS-norm
normalised against the model's own class prototypes. The decision threshold was calibrated on
held-out speakers at the equal-error point (``config.threshold``); pass ``threshold=`` to trade
false accepts for misses.

Bad input: NaN/Inf, empty, silent and unreadable audio raise :class:`~speechkit.errors.AudioError`;
audio with less than ``MIN_SPEECH_SECONDS`` of speech (after trimming silence) raises too, since
an embedding of a few frames says little about the voice; stereo is mixed down and other rates
resampled (logged).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from speechkit.audio import prepare_input
from speechkit.data.speech import trim_silence
from speechkit.errors import AudioError, DataError
from speechkit.speaker.scoring import as_norm
from speechkit.speaker.vad import detect_speech

logger = logging.getLogger(__name__)

MIN_SPEECH_SECONDS = 0.3
MAX_EMBED_SECONDS = 30.0  # longer inputs are embedded as the mean of 30 s pieces (bounded memory)


@dataclass(frozen=True)
class Verification:
    """Result of :meth:`SpeakerEncoder.verify`."""

    score: float
    threshold: float
    same_speaker: bool


@dataclass(frozen=True)
class Identification:
    """Result of :meth:`SpeakerEncoder.identify`: ``name`` is None when no enrolled speaker passes."""

    name: str | None
    score: float
    scores: dict[str, float] = field(default_factory=dict)


class SpeakerEncoder:
    """Numpy-in / numpy-out wrapper of :class:`~speechkit.speaker.ecapa.ECAPATDNN` (eval mode)."""

    def __init__(self, model) -> None:
        self.model = model.eval()
        self.config = model.config
        self.sample_rate = self.config.sample_rate
        self.embedding_dim = self.config.embedding_dim
        self.threshold = float(self.config.threshold)  # for score(): AS-norm units when AS-norm is on
        self.cosine_threshold = float(self.config.cosine_threshold)  # for plain cosines
        self._cohort = model.cohort().numpy()
        self.enrolled: dict[str, np.ndarray] = {}

    # embeddings -------------------------------------------------------------------------------
    def _speech_only(self, wav: np.ndarray) -> np.ndarray:
        regions = detect_speech(wav, self.sample_rate).segments
        pieces = [wav[int(a * self.sample_rate) : int(b * self.sample_rate)] for a, b in regions]
        speech = np.concatenate(pieces) if pieces else wav[:0]
        if len(speech) < MIN_SPEECH_SECONDS * self.sample_rate:
            # the detector's floor adapts to the quietest part: a clip that is speech from end to end
            # (no pause to learn the floor from) keeps all but its quiet ends
            speech = trim_silence(wav, self.sample_rate, margin_s=0.0)
        if len(speech) < MIN_SPEECH_SECONDS * self.sample_rate:
            raise AudioError(
                f"only {len(speech) / self.sample_rate:.2f} s of speech found; a speaker embedding needs "
                f"at least {MIN_SPEECH_SECONDS} s"
            )
        return speech

    @torch.no_grad()
    def embed(self, wav: np.ndarray, sample_rate: int, trim_silence: bool = True) -> np.ndarray:
        """Unit-norm embedding float32 [D] of one recording (silence trimmed first by default)."""
        wav = prepare_input(np.asarray(wav), sample_rate, self.sample_rate)
        if trim_silence:
            wav = self._speech_only(wav)
        elif len(wav) < MIN_SPEECH_SECONDS * self.sample_rate:
            raise AudioError(f"audio of {len(wav) / self.sample_rate:.2f} s is under {MIN_SPEECH_SECONDS} s")
        piece = int(MAX_EMBED_SECONDS * self.sample_rate)
        pieces = [wav[i : i + piece] for i in range(0, len(wav), piece)]
        pieces = [p for p in pieces if len(p) >= MIN_SPEECH_SECONDS * self.sample_rate] or pieces[:1]
        vectors = [
            self.model.embed(torch.from_numpy(np.ascontiguousarray(p, np.float32))[None])[0] for p in pieces
        ]
        weights = torch.tensor([len(p) for p in pieces], dtype=torch.float32)
        mean = (torch.stack(vectors) * weights[:, None]).sum(0)
        return (mean / mean.norm().clamp(min=1e-8)).numpy().astype(np.float32)

    @torch.no_grad()
    def embed_segments(self, wav: np.ndarray, segments: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Embeddings [S, D] of ``segments`` [S, 2] (start, end seconds) of one 16 kHz mono recording.

        Segments are cut, zero-padded to the longest of each batch and embedded with their lengths,
        so batching does not change the result beyond the edge frames.
        """
        segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
        out = np.zeros((len(segments), self.embedding_dim), dtype=np.float32)
        bounds = np.clip(np.round(segments * self.sample_rate).astype(np.int64), 0, len(wav))
        for begin in range(0, len(segments), batch_size):
            chunk = bounds[begin : begin + batch_size]
            lengths = np.maximum(chunk[:, 1] - chunk[:, 0], self.config.hop_length)
            batch = np.zeros((len(chunk), int(lengths.max())), dtype=np.float32)
            for row, (start, end) in enumerate(chunk):
                batch[row, : end - start] = wav[start:end]
            vectors = self.model.embed(torch.from_numpy(batch), torch.from_numpy(lengths))
            out[begin : begin + len(chunk)] = vectors.numpy()
        return out

    # scoring ----------------------------------------------------------------------------------
    def score(self, a: np.ndarray, b: np.ndarray) -> float:
        """Similarity of two embeddings (cosine, AS-normalised when the checkpoint says so)."""
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        if a.shape != (self.embedding_dim,) or b.shape != (self.embedding_dim,):
            raise DataError(
                f"embeddings must have shape ({self.embedding_dim},), got {a.shape} and {b.shape}"
            )
        raw = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-8))
        if self.config.asnorm_top_k <= 0:
            return raw
        k = min(self.config.asnorm_top_k, len(self._cohort))
        normed = as_norm(np.array([raw]), (self._cohort @ a)[None], (self._cohort @ b)[None], top_k=k)
        return float(normed[0])

    def verify(
        self, wav_a: np.ndarray, wav_b: np.ndarray, sample_rate: int, threshold: float | None = None
    ) -> Verification:
        """Are the two recordings the same speaker? Score against the calibrated threshold."""
        score = self.score(self.embed(wav_a, sample_rate), self.embed(wav_b, sample_rate))
        threshold = self.threshold if threshold is None else float(threshold)
        return Verification(score, threshold, score >= threshold)

    # enrolment --------------------------------------------------------------------------------
    def enroll(self, name: str, wavs: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
        """Enrol ``name`` from one or more recordings (their mean embedding); re-enrolling replaces it."""
        if not name or not isinstance(name, str):
            raise DataError("an enrolled speaker needs a non-empty name")
        if isinstance(wavs, np.ndarray) and wavs.ndim == 1:
            wavs = [wavs]
        if len(wavs) == 0:
            raise AudioError(f"no recordings given to enrol {name!r}")
        mean = np.mean([self.embed(w, sample_rate) for w in wavs], axis=0)
        self.enrolled[name] = (mean / max(np.linalg.norm(mean), 1e-8)).astype(np.float32)
        return self.enrolled[name]

    def identify(self, wav: np.ndarray, sample_rate: int, threshold: float | None = None) -> Identification:
        """The enrolled speaker closest to ``wav``, or ``name=None`` when none scores above the threshold."""
        if not self.enrolled:
            raise DataError("no speakers enrolled; call enroll(name, wavs, sample_rate) first")
        vector = self.embed(wav, sample_rate)
        scores = {name: self.score(vector, ref) for name, ref in self.enrolled.items()}
        best = max(scores, key=scores.get)
        threshold = self.threshold if threshold is None else float(threshold)
        return Identification(best if scores[best] >= threshold else None, scores[best], scores)

    def save_enrollments(self, path: str | Path) -> Path:
        """Write the enrolled embeddings as JSON (names and float lists; no pickle)."""
        path = Path(path)
        data = {
            "embedding_dim": self.embedding_dim,
            "speakers": {k: v.tolist() for k, v in self.enrolled.items()},
        }
        path.write_text(json.dumps(data), encoding="utf-8")
        return path

    def load_enrollments(self, path: str | Path) -> None:
        """Read enrolments written by :meth:`save_enrollments` (checked: dimension, finite values)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            speakers = {str(k): np.asarray(v, dtype=np.float32) for k, v in data["speakers"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise DataError(f"cannot read enrolments from {path}: {error}") from error
        for name, vector in speakers.items():
            if vector.shape != (self.embedding_dim,) or not np.all(np.isfinite(vector)):
                raise DataError(f"enrolment {name!r} in {path} is not a finite {self.embedding_dim}-d vector")
        self.enrolled.update(speakers)
