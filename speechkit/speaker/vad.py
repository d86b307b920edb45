"""Energy-based speech activity detection (VAD), offline and streaming, in numpy only.

Each 25 ms frame (10 ms hop) gets a log energy in dB full scale, after removing the frame's own mean
so a DC offset reads as silence. A noise floor follows a low percentile of those energies over a
sliding window (10 s back, 0.5 s ahead, updated every 100 ms), so it adapts to the recording's level
and to slow changes of the background. A frame turns speech when it rises ``onset_db`` above the
floor and stays speech until it falls below ``offset_db`` above it (hysteresis: no flicker around
one threshold). Speech runs separated by less than ``min_silence`` merge, runs shorter than
``min_speech`` are dropped, and the survivors are widened by ``padding`` on each side (merging where
the padding meets).

Since the floor looks only a bounded time ahead, :class:`StreamingVAD` makes exactly the decisions
:func:`detect_speech` makes on the whole recording, and emits every segment a bounded time
(:attr:`StreamingVAD.max_delay_seconds`) after it ends. Speech that fills the whole floor window
(more than 90 % of 10.5 s without a pause) raises the floor into the speech and is partly missed:
the price of a detector without a model.

Times: frame ``i`` covers samples ``[i * hop, i * hop + frame)`` and stands for the ``hop``-long slot
centred on it; a segment starts at its first frame's slot and ends at its last frame's slot
(0 and the audio length at the edges).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> wav = 0.01 * rng.standard_normal(48000)
    >>> wav[16000:32000] += 0.1 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    >>> result = detect_speech(wav, 16000, VADConfig(padding=0.0))
    >>> [(round(start, 2), round(end, 2)) for start, end in result.segments]
    [(0.99, 2.01)]
    >>> result.speech_mask.shape, result.frame_rate
    ((298,), 100.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speechkit.audio import check_sample_rate, check_waveform, to_mono
from speechkit.errors import ConfigError

__all__ = ["StreamingVAD", "VADConfig", "VADResult", "detect_speech", "frame_log_energy", "speech_mask"]

# Floor of the frame energy before the log: -100 dBFS, far below 16-bit quantisation noise (-101 dB
# per sample but -98 dB for a frame of dithered silence), so digital silence is finite and quiet.
_ENERGY_EPS = 1e-10


@dataclass(frozen=True, kw_only=True)
class VADConfig:
    """Settings of the energy VAD; durations in seconds, levels in dB.

    Args:
        frame_seconds: analysis frame length (25 ms).
        hop_seconds: frame shift (10 ms); the speech mask has ``1 / hop_seconds`` frames per second.
        noise_percentile: the percentile of frame energies taken as the noise floor.
        onset_db: a silent frame turns speech this far above the floor.
        offset_db: a speech frame stays speech down to this far above the floor (<= ``onset_db``).
        min_energy_db: frames quieter than this (dBFS) are never speech, whatever the floor.
        min_speech: shorter speech runs (after merging) are dropped.
        min_silence: shorter pauses between speech runs are bridged.
        padding: added before and after every segment.
        floor_history: how far back the noise-floor window reaches.
        floor_lookahead: how far ahead it reaches (part of the streaming delay).
        floor_update: the floor is recomputed every this many seconds.
    """

    frame_seconds: float = 0.025
    hop_seconds: float = 0.010
    noise_percentile: float = 10.0
    onset_db: float = 6.0
    offset_db: float = 3.0
    min_energy_db: float = -60.0
    min_speech: float = 0.2
    min_silence: float = 0.2
    padding: float = 0.05
    floor_history: float = 10.0
    floor_lookahead: float = 0.5
    floor_update: float = 0.1

    def __post_init__(self) -> None:
        for name in ("frame_seconds", "hop_seconds", "floor_update"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"VADConfig.{name} must be positive, got {getattr(self, name)}")
        for name in ("min_speech", "min_silence", "padding", "floor_history", "floor_lookahead"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"VADConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.hop_seconds > self.frame_seconds:
            raise ConfigError("VADConfig.hop_seconds must not exceed frame_seconds (frames would skip audio)")
        if not 0.0 <= self.noise_percentile <= 100.0:
            raise ConfigError(f"VADConfig.noise_percentile must lie in [0, 100], got {self.noise_percentile}")
        if not self.onset_db >= self.offset_db:
            raise ConfigError(
                f"VADConfig.onset_db ({self.onset_db}) must be >= offset_db ({self.offset_db}) for hysteresis"
            )


@dataclass(frozen=True)
class VADResult:
    """What :func:`detect_speech` found.

    Attributes:
        segments: speech segments as (start, end) seconds, sorted and disjoint.
        speech_mask: bool [N], True for the frames inside a segment (padding included).
        frame_rate: frames per second of ``speech_mask``.
    """

    segments: list[tuple[float, float]]
    speech_mask: np.ndarray
    frame_rate: float


@dataclass(frozen=True)
class _Geometry:
    """A config turned into samples and frames at one sample rate."""

    sample_rate: int
    frame_length: int
    hop_length: int
    min_speech: int
    min_silence: int
    padding: int
    history: int
    lookahead: int
    block: int

    @classmethod
    def build(cls, config: VADConfig, sample_rate: int) -> _Geometry:
        hop_length = max(1, round(config.hop_seconds * sample_rate))
        period = hop_length / sample_rate

        def frames(seconds: float) -> int:
            return round(seconds / period)

        return cls(
            sample_rate=sample_rate,
            frame_length=max(hop_length, round(config.frame_seconds * sample_rate)),
            hop_length=hop_length,
            min_speech=frames(config.min_speech),
            min_silence=frames(config.min_silence),
            padding=frames(config.padding),
            history=frames(config.floor_history),
            lookahead=frames(config.floor_lookahead),
            block=max(1, frames(config.floor_update)),
        )

    def region_seconds(self, start: int, end: int, num_frames: int, num_samples: int) -> tuple[float, float]:
        """Frames [start, end) as seconds (each frame stands for the hop-long slot at its centre)."""
        offset = (self.frame_length - self.hop_length) / 2
        duration = num_samples / self.sample_rate
        begin = 0.0 if start == 0 else (start * self.hop_length + offset) / self.sample_rate
        finish = duration if end >= num_frames else (end * self.hop_length + offset) / self.sample_rate
        return begin, min(finish, duration)


def _energies(samples: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """dB energies of every whole frame of float64 ``samples`` (at least one frame long)."""
    frames = np.lib.stride_tricks.sliding_window_view(samples, frame_length)[::hop_length]
    centred = frames - frames.mean(axis=1, keepdims=True)
    return 10.0 * np.log10(np.mean(centred * centred, axis=1) + _ENERGY_EPS)


def _padded_to_frame(samples: np.ndarray, frame_length: int) -> np.ndarray:
    """Audio shorter than a frame becomes one zero-padded frame."""
    if len(samples) >= frame_length:
        return samples
    return np.concatenate([samples, np.zeros(frame_length - len(samples))])


def frame_log_energy(wav: np.ndarray, sample_rate: int, config: VADConfig | None = None) -> np.ndarray:
    """Log energy in dBFS of every frame (mean removed per frame), float64 [N].

    N = 1 + (T - frame) // hop; audio shorter than a frame gives one zero-padded frame.

    Example:
        >>> energy = frame_log_energy(np.full(16000, 0.5), 16000)  # pure DC: digital silence
        >>> energy.shape, float(energy.max())
        ((98,), -100.0)
    """
    geometry = _Geometry.build(config or VADConfig(), check_sample_rate(sample_rate))
    samples = to_mono(check_waveform(wav)).astype(np.float64)
    return _energies(
        _padded_to_frame(samples, geometry.frame_length), geometry.frame_length, geometry.hop_length
    )


class _VADCore:
    """Frame energies in, finished speech regions (frame indices [start, end)) out.

    Shared by the offline and the streaming detector, so both decide identically. Decisions are
    made a block of ``block`` frames at a time, once the block's floor window is complete.
    """

    def __init__(self, config: VADConfig, geometry: _Geometry) -> None:
        self.config, self.geometry = config, geometry
        self.energies = np.zeros(0)  # energies of frames [self.first, self.num_frames)
        self.first = 0
        self.num_frames = 0
        self.decided = 0  # frames [0, decided) have a speech/silence decision
        self.in_speech = False  # hysteresis state after frame decided - 1
        self.run_start: int | None = None  # open raw speech run
        self.pending: list[int] | None = None  # raw runs merged across short pauses, not yet judged
        self.kept: list[int] | None = None  # padded region that a later one may still merge with

    def push(self, energies: np.ndarray) -> list[tuple[int, int]]:
        self.energies = np.concatenate([self.energies, energies])
        self.num_frames += len(energies)
        done: list[tuple[int, int]] = []
        g = self.geometry
        while self.decided + g.block + g.lookahead <= self.num_frames:
            self._decide_block(self.decided + g.block, done)
        return done

    def finish(self) -> list[tuple[int, int]]:
        done: list[tuple[int, int]] = []
        while self.decided < self.num_frames:
            self._decide_block(min(self.decided + self.geometry.block, self.num_frames), done)
        if self.run_start is not None:
            self._end_run(self.run_start, self.num_frames, done)
            self.run_start = None
        if self.pending is not None:
            self._judge_pending(done)
        if self.kept is not None:
            done.append((self.kept[0], min(self.kept[1], self.num_frames)))
            self.kept = None
        return done

    def _decide_block(self, stop: int, done: list[tuple[int, int]]) -> None:
        g, start = self.geometry, self.decided
        low = max(0, start - g.history)
        high = min(self.num_frames, start + g.block + g.lookahead)
        floor = float(
            np.percentile(self.energies[low - self.first : high - self.first], self.config.noise_percentile)
        )
        onset = max(floor + self.config.onset_db, self.config.min_energy_db)
        offset = max(floor + self.config.offset_db, self.config.min_energy_db)
        for index in range(start, stop):
            energy = self.energies[index - self.first]
            self.in_speech = energy >= (offset if self.in_speech else onset)
            if self.in_speech and self.run_start is None:
                self.run_start = index
            elif not self.in_speech and self.run_start is not None:
                self._end_run(self.run_start, index, done)
                self.run_start = None
        self.decided = stop
        self._release(done)
        # Keep what the next block's floor window needs (it starts ``history`` frames back).
        keep_from = max(0, self.decided - g.history)
        if keep_from > self.first:
            self.energies = self.energies[keep_from - self.first :]
            self.first = keep_from

    def _end_run(self, start: int, end: int, done: list[tuple[int, int]]) -> None:
        if self.pending is not None and start - self.pending[1] < self.geometry.min_silence:
            self.pending[1] = end  # bridge the short pause
            return
        if self.pending is not None:
            self._judge_pending(done)
        self.pending = [start, end]

    def _judge_pending(self, done: list[tuple[int, int]]) -> None:
        (start, end), self.pending = self.pending, None
        if end - start < self.geometry.min_speech:
            return
        pad = self.geometry.padding
        start, end = max(0, start - pad), end + pad
        if self.kept is not None and start <= self.kept[1]:
            self.kept[1] = max(self.kept[1], end)
            return
        if self.kept is not None:
            done.append((self.kept[0], self.kept[1]))
        self.kept = [start, end]

    def _release(self, done: list[tuple[int, int]]) -> None:
        """Finish what no future frame can change: a later run starts at ``decided`` or after."""
        if self.run_start is not None:
            return
        if self.pending is not None and self.decided - self.pending[1] >= self.geometry.min_silence:
            self._judge_pending(done)
        # A later region padded back to (decided - padding) merges only if it reaches kept's end.
        if (
            self.pending is None
            and self.kept is not None
            and self.decided - self.geometry.padding > self.kept[1]
        ):
            done.append((self.kept[0], self.kept[1]))
            self.kept = None


def detect_speech(wav: np.ndarray, sample_rate: int = 16000, config: VADConfig | None = None) -> VADResult:
    """Find the speech in a recording.

    Args:
        wav: audio [T] (or [T, C], mixed down); float or integer PCM.
        sample_rate: rate of ``wav`` in Hz (frames are 25 ms / 10 ms at any rate).
        config: detector settings (defaults: :class:`VADConfig`).

    Returns:
        :class:`VADResult` with segments in seconds and the frame mask [N].

    Raises:
        AudioError: empty audio, NaN/Inf samples, a bad sample rate.
    """
    config = config or VADConfig()
    geometry = _Geometry.build(config, check_sample_rate(sample_rate))
    samples = to_mono(check_waveform(wav)).astype(np.float64)
    energies = _energies(
        _padded_to_frame(samples, geometry.frame_length), geometry.frame_length, geometry.hop_length
    )
    core = _VADCore(config, geometry)
    regions = core.push(energies) + core.finish()
    mask = np.zeros(len(energies), dtype=bool)
    for start, end in regions:
        mask[start:end] = True
    segments = [geometry.region_seconds(start, end, len(energies), len(samples)) for start, end in regions]
    return VADResult(segments=segments, speech_mask=mask, frame_rate=sample_rate / geometry.hop_length)


def speech_mask(wav: np.ndarray, sample_rate: int = 16000, config: VADConfig | None = None) -> np.ndarray:
    """Frame-level speech mask bool [N] (10 ms frames by default) of :func:`detect_speech`.

    Example:
        >>> speech_mask(np.zeros(16000), 16000).any()
        np.False_
    """
    return detect_speech(wav, sample_rate, config).speech_mask


class StreamingVAD:
    """The same detector fed audio chunk by chunk, emitting each segment once it is final.

    State: the samples of the unfinished frame, the last ``floor_history`` of frame energies, the
    hysteresis state and the open and not-yet-final segments; memory stays bounded however long the
    stream. Segments come out in order, equal to what :func:`detect_speech` returns for all the
    audio pushed so far, except the ones still open at the end, which :meth:`flush` returns.

    Args:
        sample_rate: rate of the chunks in Hz.
        config: detector settings (defaults: :class:`VADConfig`).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> wav = 0.01 * rng.standard_normal(48000)
        >>> wav[16000:32000] += 0.1 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
        >>> vad = StreamingVAD(16000, VADConfig(padding=0.0))
        >>> found = [seg for start in range(0, 48000, 1600) for seg in vad.accept(wav[start : start + 1600])]
        >>> found + vad.flush() == detect_speech(wav, 16000, VADConfig(padding=0.0)).segments
        True
    """

    def __init__(self, sample_rate: int = 16000, config: VADConfig | None = None) -> None:
        self.config = config or VADConfig()
        self.sample_rate = check_sample_rate(sample_rate)
        self._geometry = _Geometry.build(self.config, self.sample_rate)
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next chunk starts a new recording at time 0."""
        self._core = _VADCore(self.config, self._geometry)
        self._buffer = np.zeros(0)  # samples from the next frame's first sample on
        self.num_samples = 0

    @property
    def max_delay_seconds(self) -> float:
        """Upper bound on how long after a segment's end (padding included) :meth:`accept` returns it.

        A segment is final once its pause is too long to bridge (``min_silence``) or to merge by
        padding (2 x ``padding``), and the frames up to there are decided, which waits for the
        floor's lookahead and the rest of its update block; add one frame of audio.
        """
        g = self._geometry
        frames = max(g.min_silence, 2 * g.padding + 1) - g.padding + g.block + g.lookahead
        return (max(frames, 0) * g.hop_length + g.frame_length) / self.sample_rate

    def accept(self, chunk: np.ndarray) -> list[tuple[float, float]]:
        """Push the next chunk [T'] (any length, empty allowed); returns the segments now final."""
        chunk = np.asarray(chunk)
        if chunk.size == 0:
            return []
        samples = to_mono(check_waveform(chunk, name="audio chunk")).astype(np.float64)
        self.num_samples += len(samples)
        self._buffer = np.concatenate([self._buffer, samples])
        g = self._geometry
        if len(self._buffer) < g.frame_length:
            return []
        count = 1 + (len(self._buffer) - g.frame_length) // g.hop_length
        energies = _energies(
            self._buffer[: (count - 1) * g.hop_length + g.frame_length], g.frame_length, g.hop_length
        )
        self._buffer = self._buffer[count * g.hop_length :]
        return self._seconds(self._core.push(energies))

    def flush(self) -> list[tuple[float, float]]:
        """End the stream: return the remaining segments and reset for a new stream."""
        core, g = self._core, self._geometry
        if core.num_frames == 0 and self.num_samples > 0:  # shorter than one frame
            core.push(_energies(_padded_to_frame(self._buffer, g.frame_length), g.frame_length, g.hop_length))
        segments = self._seconds(core.finish())
        self.reset()
        return segments

    def _seconds(self, regions: list[tuple[int, int]]) -> list[tuple[float, float]]:
        # Before the end no region reaches the last frame, so the final length is not needed yet.
        return [
            self._geometry.region_seconds(start, end, self._core.num_frames, self.num_samples)
            for start, end in regions
        ]
