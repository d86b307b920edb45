"""Discriminators for the adversarial stage of waveform-producing models (codecs, vocoders).

Two views of the waveform, as in HiFi-GAN and its descendants (EnCodec, DAC, Vocos):

* :class:`MultiPeriodDiscriminator` (Kong et al. 2020, §2.2): the signal folded into 2-D [T/p, p] for
  prime periods p, so each sub-discriminator sees one phase of a periodic structure (pitch harmonics).
* :class:`MultiResolutionSTFTDiscriminator` (Jang et al. 2021 UnivNet; DAC uses the complex version):
  2-D convolutions over the complex STFT (real and imaginary channels) at several resolutions, which
  judges the spectral texture and the phase that the reconstruction losses leave blurry.

Each returns, per sub-discriminator, the logits and the list of intermediate feature maps, which the
feature-matching loss compares between real and generated audio.

Example:
    >>> import torch
    >>> disc = CombinedDiscriminator(periods=(2, 3), stft_sizes=(128,), channels=4)
    >>> logits, features = disc(torch.randn(2, 1600))
    >>> len(logits), len(features), logits[0].shape[0]
    (3, 3, 2)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

Output = tuple[list[Tensor], list[list[Tensor]]]


class PeriodDiscriminator(nn.Module):
    """One period of the MPD: the waveform as [B, 1, T/p, p], 2-D convs with kernels (k, 1).

    Args:
        period: the folding period p.
        channels: channels of the first layer (multiplied by 4 per layer up to ``max_channels``).
        num_layers: strided layers before the output conv.
        max_channels: channel cap.
    """

    def __init__(self, period: int, channels: int = 16, num_layers: int = 4, max_channels: int = 256) -> None:
        super().__init__()
        self.period = period
        widths = [1] + [min(channels * 4**i, max_channels) for i in range(num_layers)]
        self.layers = nn.ModuleList(
            weight_norm(nn.Conv2d(c_in, c_out, (5, 1), (3, 1), padding=(2, 0)))
            for c_in, c_out in zip(widths[:-1], widths[1:])
        )
        self.last = weight_norm(nn.Conv2d(widths[-1], widths[-1], (5, 1), 1, padding=(2, 0)))
        self.out = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, wav: Tensor) -> tuple[Tensor, list[Tensor]]:
        """wav [B, T] -> (logits [B, N], feature maps)."""
        batch, length = wav.shape
        pad = (-length) % self.period
        x = F.pad(wav, (0, pad), mode="reflect" if pad < length else "constant")
        x = x.view(batch, 1, -1, self.period)
        features = []
        for layer in [*self.layers, self.last]:
            x = F.leaky_relu(layer(x), 0.1)
            features.append(x)
        x = self.out(x)
        features.append(x)
        return x.flatten(1), features


class STFTDiscriminator(nn.Module):
    """One resolution of the complex STFT discriminator: [B, 2, frames, bins] through 2-D convs.

    Args:
        n_fft: FFT size (hop n_fft // 4, Hann window).
        channels: conv channels.
    """

    def __init__(self, n_fft: int, channels: int = 32) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, n_fft // 4
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        c = channels
        self.layers = nn.ModuleList(
            [
                weight_norm(nn.Conv2d(2, c, (3, 9), padding=(1, 4))),
                weight_norm(nn.Conv2d(c, c, (3, 9), (1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(c, c, (3, 9), (1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(c, c, (3, 9), (1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(c, c, (3, 3), padding=(1, 1))),
            ]
        )
        self.out = weight_norm(nn.Conv2d(c, 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: Tensor) -> tuple[Tensor, list[Tensor]]:
        """wav [B, T] -> (logits [B, N], feature maps)."""
        spec = torch.stft(
            wav.float(), self.n_fft, self.hop_length, window=self.window, return_complex=True, center=True
        )
        x = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # [B, 2, frames, bins]
        features = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.1)
            features.append(x)
        x = self.out(x)
        features.append(x)
        return x.flatten(1), features


class MultiPeriodDiscriminator(nn.Module):
    """HiFi-GAN's MPD over the given periods (default the primes 2, 3, 5, 7, 11)."""

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), channels: int = 16) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)

    def forward(self, wav: Tensor) -> Output:
        results = [d(wav) for d in self.discriminators]
        return [r[0] for r in results], [r[1] for r in results]


class MultiResolutionSTFTDiscriminator(nn.Module):
    """Complex STFT discriminators at several FFT sizes."""

    def __init__(self, stft_sizes: Sequence[int] = (256, 512, 1024), channels: int = 32) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(STFTDiscriminator(n, channels) for n in stft_sizes)

    def forward(self, wav: Tensor) -> Output:
        results = [d(wav) for d in self.discriminators]
        return [r[0] for r in results], [r[1] for r in results]


class CombinedDiscriminator(nn.Module):
    """MPD + multi-resolution complex STFT discriminator; outputs are concatenated lists.

    Args:
        periods: MPD periods.
        stft_sizes: FFT sizes of the STFT discriminators.
        channels: base width (the MPD starts at ``channels``, the STFT discriminators use ``2 * channels``).
    """

    def __init__(
        self,
        periods: Sequence[int] = (2, 3, 5, 7, 11),
        stft_sizes: Sequence[int] = (256, 512, 1024),
        channels: int = 16,
    ) -> None:
        super().__init__()
        self.mpd = MultiPeriodDiscriminator(periods, channels)
        self.mrsd = MultiResolutionSTFTDiscriminator(stft_sizes, 2 * channels)

    def forward(self, wav: Tensor) -> Output:
        """wav [B, T] -> (logits per sub-discriminator, feature maps per sub-discriminator)."""
        logits_a, features_a = self.mpd(wav)
        logits_b, features_b = self.mrsd(wav)
        return logits_a + logits_b, features_a + features_b


def discriminator_loss(real_logits: list[Tensor], fake_logits: list[Tensor]) -> Tensor:
    """Least-squares GAN loss of the discriminator (Mao et al. 2017), summed over sub-discriminators.

    Example:
        >>> float(discriminator_loss([torch.ones(2, 3)], [torch.zeros(2, 3)]))
        0.0
    """
    return sum(((1 - r) ** 2).mean() + (f**2).mean() for r, f in zip(real_logits, fake_logits))


def generator_adversarial_loss(fake_logits: list[Tensor]) -> Tensor:
    """Least-squares GAN loss of the generator: push every sub-discriminator's logits on fakes to 1.

    Example:
        >>> float(generator_adversarial_loss([torch.ones(2, 3)]))
        0.0
    """
    return sum(((1 - f) ** 2).mean() for f in fake_logits)


def feature_matching_loss(real_features: list[list[Tensor]], fake_features: list[list[Tensor]]) -> Tensor:
    """Mean L1 distance between real and generated feature maps (HiFi-GAN §2.3), relative to the real
    maps' mean magnitude (as EnCodec) so every layer weighs alike, averaged over all layers.

    Example:
        >>> x = [[torch.ones(1, 2)]]
        >>> float(feature_matching_loss(x, x))
        0.0
    """
    terms = [
        (f - r.detach()).abs().mean() / (r.detach().abs().mean() + 1e-5)
        for rs, fs in zip(real_features, fake_features)
        for r, f in zip(rs, fs)
    ]
    return sum(terms) / len(terms)
