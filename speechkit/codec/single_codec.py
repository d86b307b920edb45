"""Single-Codec: one codebook, one token sequence, plus a global embedding sent once per utterance.

After Li et al. 2024, "Single-Codec: Single-Codebook Speech Codec towards High-Performance Speech
Generation" (arXiv 2406.07422), section 2, adapted to CPU compute the way the RVQ codec is: the
paper reconstructs mel spectrograms and vocodes them with BigVGAN; here the decoder ends in the
Vocos inverse-STFT head (:mod:`speechkit.codec.spectral_head`), so no layer runs at the sample
rate. At the default size 4096 codes at 25 Hz give 12 x 25 = 300 bit/s (the paper: 8192 codes at
23.4 Hz, 304 bit/s), plus 4 x 10 global bits per utterance (8 bit/s over 5 s).

What follows the paper:

* disentangled VQ-VAE: a reference encoder pools the utterance's mel into a time-invariant
  embedding that conditions the decoder (:mod:`speechkit.codec.global_embedding`);
* BLSTM context modelling before the quantizer and after it (:class:`~speechkit.nn.BLSTMContext`);
* hybrid sampling (conv + pooling down, transposed conv + repetition up) and the resampling
  module in the encoder (:mod:`speechkit.codec.hybrid_sampling`).

What is ours: the global embedding is quantized by a small residual VQ (G codes) so that the codec
is a real codec (the paper leaves it continuous); during training the reference is a random crop
of the clip, so the embedding cannot copy the frames it will be decoded with.

::

    audio [B, T] ─log-mel─► [B, 80, T/160] ─conv─► ConvNeXt x e0 (100 Hz) ─hybrid down 4─►
    ConvNeXt x e1 (25 Hz) ─► resampling (12.5 Hz detour) ─► BLSTM ─► VQ (1 x 4096) ─► codes [B, 1, T/640]
    mel ─► reference encoder ─► global [B, 128] ─RVQ (4 x 1024)─► global codes [B, 4]
    codes ─► conv ─► BLSTM ─► AdaLN-ConvNeXt x d0 (25 Hz) ─hybrid up 4─► AdaLN-ConvNeXt x d1 (100 Hz)
        ─► log-mag, phase ─ISTFT─► audio          (every AdaLN block conditioned on the global vector)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from speechkit.codec.api import Codec, CodecForwardOutput
from speechkit.codec.global_embedding import ConditionedStack, ReferenceEncoder
from speechkit.codec.hybrid_sampling import HybridDownsample, HybridUpsample, ResamplingModule
from speechkit.codec.spectral_head import ISTFTHead
from speechkit.config import ModelConfig
from speechkit.errors import ConfigError
from speechkit.features import LogMelSpectrogram
from speechkit.nn.conv import ConvNeXtBlock, PaddedConv1d
from speechkit.nn.recurrent import BLSTMContext
from speechkit.tokenizers.residual_vq import ResidualQuantizerOutput, ResidualVQ
from speechkit.tokenizers.vector_quantizer import VectorQuantizer


@dataclass(frozen=True, kw_only=True)
class SingleCodecConfig(ModelConfig):
    """Config of :class:`SingleCodec`. Token rate = sample_rate / (hop_length * downsample)."""

    KIND = "single_codec"
    sample_rate: int = 16000
    n_fft: int = 640
    hop_length: int = 160
    n_mels: int = 80
    downsample: int = 4
    dim: int = 256
    mlp_ratio: float = 3.0
    kernel_size: int = 7
    encoder_blocks: tuple[int, int] = (2, 2)  # ConvNeXt blocks at the mel rate, at the token rate
    resample_factor: int = 2
    resample_blocks: int = 1
    lstm_hidden_size: int = 128
    encoder_lstm_layers: int = 1
    decoder_lstm_layers: int = 1
    decoder_blocks: tuple[int, int] = (3, 2)  # conditioned blocks at the token rate, at the mel rate
    codebook_size: int = 4096
    codebook_dim: int = 8
    dead_code_threshold: float = 0.05
    reference_channels: int = 128
    reference_blocks: int = 2
    global_dim: int = 128
    global_num_codes: int = 4
    global_codebook_size: int = 1024
    global_codebook_dim: int = 8
    global_dead_code_threshold: float = 0.002
    reference_min_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.downsample < 1 or self.resample_factor < 1:
            raise ConfigError("downsample and resample_factor must be >= 1")
        if (self.n_fft - self.hop_length) % 2:
            raise ConfigError(f"n_fft - hop_length must be even for 'same' STFT padding, got {self.n_fft}")
        if not 0.0 < self.reference_min_fraction <= 1.0:
            raise ConfigError(f"reference_min_fraction must be in (0, 1], got {self.reference_min_fraction}")
        if self.global_num_codes < 1:
            raise ConfigError(f"global_num_codes must be >= 1, got {self.global_num_codes}")


class SingleCodecEncoder(nn.Module):
    """Log-mel [B, n_mels, N] -> latent [B, dim, ceil(N / downsample)] for the one quantizer."""

    def __init__(self, config: SingleCodecConfig) -> None:
        super().__init__()
        dim, k, ratio = config.dim, config.kernel_size, config.mlp_ratio
        self.input = PaddedConv1d(config.n_mels, dim, 3)
        self.high_rate = _blocks(config.encoder_blocks[0], dim, k, ratio)
        self.down = HybridDownsample(dim, dim, config.downsample)
        self.low_rate = _blocks(config.encoder_blocks[1], dim, k, ratio)
        self.resample = ResamplingModule(dim, config.resample_factor, config.resample_blocks, k, ratio)
        self.context = _lstm_stack(dim, config.lstm_hidden_size, config.encoder_lstm_layers)
        self.norm = nn.LayerNorm(dim)

    def forward(self, mel: Tensor) -> Tensor:
        x = self.low_rate(self.down(self.high_rate(self.input(mel))))
        x = self.context(self.resample(x))
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class SingleCodecDecoder(nn.Module):
    """Quantized latent [B, dim, M] + global [B, global_dim] -> audio [B, M * downsample * hop]."""

    def __init__(self, config: SingleCodecConfig) -> None:
        super().__init__()
        dim, k, ratio, cond = config.dim, config.kernel_size, config.mlp_ratio, config.global_dim
        self.input = PaddedConv1d(dim, dim, 3)
        self.context = _lstm_stack(dim, config.lstm_hidden_size, config.decoder_lstm_layers)
        self.low_rate = ConditionedStack(config.decoder_blocks[0], dim, cond, k, ratio)
        self.up = HybridUpsample(dim, dim, config.downsample)
        self.high_rate = ConditionedStack(config.decoder_blocks[1], dim, cond, k, ratio)
        self.head = ISTFTHead(dim, config.n_fft, config.hop_length)

    def forward(self, latent: Tensor, global_embedding: Tensor) -> Tensor:
        x = self.low_rate(self.context(self.input(latent)), global_embedding)
        return self.head(self.high_rate(self.up(x), global_embedding))


def _blocks(count: int, dim: int, kernel_size: int, mlp_ratio: float) -> nn.Sequential:
    return nn.Sequential(*[ConvNeXtBlock(dim, kernel_size, mlp_ratio) for _ in range(count)])


def _lstm_stack(dim: int, hidden_size: int, num_layers: int) -> nn.Module:
    return BLSTMContext(dim, num_layers, hidden_size) if num_layers > 0 else nn.Identity()


class SingleCodec(nn.Module):
    """Single-codebook speech codec with a quantized global (per-utterance) embedding.

    Shapes: ``encode_codes`` audio [B, T] (T a multiple of ``hop_length``) -> codes [B, 1, T / hop];
    ``encode_global`` audio [B, T] -> global codes [B, G]; ``decode_codes`` codes [B, 1, M] and
    global codes [B, G] -> audio [B, M * hop_length]. ``hop_length`` is the token hop (mel hop x
    downsample).

    Example:
        >>> config = SingleCodecConfig(dim=32, encoder_blocks=(1, 1), decoder_blocks=(1, 1),
        ...     codebook_size=64, reference_channels=16, reference_blocks=1, global_dim=16,
        ...     global_num_codes=2, global_codebook_size=16, lstm_hidden_size=16)
        >>> model = SingleCodec(config).eval()
        >>> wav = torch.randn(1, 6400)
        >>> codes, global_codes = model.encode_codes(wav), model.encode_global(wav)
        >>> codes.shape, global_codes.shape, model.decode_codes(codes, global_codes).shape
        (torch.Size([1, 1, 10]), torch.Size([1, 2]), torch.Size([1, 6400]))
    """

    config_class = SingleCodecConfig

    def __init__(self, config: SingleCodecConfig) -> None:
        super().__init__()
        self.config = config
        self.sample_rate = config.sample_rate
        self.hop_length = config.hop_length * config.downsample
        self.frame_rate = config.sample_rate / self.hop_length
        self.codebook_sizes = (config.codebook_size,)
        self.global_codebook_sizes = (config.global_codebook_size,) * config.global_num_codes
        self.mel = LogMelSpectrogram(
            config.sample_rate,
            config.n_fft,
            config.hop_length,
            config.n_mels,
            padding="same",
            double_precision=False,
        )
        self.encoder = SingleCodecEncoder(config)
        self.quantizer = VectorQuantizer(
            config.dim,
            config.codebook_size,
            codebook_dim=config.codebook_dim,
            l2_normalize=True,
            threshold_ema_dead_code=config.dead_code_threshold,
        )
        self.reference_encoder = ReferenceEncoder(
            config.n_mels, config.reference_channels, config.reference_blocks, config.global_dim
        )
        # One vector per clip: a batch cannot seed 1024 codes by k-means, so the codes start as
        # random unit vectors and rarely used ones are restarted from batch vectors.
        self.global_quantizer = ResidualVQ(
            config.global_dim,
            config.global_num_codes,
            config.global_codebook_size,
            codebook_dim=config.global_codebook_dim,
            l2_normalize=True,
            kmeans_init=False,
            threshold_ema_dead_code=config.global_dead_code_threshold,
        )
        self.decoder = SingleCodecDecoder(config)

    def forward(self, wav: Tensor) -> CodecForwardOutput:
        """Training pass: encode, quantize tokens and global embedding, decode.

        Args:
            wav: [B, T] audio, T a multiple of ``hop_length``.

        Returns:
            CodecForwardOutput: audio [B, T]; ``quantizer`` holds the frame codebook's statistics
            (one codebook) and the sum of frame and global VQ losses; ``extra_metrics`` the global
            codes' mean perplexity and minimum usage.
        """
        mel = self.mel(wav)
        frames = self.quantizer(self.encoder(mel))
        reference = self._reference_crop(mel) if self.training else mel
        global_out = self.global_quantizer(self.reference_encoder(reference).unsqueeze(-1))
        audio = self.decoder(frames.quantized, global_out.quantized.squeeze(-1))
        quantizer = ResidualQuantizerOutput(
            quantized=frames.quantized,
            codes=frames.codes.unsqueeze(1),
            commitment_loss=frames.commitment_loss + global_out.commitment_loss,
            codebook_loss=frames.codebook_loss + global_out.codebook_loss,
            perplexity=frames.perplexity.unsqueeze(0),
            usage=frames.usage.unsqueeze(0),
            num_stages=torch.ones(wav.shape[0], dtype=torch.long, device=wav.device),
        )
        extra = {
            "global_perplexity": global_out.perplexity.mean(),
            "global_usage_min": global_out.usage.min(),
        }
        return CodecForwardOutput(audio, quantizer, extra)

    def encode_codes(self, wav: Tensor, num_codebooks: int | None = None) -> Tensor:
        """Audio [B, T] -> codes [B, 1, T / hop_length] (``num_codebooks`` may only be 1)."""
        if num_codebooks not in (None, 1):
            raise ValueError(f"a single-codebook codec has 1 codebook, got num_codebooks={num_codebooks}")
        return self.quantizer.encode(self.encoder(self.mel(wav))).unsqueeze(1)

    @torch.no_grad()
    def encode_global(self, wav: Tensor) -> Tensor:
        """Audio [B, T] (any length of at least one mel hop) -> global codes [B, G] int64."""
        continuous = self.global_embedding(wav, quantized=False)
        return self.global_quantizer.encode(continuous.unsqueeze(-1)).squeeze(-1)

    def global_embedding(self, wav: Tensor, quantized: bool = True) -> Tensor:
        """The time-invariant embedding [B, global_dim] of audio [B, T] (e.g. a TTS prompt clip).

        Args:
            wav: [B, T] audio at ``sample_rate``.
            quantized: return what the decoder sees (the global codes' embedding) rather than the
                reference encoder's continuous output.
        """
        continuous = self.reference_encoder(self.mel(wav))
        if not quantized:
            return continuous
        codes = self.global_quantizer.encode(continuous.unsqueeze(-1))  # [B, G, 1]
        return self.global_quantizer.decode(codes).squeeze(-1)

    def decode_codes(
        self, codes: Tensor, global_codes: Tensor | None = None, global_embedding: Tensor | None = None
    ) -> Tensor:
        """Codes [B, 1, M] and the global codes [B, G] (or an embedding [B, global_dim], e.g. from
        :meth:`global_embedding` of a prompt) -> audio [B, M * hop_length]."""
        if codes.ndim != 3 or codes.shape[1] != 1:
            raise ValueError(f"decode_codes expects codes [B, 1, M], got {tuple(codes.shape)}")
        if (global_codes is None) == (global_embedding is None):
            raise ValueError(
                "decode_codes needs exactly one of global_codes [B, G] or global_embedding [B, D]"
            )
        if global_embedding is None:
            global_embedding = self.global_quantizer.decode(global_codes.unsqueeze(-1)).squeeze(-1)
        return self.decoder(self.quantizer.decode(codes[:, 0]), global_embedding)

    def task_api(self) -> Codec:
        return Codec(self)

    def _reference_crop(self, mel: Tensor) -> Tensor:
        """A random contiguous crop of the mel frames [B, n_mels, N] (the same one for the batch)."""
        frames = mel.shape[-1]
        shortest = max(1, math.ceil(self.config.reference_min_fraction * frames))
        if shortest >= frames:
            return mel
        length = int(torch.randint(shortest, frames + 1, ()))
        start = int(torch.randint(0, frames - length + 1, ()))
        return mel[..., start : start + length]
