"""The TTS task API: text in, float32 audio out, in the default voice or a prompt's (zero-shot).

    tts = speechkit.load("mobilespeech")
    audio = tts.synthesize("Hello, world.")                       # default voice
    audio = tts.synthesize("Hello.", prompt=ref_wav, prompt_sample_rate=16000)   # clone a voice
    for chunk in tts.stream(long_text):                           # one sentence at a time
        play(chunk)

Long text is split into sentences (the text frontend's splitter); each is synthesised on its own and
joined with a short pause. The codec named in the model's config decodes the tokens; a codec whose
weights differ from the ones the model was trained on is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch
from tqdm import tqdm

from speechkit.audio import prepare_input
from speechkit.errors import AudioError, CheckpointError

logger = logging.getLogger(__name__)

MIN_PROMPT_SECONDS = 1.0
MAX_PROMPT_SECONDS = 6.0
SENTENCE_PAUSE_SECONDS = 0.25
_SILENCE_DBFS = -50.0


class TextToSpeech:
    """Synthesise speech with a token TTS model (:class:`~speechkit.tts.mobilespeech.MobileSpeech` or
    :class:`~speechkit.tts.ar_tts.ForwardBackwardTTS`).

    The model provides ``voice_from_tokens(prompt tokens)``, ``default_voice()`` and
    ``synthesize_tokens(phonemes [1, N], voice, speed, generator, **options) -> (codes [1, K, T], extras)``.

    Args:
        model: the TTS model (eval mode); its config names the codec.
        codec: the codec task API (default: loaded by the config's name).
        frontend: the text frontend (default: :class:`speechkit.text.TextFrontend`).
    """

    def __init__(self, model, codec=None, frontend=None) -> None:
        from speechkit.registry import load
        from speechkit.text import TextFrontend

        self.model = model.eval()
        self.config = model.config
        self.codec = codec if codec is not None else load(self.config.codec)
        if self.config.codec_fingerprint and self.codec.fingerprint != self.config.codec_fingerprint:
            raise CheckpointError(
                f"this TTS model predicts tokens of {self.config.codec} weights {self.config.codec_fingerprint}, "
                f"but the loaded codec has weights {self.codec.fingerprint}"
            )
        self.frontend = frontend if frontend is not None else TextFrontend()
        self.sample_rate = self.codec.sample_rate
        self.name = getattr(model, "name", self.config.KIND)

    # --- prompts ----------------------------------------------------------------------------------

    def voice(self, prompt: np.ndarray, prompt_sample_rate: int) -> torch.Tensor:
        """Reference audio -> the voice the model conditions on (leading/trailing silence trimmed).

        Raises AudioError for empty, silent, non-finite or too short prompts."""
        wav = prepare_input(prompt, prompt_sample_rate, self.sample_rate, name="prompt")
        wav = _trim_silence(wav, self.sample_rate)
        if len(wav) < MIN_PROMPT_SECONDS * self.sample_rate:
            raise AudioError(
                f"prompt has {len(wav) / self.sample_rate:.2f} s of speech; at least {MIN_PROMPT_SECONDS:g} s is needed"
            )
        limit = int(MAX_PROMPT_SECONDS * self.sample_rate)
        return self.model.voice_from_tokens(self.codec.encode(wav[:limit], self.sample_rate))

    # --- synthesis --------------------------------------------------------------------------------

    def synthesize(
        self,
        text: str,
        prompt: np.ndarray | None = None,
        prompt_sample_rate: int | None = None,
        speed: float = 1.0,
        seed: int = 0,
        steps: tuple[int, ...] | None = None,
        num_codebooks: int | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """Text -> float32 audio [T] at :attr:`sample_rate` (all sentences joined with short pauses).

        Raises TextError for text with nothing to say, AudioError for a bad prompt.
        """
        chunks = list(self.stream(text, prompt, prompt_sample_rate, speed, seed, steps, num_codebooks, progress))
        return np.concatenate(chunks).astype(np.float32)

    def stream(
        self,
        text: str,
        prompt: np.ndarray | None = None,
        prompt_sample_rate: int | None = None,
        speed: float = 1.0,
        seed: int = 0,
        steps: tuple[int, ...] | None = None,
        num_codebooks: int | None = None,
        progress: bool = False,
    ) -> Iterator[np.ndarray]:
        """Yield one float32 chunk per sentence (a sentence's audio followed by a short pause)."""
        if speed <= 0 or not np.isfinite(speed):
            raise ValueError(f"speed must be a positive number, got {speed}")
        sentences = self.frontend.sentences(text)  # raises TextError when nothing is pronounceable
        phonemized = [self.frontend.phonemize(s) for s in sentences]
        if prompt is None:
            voice = self.model.default_voice()
        else:
            if prompt_sample_rate is None:
                raise AudioError("pass prompt_sample_rate with a prompt")
            voice = self.voice(prompt, prompt_sample_rate)
        pause = np.zeros(int(SENTENCE_PAUSE_SECONDS * self.sample_rate), dtype=np.float32)
        generator = torch.Generator().manual_seed(seed)
        for sequence in tqdm(phonemized, desc="synthesize", unit="sentence", disable=not progress):
            phonemes = torch.tensor([sequence.ids], dtype=torch.long)
            options = {"steps": steps, "num_codebooks": num_codebooks} if steps or num_codebooks else {}
            codes, extras = self.model.synthesize_tokens(phonemes, voice, speed, generator, **options)
            yield np.concatenate([self._decode(codes, extras), pause])

    def _decode(self, codes: torch.Tensor, extras: dict) -> np.ndarray:
        from speechkit.tokenizers import Tokens

        if codes.shape[2] == 0:
            return np.zeros(0, dtype=np.float32)
        k = codes.shape[1]
        tokens = Tokens(
            codes.numpy(), self.codec.frame_rate, self.codec.codebook_sizes[:k], kind=self.codec.kind, extras=extras
        )
        return self.codec.decode(tokens)


def _trim_silence(wav: np.ndarray, sample_rate: int, frame_seconds: float = 0.02) -> np.ndarray:
    """Cut leading and trailing frames quieter than -50 dBFS; all-quiet audio raises AudioError."""
    hop = int(frame_seconds * sample_rate)
    frames = len(wav) // hop
    if frames == 0:
        return wav
    energy = (wav[: frames * hop].reshape(frames, hop) ** 2).mean(1)
    loud = np.flatnonzero(10 * np.log10(energy + 1e-12) > _SILENCE_DBFS)
    if len(loud) == 0:
        raise AudioError("prompt is silent (no frame above -50 dBFS)")
    return wav[loud[0] * hop : (loud[-1] + 1) * hop]
