"""Streaming recognition: audio chunks in, partial transcripts while they arrive, finals at endpoints.

The encoder runs in chunk mode: attention sees the frame's own chunk of ``chunk_frames`` encoder
frames (40 ms each) and the past, and the convolutions look only left (``causal_convs``), so an
encoder frame depends on nothing after the end of its chunk. Each time a chunk of audio is complete
(its log-mel frames need their whole STFT window, the 4x subsampling 3 more mel frames), the encoder
is re-run on the retained audio and the new chunk's frames are kept. With unlimited left context
(``left_context_seconds=None``) the kept frames equal the offline chunk-mode encoder's exactly, so
the final transcript equals :meth:`SpeechRecognizer.transcribe` with the same ``chunk_frames``; with
a bounded left context the audio before it is dropped (cost and memory stay flat; the result is
then an approximation the dynamic-chunk training prepares the model for). Re-running the window,
rather than caching every layer's keys and conv states, keeps one code path with the offline model;
a cached step graph is the export's job.

Algorithmic latency (a sample at the start of a chunk waits for): the chunk, plus the subsampling's
3 mel frames of look-ahead, plus half an STFT window: 16 x 40 ms + 30 ms + 12.5 ms = 682.5 ms with
the default ``chunk_frames=16`` (see :attr:`RecognizerStream.latency_seconds`).

Partials are greedy CTC over the segment so far. Endpointing: when the segment has produced text
and its CTC output has been blank for ``endpoint_seconds``, the segment is final: it is decoded
again with the full decoder (joint CTC/attention beam search by default), reported with word times,
and a new segment starts. A segment is also closed at ``max_segment_seconds``, and silent audio is
dropped every few seconds, so a stream of any length keeps flat memory.

Example:
    >>> from speechkit.asr.api import SpeechRecognizer
    >>> from speechkit.asr.model import ASRConfig, EBranchformerASR
    >>> stream = SpeechRecognizer(EBranchformerASR(ASRConfig.tiny())).stream(16000, chunk_frames=4)
    >>> rng = np.random.default_rng(0)
    >>> updates = [u for _ in range(5) for u in stream.accept(rng.normal(0, 0.1, 3200).astype(np.float32))]
    >>> updates += stream.finish()
    >>> all(isinstance(u, TranscriptUpdate) for u in updates), round(stream.latency_seconds, 4)
    (True, 0.2025)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import soxr
import torch

from speechkit.asr.decoding import DecodingOptions
from speechkit.asr.frontend import Conv2dSubsampling
from speechkit.asr.transcript import Transcript
from speechkit.audio import check_sample_rate, check_waveform
from speechkit.decoders.ctc import ctc_greedy
from speechkit.errors import AudioError

SILENCE_RESET_SECONDS = 5.0


def join_finals(updates: Iterable[TranscriptUpdate]) -> Transcript:
    """One :class:`Transcript` (stream time) from a stream's final updates; partials are skipped."""
    finals = [u for u in updates if u.is_final and u.transcript is not None]
    words = tuple(w for u in finals for w in u.transcript.words)
    confidence = float(np.mean([w.confidence for w in words])) if words else 1.0
    end = max((u.end for u in finals), default=0.0)
    return Transcript(" ".join(u.text for u in finals if u.text), words, end, confidence)


@dataclass(frozen=True)
class TranscriptUpdate:
    """One streaming result.

    Attributes:
        text: the current segment's text (a partial, or the final text).
        is_final: True once the segment is closed (endpoint, length cap or end of stream).
        start: stream time (s) where the segment began.
        end: stream time (s) of the audio the result covers.
        transcript: for finals, the segment's :class:`Transcript` with words in stream time.
    """

    text: str
    is_final: bool
    start: float
    end: float
    transcript: Transcript | None = None


class RecognizerStream:
    """Incremental recognition over pushed audio chunks (see the module docstring).

    Args:
        recognizer: the :class:`~speechkit.asr.api.SpeechRecognizer`.
        sample_rate: rate of the pushed audio (resampled incrementally to the model's).
        chunk_frames: encoder frames per chunk (default: the model config's ``decode_chunk_frames``).
        left_context_seconds: audio kept before the newest chunk (None = the whole segment).
        endpoint_seconds: trailing CTC-blank time that closes a segment (None = never).
        max_segment_seconds: a segment is closed at this length.
        final_options: decoding of closed segments (default: the recognizer's options).
    """

    def __init__(
        self,
        recognizer,
        sample_rate: int,
        chunk_frames: int | None = None,
        left_context_seconds: float | None = 10.0,
        endpoint_seconds: float | None = 0.8,
        max_segment_seconds: float = 20.0,
        final_options: DecodingOptions | None = None,
    ) -> None:
        self.recognizer, self.model = recognizer, recognizer.model
        config = self.model.config
        self.sample_rate = check_sample_rate(sample_rate)
        self.model_rate = recognizer.sample_rate
        self.chunk_frames = int(chunk_frames or config.decode_chunk_frames)
        self.hop, self.n_fft = config.hop_length, config.n_fft
        self.samples_per_frame = self.hop * Conv2dSubsampling.stride
        self.shift = self.model.frame_shift_seconds
        self.left_frames = None if left_context_seconds is None else int(left_context_seconds / self.shift)
        self.endpoint_frames = None if endpoint_seconds is None else max(1, int(endpoint_seconds / self.shift))
        self.max_segment_frames = max(self.chunk_frames, int(max_segment_seconds / self.shift))
        self.final_options = final_options or recognizer.options
        self._resampler = (
            soxr.ResampleStream(self.sample_rate, self.model_rate, 1, dtype="float32")
            if self.sample_rate != self.model_rate
            else None
        )
        self._segment_start = 0  # samples (model rate, stream time)
        self._audio = np.zeros(0, dtype=np.float32)  # retained audio of the segment
        self._window_start = 0  # segment-relative sample of _audio[0] (a multiple of one chunk)
        self._encoded: list[torch.Tensor] = []  # emitted encoder frames of the segment, [n, D] each
        self._best_path: list[np.ndarray] = []  # their CTC log-probs [n, V]
        self._last_partial = ""
        self._finished = False

    @property
    def latency_seconds(self) -> float:
        """Algorithmic latency: chunk + subsampling look-ahead + half an STFT window."""
        lookahead = (Conv2dSubsampling.receptive_field - 4) * self.hop + self.n_fft // 2
        return self.chunk_frames * self.shift + lookahead / self.model_rate

    @property
    def _emitted(self) -> int:
        return sum(len(e) for e in self._encoded)

    # --- input --------------------------------------------------------------------------------

    def accept(self, chunk: np.ndarray) -> list[TranscriptUpdate]:
        """Push audio [T] or [T, C] at the stream's rate; returns the updates it produced."""
        if self._finished:
            raise AudioError("this stream is finished; start a new one with recognizer.stream()")
        chunk = check_waveform(np.asarray(chunk), allow_silence=True, name="audio chunk")
        if chunk.ndim == 2:
            chunk = chunk.mean(axis=1, dtype=np.float32)
        if self._resampler is not None:
            chunk = self._resampler.resample_chunk(chunk.astype(np.float32))
        peak = float(np.max(np.abs(chunk))) if len(chunk) else 0.0
        if peak > 1.0:
            chunk = chunk / peak
        self._audio = np.concatenate([self._audio, chunk.astype(np.float32)])
        return self._advance()

    def process(self, blocks: Iterable[np.ndarray]) -> Iterator[TranscriptUpdate]:
        """Feed every block, then finish; yields updates as they come (memory stays flat)."""
        for block in blocks:
            yield from self.accept(block)
        yield from self.finish()

    def finish(self) -> list[TranscriptUpdate]:
        """End of audio: decode what is left and close the last segment."""
        if self._finished:
            return []
        self._finished = True
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            self._audio = np.concatenate([self._audio, tail.astype(np.float32)])
        updates = self._advance()
        if len(self._audio) >= self.n_fft // 2:
            encoded, ctc = self._run_window(final=True)
            first = self._emitted - self._window_start // self.samples_per_frame
            self._append(encoded[first:], ctc[first:])
        final = self._close_segment(len(self._audio) + self._window_start)
        return updates + ([final] if final is not None else [])

    # --- processing ---------------------------------------------------------------------------

    def _stable_frames(self) -> int:
        """Encoder frames of the retained window whose inputs are complete."""
        usable = len(self._audio) - self.n_fft // 2
        if usable < 0:
            return 0
        mel = usable // self.hop + 1
        return 0 if mel < Conv2dSubsampling.receptive_field else (mel - Conv2dSubsampling.receptive_field) // 4 + 1

    def _advance(self) -> list[TranscriptUpdate]:
        updates: list[TranscriptUpdate] = []
        window_frame0 = self._window_start // self.samples_per_frame
        ready = (window_frame0 + self._stable_frames()) // self.chunk_frames * self.chunk_frames
        if ready <= self._emitted:
            return updates
        encoded, ctc = self._run_window(final=False)
        self._append(encoded[self._emitted - window_frame0 : ready - window_frame0], ctc[self._emitted - window_frame0 : ready - window_frame0])
        updates.extend(self._partial_or_endpoint())
        self._bound_window()
        if self._window_start // self.samples_per_frame + self._stable_frames() >= self._emitted + self.chunk_frames:
            updates.extend(self._advance())  # a long push can hold several chunks
        return updates

    @torch.inference_mode()
    def _run_window(self, final: bool) -> tuple[torch.Tensor, np.ndarray]:
        """Encoder over the retained window: ([N', D], CTC log-probs [N', V])."""
        x = torch.from_numpy(self._audio)[None].to(self.recognizer.device)
        mel, _ = self.model.frontend(x)
        if not final:
            mel = mel[:, : (len(self._audio) - self.n_fft // 2) // self.hop + 1]
        lengths = torch.tensor([mel.shape[1]], device=mel.device)
        encoded, _ = self.model.encode_mel(mel, lengths, self.chunk_frames, None)
        return encoded[0], self.model.ctc_log_probs(encoded)[0].cpu().numpy()

    def _append(self, encoded: torch.Tensor, ctc: np.ndarray) -> None:
        if len(encoded):
            self._encoded.append(encoded)
            self._best_path.append(ctc)

    def _bound_window(self) -> None:
        """Drop audio older than the left context (whole chunks only, so chunks stay aligned)."""
        if self.left_frames is None:
            return
        keep_from = max(0, self._emitted - self.left_frames) // self.chunk_frames * self.chunk_frames
        drop = keep_from * self.samples_per_frame - self._window_start
        if drop > 0:
            self._audio = self._audio[drop:]
            self._window_start += drop

    def _partial_or_endpoint(self) -> list[TranscriptUpdate]:
        ctc = np.concatenate(self._best_path)
        best = ctc.argmax(-1)
        blank = self.model.vocabulary.blank_id
        speech = np.flatnonzero(best != blank)
        trailing_blank = len(best) - (speech[-1] + 1) if len(speech) else len(best)
        emitted = self._emitted
        if len(speech) == 0 and emitted * self.shift >= SILENCE_RESET_SECONDS:
            self._reset(emitted)  # only silence so far: forget it
            return []
        if emitted >= self.max_segment_frames or (
            self.endpoint_frames is not None and len(speech) and trailing_blank >= self.endpoint_frames
        ):
            final = self._close_segment(emitted * self.samples_per_frame)
            return [final] if final is not None else []
        text = self.model.vocabulary.ids_to_text(ctc_greedy(ctc, blank).tokens)
        if text == self._last_partial:
            return []
        self._last_partial = text
        start = self._segment_start / self.model_rate
        return [TranscriptUpdate(text, False, start, start + emitted * self.shift)]

    def _close_segment(self, end_sample: int) -> TranscriptUpdate | None:
        """Final decode of the segment's emitted frames; the next segment starts at ``end_sample``."""
        start = self._segment_start / self.model_rate
        duration = end_sample / self.model_rate
        update = None
        if self._encoded:
            encoded = torch.cat(self._encoded)[None]
            transcript = self.recognizer.decode_segment(encoded, self.final_options, start, duration)
            if transcript.text or self._last_partial:
                update = TranscriptUpdate(transcript.text, True, start, start + duration, transcript)
        self._reset(end_sample // self.samples_per_frame, end_sample)
        return update

    def _reset(self, frames: int, end_sample: int | None = None) -> None:
        """Start a new segment after ``frames`` encoder frames of the current one."""
        cut = frames * self.samples_per_frame if end_sample is None else end_sample
        self._audio = self._audio[max(0, cut - self._window_start) :]
        self._segment_start += cut
        self._window_start = 0
        self._encoded, self._best_path, self._last_partial = [], [], ""
