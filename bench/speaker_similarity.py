"""Speaker similarity measured by an encoder speechkit did not train: Resemblyzer's GE2E d-vectors.

Zero-shot TTS is judged on how much its output sounds like the voice prompt; the speaker benchmark
needs a peer embedding. Both use Resemblyzer (Wan et al. 2018, GE2E loss: a 3-layer LSTM over 40-band
mel frames, 256-d L2-normalised embedding, trained on LibriSpeech + VoxCeleb 1/2), whose PyPI wheel
ships its weights (``pretrained.pt``, 17 MB) and runs offline. Its own preprocessing runs first:
volume normalised to -30 dBFS (raised only) and silences longer than ~0.2 s cut by WebRTC VAD, so
leading silence or pauses do not change the score.

Scores are cosines of the embeddings. Resemblyzer's embeddings are non-negative (ReLU before the
norm), so the cosine lies in [0, 1]. Measured on test_ood (one utterance each): two utterances of
the same festival voice 0.87-0.90, the two male diphone voices (kal, ked) 0.66-0.76, female (slt)
vs male 0.41-0.56; eSpeak NG en-us and Flite slt speaking a recording's sentence score 0.57 and
0.62 against it (mean of 10, ``python -m bench.peer_smoke``): the "no cloning" floor.

:class:`SegmentEmbedder` embeds many short segments of one recording (the diarization peer).

Resemblyzer and its dependencies (librosa, webrtcvad-wheels) are installed by ``scripts/setup.sh``
and imported when a :class:`SpeakerSimilarity` is built, never at import of this module.

Example:
    >>> round(cosine_similarity(np.array([1.0, 0.0]), np.array([1.0, 1.0])), 4)
    0.7071
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import torch

from speechkit.audio import resample

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
#: Below this many samples after VAD trimming (0.25 s), the untrimmed audio is embedded instead.
MIN_VOICED_SAMPLES = 4000


def cosine_similarity(first: np.ndarray, second: np.ndarray) -> float:
    """Cosine of two [D] vectors (0 when either is all zeros)."""
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    norm = float(np.linalg.norm(first) * np.linalg.norm(second))
    return float(first @ second / norm) if norm > 0 else 0.0


class SpeakerSimilarity:
    """Resemblyzer embeddings of waveforms and their cosine.

    Args:
        device: torch device of the encoder ("cpu"; the model is 1.4M parameters).

    Raises:
        RuntimeError: resemblyzer is not installed (the message says how to install it).
    """

    name = "Resemblyzer GE2E"

    def __init__(self, device: str = "cpu") -> None:
        try:
            with warnings.catch_warnings():  # resemblyzer imports scipy.ndimage.morphology (deprecated)
                warnings.simplefilter("ignore", DeprecationWarning)
                from resemblyzer import VoiceEncoder, preprocess_wav
        except ImportError as error:
            raise RuntimeError(
                "speaker similarity needs resemblyzer (pip install --no-deps resemblyzer, plus librosa "
                f"and webrtcvad-wheels): run `bash scripts/setup.sh` ({error})"
            ) from error
        start = time.perf_counter()
        self._preprocess = preprocess_wav
        self.encoder = VoiceEncoder(device=device, verbose=False)
        self.encoder.eval()
        self.load_seconds = time.perf_counter() - start

    def embed(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        """The speaker embedding of one utterance.

        Args:
            wav: [T] mono float audio.
            sample_rate: its rate in Hz (resampled to 16 kHz with soxr when it differs).

        Returns:
            float32 [256], L2-normalised, non-negative.
        """
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1 or len(wav) == 0:
            raise ValueError(f"expected non-empty mono [T] audio, got shape {wav.shape}")
        if sample_rate != SAMPLE_RATE:
            wav = resample(wav, sample_rate, SAMPLE_RATE)
        trimmed = self._preprocess(wav)
        if len(trimmed) < MIN_VOICED_SAMPLES:
            logger.warning("VAD kept %d samples of %d: embedding the untrimmed audio", len(trimmed), len(wav))
            trimmed = wav
        return np.asarray(self.encoder.embed_utterance(trimmed), dtype=np.float32)

    def similarity(self, first: np.ndarray, second: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
        """Cosine of the embeddings of two utterances at the same rate (e.g. TTS output vs its prompt).

        Args:
            first: [T1] mono float audio.
            second: [T2] mono float audio.
            sample_rate: rate of both in Hz.

        Returns:
            The cosine, in [0, 1] for Resemblyzer's non-negative embeddings.
        """
        return cosine_similarity(self.embed(first, sample_rate), self.embed(second, sample_rate))


class SegmentEmbedder:
    """Resemblyzer embeddings of segments of one recording: the encoder side of a peer diarizer.

    It has what :class:`speechkit.speaker.diarize.Diarizer` asks of an encoder (``sample_rate``,
    ``embedding_dim``, ``embed_segments``), so speechkit's clustering can run on GE2E d-vectors.

    Resemblyzer's mel spectrogram of the whole recording (40 bands, 25 ms window, 10 ms hop, after
    its -30 dBFS volume normalisation, raised only) is computed once; each segment's frames run
    through the LSTM at their own length (GE2E embeds the last hidden state), batched by length.
    Resemblyzer's 1.6 s partial windows are not used: the diarizer's segments are 0.5-1.5 s long.

    Args:
        similarity: a loaded :class:`SpeakerSimilarity` (its encoder is shared).
    """

    sample_rate = SAMPLE_RATE
    embedding_dim = 256

    def __init__(self, similarity: SpeakerSimilarity) -> None:
        self.encoder = similarity.encoder
        self._wav: np.ndarray | None = None
        self._mel = np.zeros((0, 40), dtype=np.float32)

    def _frames(self, wav: np.ndarray) -> np.ndarray:
        if wav is not self._wav:  # one diarize() call embeds every scale of the same array
            with warnings.catch_warnings():  # resemblyzer imports scipy.ndimage.morphology (deprecated)
                warnings.simplefilter("ignore", DeprecationWarning)
                from resemblyzer.audio import normalize_volume, wav_to_mel_spectrogram

            self._wav, self._mel = wav, wav_to_mel_spectrogram(normalize_volume(wav, -30, increase_only=True))
        return self._mel  # [frames, 40], frame i centred on sample 160 * i

    @torch.no_grad()
    def embed_segments(self, wav: np.ndarray, segments: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Embeddings [S, 256] of ``segments`` [S, 2] (start, end seconds) of 16 kHz ``wav``."""
        mel = self._frames(wav)
        bounds = np.round(np.asarray(segments, dtype=np.float64).reshape(-1, 2) * 100).astype(np.int64)
        bounds = np.clip(bounds, 0, len(mel) - 1)
        bounds[:, 1] = np.maximum(bounds[:, 1], bounds[:, 0] + 1)
        out = np.zeros((len(bounds), self.embedding_dim), dtype=np.float32)
        lengths = bounds[:, 1] - bounds[:, 0]
        for length in np.unique(lengths):
            rows = np.flatnonzero(lengths == length)
            for begin in range(0, len(rows), batch_size):
                chunk = rows[begin : begin + batch_size]
                batch = np.stack([mel[bounds[r, 0] : bounds[r, 0] + length] for r in chunk])
                out[chunk] = self.encoder(torch.from_numpy(batch)).numpy()
        return out
