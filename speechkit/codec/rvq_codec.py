"""RVQ codec (EnCodec/DAC family) built for CPU compute: all heavy work at the frame rate.

A sample-rate conv codec spends most of its time in convolutions running at 8-16 kHz; this one
never does. Audio is analysed with an STFT (100 Hz frames), ConvNeXt blocks run at 100 Hz and at the
50 Hz token rate, a residual VQ with quantizer dropout makes the tokens, and the decoder predicts a
log-magnitude and a phase per 100 Hz frame which an inverse STFT turns into samples (the Vocos head,
Siuzdak 2023, section 3). One model serves 0.5 to 6 kbps: the first n of 12 codebooks of 1024
codes at 50 Hz give 500 * n bit/s.

::

    audio [B, T] ─STFT─► log|X| [B, F, T/160] ─conv─► ConvNeXt x e0 (100 Hz) ─stride 2─►
    ConvNeXt x e1 (50 Hz) ─► latent [B, D, T/320] ─RVQ─► codes [B, K, T/320]
    codes ─► ConvNeXt x d0 (50 Hz) ─upsample 2─► ConvNeXt x d1 (100 Hz) ─► log-mag, phase ─ISTFT─► audio
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from speechkit.codec.api import Codec, CodecForwardOutput
from speechkit.codec.spectral_head import LOG_MAGNITUDE_FLOOR, spectrum_to_audio
from speechkit.config import ModelConfig
from speechkit.features import ISTFT, STFT
from speechkit.nn.conv import ConvNeXtBlock, PaddedConv1d, PaddedConvTranspose1d
from speechkit.tokenizers.residual_vq import ResidualVQ


@dataclass(frozen=True, kw_only=True)
class RVQCodecConfig(ModelConfig):
    """Config of :class:`RVQCodec`. Token rate = sample_rate / (hop_length * downsample)."""

    KIND = "rvq_codec"
    sample_rate: int = 16000
    n_fft: int = 640
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
    causal: bool = False


def _blocks(count: int, dim: int, config: RVQCodecConfig) -> nn.Sequential:
    return nn.Sequential(
        *[
            ConvNeXtBlock(dim, config.kernel_size, config.mlp_ratio, causal=config.causal)
            for _ in range(count)
        ]
    )


class SpectralEncoder(nn.Module):
    """log|STFT| [B, F, N] -> latent [B, latent_dim, N / downsample] with ConvNeXt blocks."""

    def __init__(self, config: RVQCodecConfig) -> None:
        super().__init__()
        num_bins = config.n_fft // 2 + 1
        # Kernel 3, not kernel_size: with F = 321 input channels a wide input conv costs more than
        # a ConvNeXt block, and the blocks after it provide the temporal context.
        self.input = PaddedConv1d(num_bins, config.dim, 3, causal=config.causal)
        self.high_rate = _blocks(config.encoder_blocks[0], config.dim, config)
        self.down = PaddedConv1d(
            config.dim, config.dim, 2 * config.downsample, stride=config.downsample, causal=config.causal
        )
        self.low_rate = _blocks(config.encoder_blocks[1], config.dim, config)
        self.norm = nn.LayerNorm(config.dim)
        self.output = nn.Linear(config.dim, config.latent_dim)

    def forward(self, log_magnitude: Tensor) -> Tensor:
        x = self.low_rate(self.down(self.high_rate(self.input(log_magnitude))))
        return self.output(self.norm(x.transpose(1, 2))).transpose(1, 2)


class SpectralDecoder(nn.Module):
    """latent [B, latent_dim, M] -> (log-magnitude, phase), each [B, F, M * downsample]."""

    def __init__(self, config: RVQCodecConfig) -> None:
        super().__init__()
        self.num_bins = config.n_fft // 2 + 1
        self.input = PaddedConv1d(config.latent_dim, config.dim, config.kernel_size, causal=config.causal)
        self.low_rate = _blocks(config.decoder_blocks[0], config.dim, config)
        self.up = PaddedConvTranspose1d(
            config.dim, config.dim, 2 * config.downsample, stride=config.downsample, causal=config.causal
        )
        self.high_rate = _blocks(config.decoder_blocks[1], config.dim, config)
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, 2 * self.num_bins)

    def forward(self, latent: Tensor) -> tuple[Tensor, Tensor]:
        x = self.high_rate(self.up(self.low_rate(self.input(latent))))
        out = self.head(self.norm(x.transpose(1, 2))).transpose(1, 2)  # [B, 2F, N]
        return out[:, : self.num_bins], out[:, self.num_bins :]


class RVQCodec(nn.Module):
    """Frame-rate residual-VQ speech codec with an inverse-STFT waveform head.

    Shapes: ``encode_codes`` audio [B, T] (T a multiple of ``hop_length``) -> codes [B, K, T / hop];
    ``decode_codes`` codes [B, K, M] -> audio [B, M * hop_length]; here ``hop_length`` is the token
    hop (STFT hop x downsample).

    Example:
        >>> config = RVQCodecConfig(dim=32, latent_dim=16, num_quantizers=3, codebook_size=16,
        ...                         encoder_blocks=(1, 1), decoder_blocks=(1, 1))
        >>> model = RVQCodec(config).eval()
        >>> codes = model.encode_codes(torch.randn(1, 3200), num_codebooks=2)
        >>> codes.shape, model.decode_codes(codes).shape
        (torch.Size([1, 2, 10]), torch.Size([1, 3200]))
    """

    config_class = RVQCodecConfig

    def __init__(self, config: RVQCodecConfig) -> None:
        super().__init__()
        self.config = config
        self.sample_rate = config.sample_rate
        self.hop_length = config.hop_length * config.downsample
        self.frame_rate = config.sample_rate / self.hop_length
        self.codebook_sizes = (config.codebook_size,) * config.num_quantizers
        pad_mode = "constant" if config.causal else "reflect"
        self.stft = STFT(
            config.n_fft, config.hop_length, padding="same", pad_mode=pad_mode, double_precision=False
        )
        self.istft = ISTFT(config.n_fft, config.hop_length, padding="same")
        self.encoder = SpectralEncoder(config)
        self.quantizer = ResidualVQ(
            dim=config.latent_dim,
            num_quantizers=config.num_quantizers,
            codebook_size=config.codebook_size,
            quantizer_dropout=config.quantizer_dropout,
            codebook_dim=config.codebook_dim,
            l2_normalize=True,
            # A batch of 16 one-second crops holds 800 latent frames for 1024 codes, so a code in use
            # averages < 1 assignment per batch: restart only codes used 5x less than average.
            threshold_ema_dead_code=config.dead_code_threshold,
        )
        self.decoder = SpectralDecoder(config)

    def analyse(self, wav: Tensor) -> Tensor:
        """log|STFT| [B, F, T / stft_hop] of audio [B, T]."""
        real, imag = self.stft(wav)
        return torch.log(torch.sqrt(real**2 + imag**2).clamp_min(LOG_MAGNITUDE_FLOOR))

    def synthesise(self, latent: Tensor) -> Tensor:
        """Quantized latent [B, D, M] -> audio [B, M * hop_length]."""
        return spectrum_to_audio(*self.decoder(latent), self.istft)

    def forward(self, wav: Tensor, num_codebooks: int | None = None) -> CodecForwardOutput:
        """Training pass: encode, quantize (with quantizer dropout in training), decode."""
        latent = self.encoder(self.analyse(wav))
        quantized = self.quantizer(latent, num_codebooks)
        return CodecForwardOutput(self.synthesise(quantized.quantized), quantized)

    def encode_codes(self, wav: Tensor, num_codebooks: int | None = None) -> Tensor:
        return self.quantizer.encode(self.encoder(self.analyse(wav)), num_codebooks)

    def decode_codes(self, codes: Tensor) -> Tensor:
        return self.synthesise(self.quantizer.decode(codes))

    def task_api(self) -> Codec:
        return Codec(self)
