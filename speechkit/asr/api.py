"""The ASR task API: audio in (any rate, mono or channels-last), a :class:`Transcript` out.

    asr = speechkit.load("asr")                                   # a shipped name or a checkpoint folder
    transcript = asr.transcribe(wav, sample_rate)                 # text, words with start/end seconds
    stream = asr.stream(sample_rate=16000)
    for chunk in microphone_chunks:
        for update in stream.accept(chunk):                       # partials while audio arrives, finals at endpoints
            print(update.text, update.is_final)
    for update in stream.finish():
        ...

Long audio is cut into windows of at most ``window_seconds`` at the quietest 10 ms inside the last
``cut_search_seconds`` of each window, and every window is decoded on its own, so an hour of audio
costs the memory of one window (:meth:`SpeechRecognizer.transcribe_blocks` takes the audio as an
iterator of blocks and never holds it whole).

Bad input: NaN/Inf, empty or non-numeric audio and impossible rates raise
:class:`~speechkit.errors.AudioError`; audio under ``MIN_SECONDS`` raises too (no word fits in it);
silence gives an empty transcript; stereo is mixed down and other rates resampled (logged); float
audio beyond [-1, 1] is scaled back (logged); clipped or noisy audio is transcribed as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from speechkit.asr.decoding import DecodingOptions, decode_encoded, tokens_to_words
from speechkit.asr.transcript import Transcript, Word
from speechkit.audio import check_sample_rate, check_waveform, resample
from speechkit.errors import AudioError

logger = logging.getLogger(__name__)

MIN_SECONDS = 0.1
SILENCE_PEAK = 1e-4  # about -80 dBFS: nothing a microphone picks up as speech


class SpeechRecognizer:
    """Transcribe speech with an :class:`~speechkit.asr.model.EBranchformerASR` (batch or streaming).

    Args:
        model: the ASR model (put in eval mode).
        options: default :class:`DecodingOptions` (joint CTC/attention beam search, beam 4).
        window_seconds: longest piece decoded at once; cut_search_seconds: where a cut is sought.
        chunk_frames: offline attention chunk (None = full context); a stream uses its own.

    Example:
        >>> from speechkit.asr.model import ASRConfig, EBranchformerASR
        >>> asr = SpeechRecognizer(EBranchformerASR(ASRConfig.tiny()))
        >>> t = asr.transcribe(np.random.default_rng(0).normal(0, 0.1, 8000).astype(np.float32), 8000)
        >>> t.duration, all(0 <= w.start <= w.end <= t.duration for w in t.words)
        (1.0, True)
        >>> asr.transcribe(np.zeros(16000, np.float32), 16000).text
        ''
    """

    def __init__(
        self,
        model,
        options: DecodingOptions | None = None,
        window_seconds: float = 20.0,
        cut_search_seconds: float = 4.0,
        chunk_frames: int | None = None,
    ) -> None:
        self.model = model.eval()
        self.config = model.config
        self.sample_rate = int(model.config.sample_rate)
        self.options = options or DecodingOptions()
        self.window_seconds, self.cut_search_seconds = window_seconds, cut_search_seconds
        self.chunk_frames = chunk_frames
        self.name = getattr(model, "checkpoint_name", model.config.KIND)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # --- offline --------------------------------------------------------------------------------

    def transcribe(self, wav: np.ndarray, sample_rate: int, options: DecodingOptions | None = None) -> Transcript:
        """Audio [T] or [T, C] at ``sample_rate`` -> :class:`Transcript` (see the module docstring)."""
        wav = self.prepare(wav, sample_rate)
        if len(wav) < MIN_SECONDS * self.sample_rate:
            raise AudioError(f"audio is {len(wav) / self.sample_rate:.3f} s long; at least {MIN_SECONDS} s is needed")
        return self.transcribe_blocks([wav], options, _prepared=True)

    def transcribe_blocks(
        self, blocks: Iterable[np.ndarray], options: DecodingOptions | None = None, *, _prepared: bool = False
    ) -> Transcript:
        """Transcribe audio given as consecutive float32 mono blocks at :attr:`sample_rate`."""
        options = options or self.options
        words: list[Word] = []
        texts: list[str] = []
        offset = 0
        for piece in self._windows(blocks if _prepared else (self._check_block(b) for b in blocks)):
            transcript = self.transcribe_window(piece, options, offset / self.sample_rate)
            words.extend(transcript.words)
            if transcript.text:
                texts.append(transcript.text)
            offset += len(piece)
        if offset < MIN_SECONDS * self.sample_rate:
            raise AudioError(f"audio is {offset / self.sample_rate:.3f} s long; at least {MIN_SECONDS} s is needed")
        duration = offset / self.sample_rate
        confidence = float(np.mean([w.confidence for w in words])) if words else 1.0
        return Transcript(" ".join(texts), tuple(words), duration, confidence)

    @torch.inference_mode()
    def transcribe_window(
        self, wav: np.ndarray, options: DecodingOptions | None = None, time_offset: float = 0.0
    ) -> Transcript:
        """Decode one prepared window (float32 mono at :attr:`sample_rate`) in one pass."""
        options = options or self.options
        duration = len(wav) / self.sample_rate
        if len(wav) == 0 or float(np.max(np.abs(wav))) < SILENCE_PEAK:
            return Transcript("", (), duration)
        x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None].to(self.device)
        encoded, _ = self.model.encode(x, None, self.chunk_frames)
        return self.decode_segment(encoded, options, time_offset, duration)

    def decode_segment(self, encoded: torch.Tensor, options: DecodingOptions, time_offset: float, duration: float) -> Transcript:
        """Encoder output of one segment [1, T, D] -> Transcript with times offset by ``time_offset``."""
        decoded = decode_encoded(self.model, encoded, options)
        shift = self.model.frame_shift_seconds
        end_limit = time_offset + duration
        words = tuple(
            Word(
                w.text,
                round(min(time_offset + w.start_frame * shift, end_limit), 3),
                round(min(time_offset + w.end_frame * shift, end_limit), 3),
                round(w.confidence, 4),
            )
            for w in tokens_to_words(decoded, self.model.vocabulary)
        )
        confidence = float(np.mean([w.confidence for w in words])) if words else 1.0
        return Transcript(" ".join(w.text for w in words), words, duration, confidence)

    # --- input handling -------------------------------------------------------------------------

    def prepare(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        """User audio -> finite float32 mono at :attr:`sample_rate`, scaled into [-1, 1] if needed."""
        sample_rate = check_sample_rate(sample_rate)
        wav = check_waveform(np.asarray(wav), allow_silence=True)
        if wav.ndim == 2:
            if wav.shape[1] > 8 and wav.shape[0] <= 8:
                raise AudioError(f"audio looks channels-first {wav.shape}; pass [T, channels]")
            logger.info("mixing %d channels down to mono", wav.shape[1])
            wav = wav.mean(axis=1, dtype=np.float32)
        if sample_rate != self.sample_rate:
            logger.info("resampling from %d Hz to %d Hz", sample_rate, self.sample_rate)
            wav = resample(wav, sample_rate, self.sample_rate)
        return self._check_block(wav)

    def _check_block(self, wav: np.ndarray) -> np.ndarray:
        wav = check_waveform(np.asarray(wav), allow_silence=True)
        if wav.ndim != 1:
            raise AudioError(f"blocks must be mono [T] at {self.sample_rate} Hz, got shape {wav.shape}")
        peak = float(np.max(np.abs(wav))) if len(wav) else 0.0
        if peak > 1.0:
            logger.warning("audio peaks at %.2f (beyond [-1, 1]); scaling it down", peak)
            wav = wav / peak
        return wav.astype(np.float32, copy=False)

    def _windows(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Re-cut a block stream into windows of at most ``window_seconds``, cut where it is quietest."""
        window = int(self.window_seconds * self.sample_rate)
        buffer = np.zeros(0, dtype=np.float32)
        for block in blocks:
            buffer = np.concatenate([buffer, block])
            while len(buffer) > window:
                cut = self._quiet_cut(buffer[:window])
                yield buffer[:cut]
                buffer = buffer[cut:]
        if len(buffer):
            yield buffer

    def _quiet_cut(self, window: np.ndarray) -> int:
        hop = self.sample_rate // 100
        search = min(len(window) // 2, int(self.cut_search_seconds * self.sample_rate)) // hop * hop
        tail = window[len(window) - search :]
        energy = np.square(tail[: len(tail) // hop * hop].reshape(-1, hop)).mean(1)
        return len(window) - search + int(np.argmin(energy)) * hop + hop // 2

    # --- streaming ------------------------------------------------------------------------------

    def stream(self, sample_rate: int | None = None, **settings):
        """A :class:`~speechkit.asr.streaming.RecognizerStream` (settings: see its Args)."""
        from speechkit.asr.streaming import RecognizerStream

        return RecognizerStream(self, sample_rate or self.sample_rate, **settings)


def audio_file_blocks(path: str, sample_rate: int, block_seconds: float = 1.0) -> Iterator[np.ndarray]:
    """Read an audio file as float32 mono blocks at ``sample_rate`` without holding it whole.

    Any format soundfile reads; channels are averaged and other rates resampled incrementally.
    """
    import soundfile as sf
    import soxr

    try:
        handle = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioError(f"cannot read audio file {path}: {err}") from err
    with handle:
        rate = check_sample_rate(handle.samplerate)
        resampler = soxr.ResampleStream(rate, sample_rate, 1, dtype="float32") if rate != sample_rate else None
        for block in handle.blocks(blocksize=max(1, int(block_seconds * rate)), dtype="float32", always_2d=True):
            mono = block.mean(axis=1, dtype=np.float32)
            yield resampler.resample_chunk(mono) if resampler is not None else mono
        if resampler is not None:
            yield resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
