"""A demonstration codec: residual VQ over normalised log-mel frames, Griffin-Lim resynthesis.

It has no learned encoder or decoder: the shared :class:`~speechkit.tokenizers.ResidualVQ` is fitted
(k-means init + EMA) directly on log-mel frames of the offline speech corpus, and decoding inverts
the mel filterbank (pseudo-inverse) and recovers phase with fast Griffin-Lim. It exercises every
shared part end to end (features, quantizer, Tokens, checkpoints, registry, task API) and gives an
honest floor that the trained neural codecs must beat. Intelligible, but phasey: not for real use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from speechkit.codec.api import Codec
from speechkit.config import ModelConfig
from speechkit.features import ISTFT, STFT, LogMelSpectrogram, griffin_lim
from speechkit.tokenizers.residual_vq import ResidualVQ


@dataclass(frozen=True, kw_only=True)
class MelRVQCodecConfig(ModelConfig):
    """Config of :class:`MelRVQCodec` (frame rate = sample_rate / hop_length)."""

    KIND = "mel_rvq_codec"
    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 320
    n_mels: int = 80
    num_quantizers: int = 8
    codebook_size: int = 256
    griffin_lim_iters: int = 32


class MelRVQCodec(nn.Module):
    """Log-mel -> ResidualVQ codes -> log-mel -> Griffin-Lim audio.

    Shapes: ``encode_codes`` audio [B, T] (T a multiple of hop_length) -> codes [B, K, T / hop];
    ``decode_codes`` codes [B, K, N] -> audio [B, N * hop_length].

    Example:
        >>> model = MelRVQCodec(MelRVQCodecConfig(num_quantizers=2, codebook_size=16)).eval()
        >>> codes = model.encode_codes(torch.randn(1, 3200))
        >>> codes.shape, model.decode_codes(codes).shape
        (torch.Size([1, 2, 10]), torch.Size([1, 3200]))
    """

    config_class = MelRVQCodecConfig

    def __init__(self, config: MelRVQCodecConfig) -> None:
        super().__init__()
        self.config = config
        self.sample_rate, self.hop_length = config.sample_rate, config.hop_length
        self.frame_rate = config.sample_rate / config.hop_length
        self.codebook_sizes = (config.codebook_size,) * config.num_quantizers
        self.mel = LogMelSpectrogram(
            config.sample_rate, config.n_fft, config.hop_length, config.n_mels, power=1.0
        )
        self.stft = STFT(config.n_fft, config.hop_length)
        self.istft = ISTFT(config.n_fft, config.hop_length)
        self.register_buffer("feature_mean", torch.zeros(config.n_mels))
        self.register_buffer("feature_std", torch.ones(config.n_mels))
        self.quantizer = ResidualVQ(
            dim=config.n_mels,
            num_quantizers=config.num_quantizers,
            codebook_size=config.codebook_size,
            kmeans_init=True,
            threshold_ema_dead_code=2.0,
        )
        inverse = np.linalg.pinv(self.mel.filterbank.numpy().astype(np.float64))
        self.register_buffer(
            "inverse_filterbank", torch.from_numpy(inverse.astype(np.float32)), persistent=False
        )

    def features(self, wav: Tensor) -> Tensor:
        """Normalised log-mel [B, n_mels, T / hop] (the frame centred on the last sample is dropped)."""
        mel = self.mel(wav)[..., : wav.shape[-1] // self.hop_length]
        return (mel - self.feature_mean[:, None]) / self.feature_std[:, None]

    def encode_codes(self, wav: Tensor, num_codebooks: int | None = None) -> Tensor:
        return self.quantizer.encode(self.features(wav), num_codebooks)

    def decode_codes(self, codes: Tensor) -> Tensor:
        mel = self.quantizer.decode(codes) * self.feature_std[:, None] + self.feature_mean[:, None]
        mel = torch.cat([mel, mel[..., -1:]], dim=-1)  # frames N -> N + 1 so the ISTFT yields N * hop
        magnitude = torch.clamp(torch.matmul(self.inverse_filterbank, torch.exp(mel)), min=0.0)
        return griffin_lim(magnitude, self.stft, self.istft, self.config.griffin_lim_iters)

    def task_api(self) -> Codec:
        return Codec(self)
