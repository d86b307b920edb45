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
