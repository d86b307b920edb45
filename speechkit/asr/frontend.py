"""ASR front-end: log-mel features with a fixed global normalisation, SpecAugment, conv2d subsampling.

Normalisation uses global mean/std buffers (measured on training data by the recipe and stored with
the weights) rather than per-utterance statistics, so a stream normalises its first chunk exactly as
the whole utterance would be.

Shapes: audio [B, T] at 16 kHz -> log-mel [B, N, n_mels] at 100 Hz -> subsampled [B, N', D] at 25 Hz,
``N' = ((N - 1) // 2 - 1) // 2`` (two 3x3 convs, stride 2, no padding: encoder frame j sees mel
frames 4j .. 4j + 6, so nothing past them).

Example:
    >>> frontend = LogMelFrontend(sample_rate=16000, n_mels=80)
    >>> mel, lengths = frontend(torch.randn(2, 16000), torch.tensor([16000, 8000]))
    >>> mel.shape, lengths.tolist()
    (torch.Size([2, 101, 80]), [101, 51])
    >>> sub = Conv2dSubsampling(80, dim=32, channels=8)
    >>> x, sub_lengths = sub(mel, lengths)
    >>> x.shape, sub_lengths.tolist()
    (torch.Size([2, 24, 32]), [24, 12])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.features import LogMelSpectrogram


class LogMelFrontend(nn.Module):
    """Audio [B, T] -> normalised log-mel [B, N, n_mels] and frame lengths [B].

    Args:
        sample_rate: audio rate in Hz.
        n_mels: mel bands.
        n_fft: FFT size (25 ms at 16 kHz); hop_length: frame shift (10 ms).
    """

    def __init__(self, sample_rate: int, n_mels: int = 80, n_fft: int = 400, hop_length: int = 160) -> None:
        super().__init__()
        self.mel = LogMelSpectrogram(sample_rate, n_fft, hop_length, n_mels, double_precision=False)
        self.hop_length, self.n_fft = hop_length, n_fft
        self.register_buffer("feature_mean", torch.zeros(n_mels))
        self.register_buffer("feature_std", torch.ones(n_mels))

    def num_frames(self, num_samples: Tensor) -> Tensor:
        return num_samples // self.hop_length + 1

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mel = self.mel(wav).transpose(1, 2)  # [B, N, n_mels]
        mel = (mel - self.feature_mean) / self.feature_std
        if lengths is None:
            lengths = torch.full((wav.shape[0],), wav.shape[1], device=wav.device)
        return mel, self.num_frames(lengths).clamp_max(mel.shape[1])

    @torch.no_grad()
    def set_statistics(self, mean: Tensor, std: Tensor) -> None:
        """Store global feature statistics [n_mels] (std is floored at 1e-3)."""
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std.clamp_min(1e-3))


class SpecAugment(nn.Module):
    """Frequency and time masking of [B, N, F] features in training (Park et al. 2019, section 2).

    Time-mask widths are a fraction of each utterance's length (adaptive SpecAugment, Park et al.
    2020), so short and long utterances lose the same share. Masked values are 0 (the normalised
    mean). Time warping is left out: it costs CPU and adds little on small models.

    Args:
        num_freq_masks: masks per utterance over mel bands; freq_mask_width: max width F.
        num_time_masks: masks per utterance over frames; time_mask_ratio: max width as a fraction of N.

    Example:
        >>> aug = SpecAugment(num_freq_masks=1, freq_mask_width=4, num_time_masks=1).train()
        >>> x = aug(torch.ones(2, 50, 16), torch.tensor([50, 30]))
        >>> bool((x == 0).any()), aug.eval()(torch.ones(1, 5, 4), torch.tensor([5])).sum().item()
        (True, 20.0)
    """

    def __init__(
        self,
        num_freq_masks: int = 2,
        freq_mask_width: int = 27,
        num_time_masks: int = 4,
        time_mask_ratio: float = 0.05,
    ) -> None:
        super().__init__()
        self.num_freq_masks, self.freq_mask_width = num_freq_masks, freq_mask_width
        self.num_time_masks, self.time_mask_ratio = num_time_masks, time_mask_ratio

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        if not self.training:
            return x
        batch, frames, bands = x.shape
        keep = torch.ones(batch, frames, bands, dtype=torch.bool, device=x.device)
        band_idx = torch.arange(bands, device=x.device)[None, :]
        for _ in range(self.num_freq_masks):
            width = torch.randint(0, self.freq_mask_width + 1, (batch, 1), device=x.device)
            start = (torch.rand(batch, 1, device=x.device) * (bands - width).clamp_min(1)).long()
            keep &= ~((band_idx >= start) & (band_idx < start + width))[:, None, :]
        frame_idx = torch.arange(frames, device=x.device)[None, :]
        max_width = (lengths.float() * self.time_mask_ratio).long().clamp_min(1)[:, None]
        for _ in range(self.num_time_masks):
            width = (torch.rand(batch, 1, device=x.device) * (max_width + 1)).long()
            start = (torch.rand(batch, 1, device=x.device) * (lengths[:, None] - width).clamp_min(1)).long()
            keep &= ~((frame_idx >= start) & (frame_idx < start + width))[:, :, None]
        return x * keep


class Conv2dSubsampling(nn.Module):
    """Two 3x3 stride-2 convs with ReLU over (time, mel), then a linear to D: 4x fewer frames.

    No padding in time, so it is causal up to its 7-frame receptive field (encoder frame j depends
    on mel frames 4j .. 4j + 6 only) and a stream can compute it on a prefix exactly.

    Args:
        n_mels: input bands; dim: output width D; channels: conv channels.

    Shapes:
        mel [B, N, n_mels], lengths [B] -> [B, N', D], [B] with N' = ((N - 1) // 2 - 1) // 2.
    """

    receptive_field = 7
    stride = 4

    def __init__(self, n_mels: int, dim: int, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, stride=2)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=2)
        reduced = ((n_mels - 1) // 2 - 1) // 2
        self.proj = nn.Linear(channels * reduced, dim)

    @staticmethod
    def output_lengths(lengths: Tensor) -> Tensor:
        return (((lengths - 1) // 2 - 1) // 2).clamp_min(0)

    def forward(self, mel: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if mel.shape[1] < self.receptive_field:  # too short for one frame: pad (a clip of < 70 ms)
            mel = F.pad(mel, (0, 0, 0, self.receptive_field - mel.shape[1]))
            lengths = lengths.clamp_min(self.receptive_field)
        x = F.relu(self.conv2(F.relu(self.conv1(mel[:, None]))))  # [B, C, N', F']
        x = self.proj(x.permute(0, 2, 1, 3).flatten(2))  # [B, N', C * F'] -> [B, N', D]
        return x, self.output_lengths(lengths).clamp(1, x.shape[1])
