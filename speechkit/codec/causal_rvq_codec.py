"""Causal, streaming RVQ codec: the frame-rate RVQ codec with no look-ahead, 30 ms algorithmic latency.

Same recipe as :mod:`speechkit.codec.rvq_codec` (STFT front-end, ConvNeXt at 100 Hz and 50 Hz, RVQ
12 x 1024 with quantizer dropout, magnitude + phase head and inverse STFT; Vocos, Siuzdak 2023,
section 3), made causal end to end so that it streams with explicit state
(:mod:`speechkit.codec.streaming`) and chunked output equals the offline output:

* analysis frames are causal: frame f covers samples ``[(f + 1) * hop - n_fft, (f + 1) * hop)``
  (zeros on the left only), so it is complete as soon as its own hop has arrived;
* every conv is causal (left padding); 100 Hz -> 50 Hz is a strided causal conv, 50 Hz -> 100 Hz
  a transposed conv trimmed on the right; LayerNorms are per frame; no attention, no recurrence;
* synthesis frames use the same causal alignment and are overlap-added (:class:`CausalISTFT`), so
  a sample is final once the ``n_fft / hop - 1`` later frames have been added.

Latency (defaults: hop 160, n_fft 320, downsample 2 at 16 kHz): a token covers 320 samples (20 ms)
and can only be sent when they have all arrived; the overlap-add waits for the next 100 Hz frame,
which can belong to the next token (10 ms more). Output sample t is final once input samples
``0 .. t + 479`` have been pushed: :attr:`CausalRVQCodec.algorithmic_latency_samples` = 480 (30 ms).

::

    audio [B, T] ─causal STFT─► log|X| [B, F, T/160] ─causal conv─► ConvNeXt x e0 (100 Hz)
    ─stride 2─► ConvNeXt x e1 (50 Hz) ─► latent [B, D, T/320] ─RVQ─► codes [B, K, T/320]
    codes ─► ConvNeXt x d0 (50 Hz) ─up 2─► ConvNeXt x d1 (100 Hz) ─► log-mag, phase ─causal OLA─► audio
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.codec.api import Codec, CodecForwardOutput
from speechkit.codec.spectral_head import LOG_MAGNITUDE_CEILING, LOG_MAGNITUDE_FLOOR
from speechkit.config import ModelConfig
from speechkit.errors import ConfigError
from speechkit.features import STFT
from speechkit.nn.conv import (
    ChannelLayerNorm,
    ConvNeXtBlock,
    PaddedConv1d,
    PaddedConvTranspose1d,
    StreamingSequential,
)
from speechkit.tokenizers.residual_vq import ResidualVQ
from speechkit_rt.features import padded_window


@dataclass(frozen=True, kw_only=True)
class CausalRVQCodecConfig(ModelConfig):
    """Config of :class:`CausalRVQCodec`. Token rate = sample_rate / (hop_length * downsample).

    ``n_fft`` is the synthesis (inverse STFT) size and must be a multiple of ``hop_length``: each
    extra hop of window adds one hop of latency. ``analysis_n_fft`` only looks into the past, so it
    costs no latency.
    """

    KIND = "causal_rvq_codec"
    sample_rate: int = 16000
    n_fft: int = 320
    analysis_n_fft: int = 320
    hop_length: int = 160
    downsample: int = 2
    dim: int = 256
    mlp_ratio: float = 3.0
    kernel_size: int = 7
    encoder_blocks: tuple[int, int] = (2, 4)
    decoder_blocks: tuple[int, int] = (4, 2)
    latent_dim: int = 128
    num_quantizers: int = 12
    codebook_size: int = 1024
    codebook_dim: int = 8
    quantizer_dropout: float = 0.5
    dead_code_threshold: float = 0.2

    def __post_init__(self) -> None:
        if self.n_fft < self.hop_length or self.n_fft % self.hop_length:
            raise ConfigError(f"n_fft ({self.n_fft}) must be a multiple of hop_length ({self.hop_length})")
        if self.analysis_n_fft < self.hop_length:
            raise ConfigError(f"analysis_n_fft ({self.analysis_n_fft}) must be >= hop_length")
        if self.downsample < 1:
            raise ConfigError(f"downsample must be >= 1, got {self.downsample}")


class CausalISTFT(nn.Module):
    """Inverse STFT by weighted overlap-add of causally aligned frames, offline or chunk by chunk.

    Frame f is placed on samples ``[(f + 1) * hop - n_fft, (f + 1) * hop)`` (the alignment of the
    causal analysis); the first ``n_fft - hop`` samples (negative time) are dropped. Samples are
    divided by the steady-state squared-window envelope (periodic with period hop), so every sample
    but the last ``n_fft - hop`` (which miss frames that never come) is the exact weighted OLA.

    Args:
        n_fft: frame size (a multiple of ``hop_length``).
        hop_length: frame shift in samples.

    Shapes:
        real, imag [B, F, N] -> audio [B, N * hop_length].

    Example:
        >>> istft = CausalISTFT(64, 16)
        >>> real, imag = torch.randn(1, 33, 10), torch.randn(1, 33, 10)
        >>> head, tail = istft.step(real[..., :4], imag[..., :4], istft.initial_state(1))
        >>> rest, tail = istft.step(real[..., 4:], imag[..., 4:], tail)
        >>> chunked = torch.cat([head, rest, istft.flush(tail)], -1)[:, 48:]
        >>> bool(torch.allclose(chunked, istft(real, imag), atol=1e-5)), chunked.shape
        (True, torch.Size([1, 160]))
    """

    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        if n_fft % hop_length:
            raise ConfigError(f"n_fft ({n_fft}) must be a multiple of hop_length ({hop_length})")
        self.n_fft, self.hop_length = n_fft, hop_length
        self.tail_length = n_fft - hop_length
        window = padded_window(n_fft, n_fft).astype(np.float64)
        envelope = (window**2).reshape(n_fft // hop_length, hop_length).sum(axis=0)  # [hop]
        self.register_buffer("window", torch.from_numpy(window.astype(np.float32)), persistent=False)
        self.register_buffer("envelope", torch.from_numpy(envelope.astype(np.float32)), persistent=False)

    def initial_state(self, batch_size: int, device: torch.device | None = None) -> Tensor:
        """Zero overlap-add tail [B, n_fft - hop] (not yet normalised)."""
        return torch.zeros(batch_size, self.tail_length, device=device or self.window.device)

    def step(self, real: Tensor, imag: Tensor, tail: Tensor) -> tuple[Tensor, Tensor]:
        """Frames [B, F, n] -> (final samples [B, n * hop], new tail [B, n_fft - hop]).

        The returned samples start ``n_fft - hop`` samples before the first frame's hop (on the
        first call these are negative time, which the caller drops).
        """
        num_frames = real.shape[-1]
        frames = torch.fft.irfft(torch.complex(real.float(), imag.float()), n=self.n_fft, dim=1)
        frames = frames * self.window[:, None]  # [B, n_fft, n]
        summed = F.fold(
            frames,
            output_size=(1, (num_frames - 1) * self.hop_length + self.n_fft),
            kernel_size=(1, self.n_fft),
            stride=(1, self.hop_length),
        )[:, 0, 0]  # [B, (n - 1) * hop + n_fft]
        summed = torch.cat([summed[:, : self.tail_length] + tail, summed[:, self.tail_length :]], dim=-1)
        out, new_tail = summed[:, : num_frames * self.hop_length], summed[:, num_frames * self.hop_length :]
        return out / self.envelope.repeat(num_frames), new_tail

    def flush(self, tail: Tensor) -> Tensor:
        """The last ``n_fft - hop`` samples [B, n_fft - hop], missing the frames after the end."""
        return tail / self.envelope.repeat(self.tail_length // self.hop_length)

    def forward(self, real: Tensor, imag: Tensor) -> Tensor:
        out, tail = self.step(real, imag, self.initial_state(real.shape[0], real.device))
        return torch.cat([out, self.flush(tail)], dim=-1)[:, self.tail_length :]


def _convnext(count: int, dim: int, kernel_size: int, mlp_ratio: float) -> list[nn.Module]:
    return [ConvNeXtBlock(dim, kernel_size, mlp_ratio, causal=True) for _ in range(count)]


class CausalSpectralEncoder(StreamingSequential):
    """Causal log|STFT| [B, F, N] -> latent [B, latent_dim, N / downsample] (ConvNeXt at 2 rates).

    Args:
        num_bins: F, input bins.
        dim: channel width C.
        latent_dim: D, output channels.
        blocks: ConvNeXt blocks at the frame rate and at the token rate.
        downsample: stride of the causal conv between the two rates.
        kernel_size, mlp_ratio: ConvNeXt settings.

    Example:
        >>> enc = CausalSpectralEncoder(33, 8, 4, blocks=(1, 1), downsample=2)
        >>> enc(torch.randn(1, 33, 10)).shape
        torch.Size([1, 4, 5])
    """

    def __init__(
        self,
        num_bins: int,
        dim: int,
        latent_dim: int,
        blocks: tuple[int, int],
        downsample: int,
        kernel_size: int = 7,
        mlp_ratio: float = 3.0,
    ) -> None:
        # Kernel 3 input conv: with F input channels a wide one costs more than a ConvNeXt block.
        super().__init__(
            [
                PaddedConv1d(num_bins, dim, 3, causal=True),
                *_convnext(blocks[0], dim, kernel_size, mlp_ratio),
                PaddedConv1d(dim, dim, 2 * downsample, stride=downsample, causal=True),
                *_convnext(blocks[1], dim, kernel_size, mlp_ratio),
                ChannelLayerNorm(dim),
                PaddedConv1d(dim, latent_dim, 1, causal=True),
            ],
            causal=True,
        )


class CausalSpectralDecoder(StreamingSequential):
    """Causal latent [B, latent_dim, M] -> log-magnitude and phase stacked [B, 2F, M * upsample].

    Args:
        latent_dim: D, input channels.
        dim: channel width C.
        num_bins: F, output bins (each of log-magnitude and phase).
        blocks: ConvNeXt blocks at the token rate and at the frame rate.
        upsample: factor of the right-trimmed transposed conv between the two rates.
        kernel_size, mlp_ratio: ConvNeXt settings.

    Example:
        >>> dec = CausalSpectralDecoder(4, 8, 33, blocks=(1, 1), upsample=2)
        >>> dec(torch.randn(1, 4, 5)).shape
        torch.Size([1, 66, 10])
    """

    def __init__(
        self,
        latent_dim: int,
        dim: int,
        num_bins: int,
        blocks: tuple[int, int],
        upsample: int,
        kernel_size: int = 7,
        mlp_ratio: float = 3.0,
    ) -> None:
        super().__init__(
            [
                PaddedConv1d(latent_dim, dim, kernel_size, causal=True),
                *_convnext(blocks[0], dim, kernel_size, mlp_ratio),
                PaddedConvTranspose1d(dim, dim, 2 * upsample, upsample, causal=True),
                *_convnext(blocks[1], dim, kernel_size, mlp_ratio),
                ChannelLayerNorm(dim),
                PaddedConv1d(dim, 2 * num_bins, 1, causal=True),
            ],
            causal=True,
        )


def spectrum_from_head(out: Tensor) -> tuple[Tensor, Tensor]:
    """Decoder output [B, 2F, N] (log-magnitude, then phase) -> (real, imag) [B, F, N] in float32.

    The log-magnitude is clamped at ``LOG_MAGNITUDE_CEILING`` so an untrained network cannot
    overflow ``exp``.
    """
    num_bins = out.shape[1] // 2
    magnitude = torch.exp(out[:, :num_bins].float().clamp(max=LOG_MAGNITUDE_CEILING))
    phase = out[:, num_bins:].float()
    return magnitude * torch.cos(phase), magnitude * torch.sin(phase)


class CausalRVQCodec(nn.Module):
    """Causal frame-rate residual-VQ speech codec that streams with 30 ms algorithmic latency.

    Shapes: ``encode_codes`` audio [B, T] -> codes [B, K, ceil(T / hop_length)] (zeros pad the end);
    ``decode_codes`` codes [B, K, M] -> audio [B, M * hop_length]; ``hop_length`` is the token hop
    (STFT hop x downsample). Streaming: :mod:`speechkit.codec.streaming`.

    Example:
        >>> config = CausalRVQCodecConfig(dim=32, latent_dim=16, num_quantizers=3, codebook_size=16,
        ...                               encoder_blocks=(1, 1), decoder_blocks=(1, 1))
        >>> model = CausalRVQCodec(config).eval()
        >>> codes = model.encode_codes(torch.randn(1, 3200), num_codebooks=2)
        >>> codes.shape, model.decode_codes(codes).shape, model.algorithmic_latency_ms
        (torch.Size([1, 2, 10]), torch.Size([1, 3200]), 30.0)
    """

    config_class = CausalRVQCodecConfig

    def __init__(self, config: CausalRVQCodecConfig) -> None:
        super().__init__()
        self.config = config
        self.sample_rate = config.sample_rate
        self.stft_hop_length = config.hop_length
        self.hop_length = config.hop_length * config.downsample
        self.frame_rate = config.sample_rate / self.hop_length
        self.codebook_sizes = (config.codebook_size,) * config.num_quantizers
        self.analysis_context = config.analysis_n_fft - config.hop_length  # past samples per frame
        self.stft = STFT(config.analysis_n_fft, config.hop_length, padding="none", double_precision=False)
        self.istft = CausalISTFT(config.n_fft, config.hop_length)
        num_bins = config.n_fft // 2 + 1
        self.encoder = CausalSpectralEncoder(
            config.analysis_n_fft // 2 + 1,
            config.dim,
            config.latent_dim,
            config.encoder_blocks,
            config.downsample,
            config.kernel_size,
            config.mlp_ratio,
        )
        self.quantizer = ResidualVQ(
            dim=config.latent_dim,
            num_quantizers=config.num_quantizers,
            codebook_size=config.codebook_size,
            quantizer_dropout=config.quantizer_dropout,
            codebook_dim=config.codebook_dim,
            l2_normalize=True,
            # As RVQCodec: few assignments per code per batch, so restart only codes used 5x less
            # than average.
            threshold_ema_dead_code=config.dead_code_threshold,
        )
        self.decoder = CausalSpectralDecoder(
            config.latent_dim,
            config.dim,
            num_bins,
            config.decoder_blocks,
            config.downsample,
            config.kernel_size,
            config.mlp_ratio,
        )

    @property
    def algorithmic_latency_samples(self) -> int:
        """L: output sample t is final once input samples ``0 .. t + L - 1`` have been pushed.

        Token m needs input up to ``(m + 1) * hop_length`` (no look-ahead); output sample t needs
        synthesis frames up to ``floor((t + n_fft) / stft_hop) - 1`` (overlap-add) and frame j needs
        token ``j // downsample``. The worst t over one token period gives L.
        """
        hop, n_fft, down = self.stft_hop_length, self.config.n_fft, self.config.downsample
        return max(
            ((t + n_fft) // hop - 1) // down * self.hop_length + self.hop_length - t
            for t in range(self.hop_length)
        )

    @property
    def algorithmic_latency_ms(self) -> float:
        """:attr:`algorithmic_latency_samples` in milliseconds (30.0 with the defaults)."""
        return 1000.0 * self.algorithmic_latency_samples / self.sample_rate

    def log_magnitude(self, wav: Tensor) -> Tensor:
        """log|STFT| [B, F, N] of audio [B, analysis_context + N * stft_hop] (context already on)."""
        real, imag = self.stft(wav)
        return torch.log(torch.sqrt(real**2 + imag**2).clamp_min(LOG_MAGNITUDE_FLOOR))

    def analyse(self, wav: Tensor) -> Tensor:
        """Causal log|STFT| [B, F, T / stft_hop] of audio [B, T]: zeros only on the left."""
        return self.log_magnitude(F.pad(wav.float(), (self.analysis_context, 0)))

    def synthesise(self, latent: Tensor) -> Tensor:
        """Quantized latent [B, D, M] -> audio [B, M * hop_length]."""
        return self.istft(*spectrum_from_head(self.decoder(latent)))

    def _pad(self, wav: Tensor) -> Tensor:
        return F.pad(wav, (0, (-wav.shape[-1]) % self.hop_length))

    def forward(self, wav: Tensor, num_codebooks: int | None = None) -> CodecForwardOutput:
        """Training pass on audio [B, T] (T a multiple of hop_length): encode, quantize, decode."""
        latent = self.encoder(self.analyse(wav))
        quantized = self.quantizer(latent, num_codebooks)
        return CodecForwardOutput(self.synthesise(quantized.quantized), quantized)

    def encode_codes(self, wav: Tensor, num_codebooks: int | None = None) -> Tensor:
        return self.quantizer.encode(self.encoder(self.analyse(self._pad(wav))), num_codebooks)

    def decode_codes(self, codes: Tensor) -> Tensor:
        return self.synthesise(self.quantizer.decode(codes))

    def task_api(self) -> Codec:
        return Codec(self)
