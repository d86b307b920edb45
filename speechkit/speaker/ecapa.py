"""ECAPA-TDNN speaker encoder (Desplanques et al. 2020) trained with AAM-softmax.

    audio 16 kHz ─► log-mel 80 @ 100 Hz (optionally VTLP-warped) ─► mean-normalised
        ─► TDNN k5 ─► 3 x SE-Res2Net (k3, dilation 2/3/4) ─► multi-layer feature aggregation (concat)
        ─► TDNN 1x1 ─► attentive statistics pooling (channel-dependent, global context) ─► BN
        ─► linear ─► embedding (192) ─► [training] AAM-softmax over pseudo-speakers

The blocks are the shared ones of :mod:`speechkit.nn.res2net` (Single-Codec's global embedding uses
the same pooling). Channel width defaults to 256 (the paper's small model uses 512) so that training
fits two CPU cores; the recipe scales it by config.

Pseudo-speakers: a training speaker heard with its vocal tract scaled by ``alpha`` is a new
speaker. ``training_step`` accepts a per-item ``warp`` index into ``vtlp_factors``: the mel
filterbank is evaluated at ``alpha * f`` (vocal tract length perturbation, Jaitly & Hinton 2013),
which moves formants and harmonics together without changing tempo; the dataset also makes pseudo-
speakers by resampling (speed). Class ``k`` of the AAM head is one (speaker, shift) pair.

Scoring: embeddings are L2-normalised; the AAM head's class weights double as the cohort for
adaptive score normalisation (they are unit prototypes of the training pseudo-speakers), so AS-norm
needs no extra data at inference.

Example:
    >>> model = ECAPATDNN(ECAPAConfig(channels=32, embedding_dim=16, num_classes=4,
    ...                               attention_channels=8, se_channels=8, res2net_scale=4)).eval()
    >>> model.embed(torch.randn(2, 16000)).shape
    torch.Size([2, 16])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.config import ModelConfig
from speechkit.errors import ConfigError
from speechkit.features import STFT, mel_filterbank
from speechkit.nn.masks import lengths_to_padding_mask
from speechkit.nn.res2net import AttentiveStatisticsPooling, SERes2NetBlock, TDNNBlock


@dataclass(frozen=True, kw_only=True)
class ECAPAConfig(ModelConfig):
    """Config of :class:`ECAPATDNN`.

    Fields: front-end (``sample_rate``, ``n_fft``, ``hop_length``, ``n_mels``, ``vtlp_factors``:
    the warps ``training_step`` may apply, index 0 must be 1.0), network (``channels``,
    ``res2net_scale``, ``se_channels``, ``attention_channels``, ``embedding_dim``, ``dilations``),
    AAM-softmax (``num_classes``, ``aam_margin``, ``aam_scale``), scoring (``threshold``: decision
    threshold of :meth:`SpeakerEncoder.score` calibrated on the valid split, ``asnorm_top_k``: cohort
    size for AS-norm, 0 = raw cosine; ``cosine_threshold``: the raw-cosine EER threshold on the same
    trials, for comparisons that are plain cosines, such as diarization centroids).
    """

    KIND = "ecapa_tdnn"
    sample_rate: int = 16000
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 80
    vtlp_factors: tuple[float, ...] = (1.0, 0.87, 1.15)
    channels: int = 256
    res2net_scale: int = 8
    se_channels: int = 64
    attention_channels: int = 64
    embedding_dim: int = 192
    dilations: tuple[int, ...] = (2, 3, 4)
    num_classes: int = 1
    aam_margin: float = 0.2
    aam_scale: float = 30.0
    threshold: float = 0.5
    asnorm_top_k: int = 0
    cosine_threshold: float = 0.5

    def __post_init__(self) -> None:
        if not self.vtlp_factors or self.vtlp_factors[0] != 1.0:
            raise ConfigError("vtlp_factors must start with 1.0 (the unwarped front-end)")
        if self.channels % self.res2net_scale:
            raise ConfigError(
                f"channels {self.channels} must be divisible by res2net_scale {self.res2net_scale}"
            )
        if self.num_classes < 1:
            raise ConfigError("num_classes must be >= 1")


def warped_filterbank(sample_rate: int, n_fft: int, n_mels: int, alpha: float) -> np.ndarray:
    """Mel filterbank [n_mels, n_fft // 2 + 1] of a vocal tract scaled by ``alpha``.

    A voice whose spectrum is ``S(f / alpha)`` (formants ``alpha`` times higher) gives the same mel
    energies through this filterbank as ``S`` through the plain one evaluated at ``alpha * f``:
    each filter row is resampled along frequency.

    Example:
        >>> fb = warped_filterbank(16000, 400, 40, 1.0)
        >>> bool(np.allclose(fb, mel_filterbank(16000, 400, 40, 0.0, None)))
        True
    """
    plain = mel_filterbank(sample_rate, n_fft, n_mels, 0.0, None)
    if alpha == 1.0:
        return plain
    bins = np.arange(plain.shape[1], dtype=np.float64)
    return np.stack([np.interp(bins * alpha, bins, row, right=0.0) for row in plain]).astype(plain.dtype)


class SpeakerFrontend(nn.Module):
    """Log-mel features with optional per-item VTLP warps, mean-normalised over valid frames.

    Shapes: wav [B, T], lengths [B] samples or None, warp [B] indices or None
    -> features [B, n_mels, N], mask [B, N] (True = valid).
    """

    def __init__(self, config: ECAPAConfig) -> None:
        super().__init__()
        self.hop_length, self.half_window = config.hop_length, config.n_fft // 2
        self.stft = STFT(config.n_fft, config.hop_length, padding="center")
        banks = [
            warped_filterbank(config.sample_rate, config.n_fft, config.n_mels, a) for a in config.vtlp_factors
        ]
        self.register_buffer("filterbanks", torch.from_numpy(np.stack(banks)).float(), persistent=False)

    def forward(
        self, wav: Tensor, lengths: Tensor | None = None, warp: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        with torch.autocast(wav.device.type, enabled=False):
            real, imag = self.stft(wav.float())
            power = real.pow(2) + imag.pow(2)  # [B, F, N]
            if warp is None:
                mel = torch.matmul(self.filterbanks[0], power)
            else:
                mel = torch.bmm(self.filterbanks[warp], power)
            features = torch.log(mel.clamp(min=1e-6))
        frames = features.shape[-1]
        if lengths is None:
            lengths = torch.full((features.shape[0],), wav.shape[-1], device=features.device)
        # frames whose window runs past the end (reflect-padded alone, zero-padded in a batch) are
        # left out, so an item's embedding does not depend on what it was batched with
        valid = ((lengths - self.half_window) // self.hop_length + 1).clamp(min=1, max=frames)
        mask = lengths_to_padding_mask(valid, frames)
        weight = mask[:, None, :].to(features.dtype)
        mean = (features * weight).sum(-1, keepdim=True) / weight.sum(-1, keepdim=True).clamp(min=1.0)
        return (features - mean) * weight, mask


class ECAPATDNN(nn.Module):
    """ECAPA-TDNN speaker encoder with an AAM-softmax head over the training pseudo-speakers."""

    config_class = ECAPAConfig

    def __init__(self, config: ECAPAConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.frontend = SpeakerFrontend(config)
        self.input_layer = TDNNBlock(config.n_mels, c, kernel_size=5)
        self.blocks = nn.ModuleList(
            SERes2NetBlock(c, c, config.res2net_scale, config.se_channels, kernel_size=3, dilation=d)
            for d in config.dilations
        )
        aggregated = c * len(config.dilations)
        self.aggregation = TDNNBlock(aggregated, aggregated, kernel_size=1)
        self.pooling = AttentiveStatisticsPooling(aggregated, config.attention_channels)
        self.pool_norm = nn.BatchNorm1d(aggregated * 2)
        self.projection = nn.Linear(aggregated * 2, config.embedding_dim)
        self.classifier = nn.Parameter(torch.randn(config.num_classes, config.embedding_dim) * 0.01)

    def forward_features(self, features: Tensor, mask: Tensor) -> Tensor:
        """Embeddings [B, D] (not normalised) from normalised log-mel [B, n_mels, N] and mask [B, N]."""
        valid = mask[:, None, :].to(features.dtype)  # zero the padding after every layer, so a padded
        x = self.input_layer(features) * valid  # item sees the zeros an unpadded one gets from its convs
        outputs = []
        for block in self.blocks:
            x = block(x, mask) * valid
            outputs.append(x)
        x = self.aggregation(torch.cat(outputs, dim=1))
        return self.projection(self.pool_norm(self.pooling(x, mask)))

    def embed(self, wav: Tensor, lengths: Tensor | None = None) -> Tensor:
        """L2-normalised embeddings [B, D] of audio [B, T] (``lengths`` in samples for padded batches)."""
        features, mask = self.frontend(wav, lengths)
        return F.normalize(self.forward_features(features, mask).float(), dim=-1)

    def cohort(self) -> Tensor:
        """Unit-norm class prototypes [num_classes, D]: the AS-norm cohort."""
        return F.normalize(self.classifier.detach().float(), dim=-1)

    def aam_logits(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        """Scaled cosine logits [B, num_classes]; with ``labels`` the target gets the additive angular margin."""
        cosine = F.linear(
            F.normalize(embeddings.float(), dim=-1), F.normalize(self.classifier.float(), dim=-1)
        )
        if labels is None:
            return cosine * self.config.aam_scale
        cosine = cosine.clamp(-1 + 1e-7, 1 - 1e-7)
        margin = self.config.aam_margin
        target = torch.cos(torch.acos(cosine) + margin)
        # keep the target logit monotonic in the angle past pi - margin (the "easy margin" fallback)
        target = torch.where(
            cosine > np.cos(np.pi - margin), target, cosine - np.sin(np.pi - margin) * margin
        )
        one_hot = F.one_hot(labels, self.config.num_classes).to(cosine.dtype)
        return (one_hot * target + (1 - one_hot) * cosine) * self.config.aam_scale

    def training_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """AAM-softmax loss; ``batch``: ``wav`` [B, T], ``labels`` [B], optional ``warp`` [B]."""
        features, mask = self.frontend(batch["wav"], batch.get("wav_lengths"), batch.get("warp"))
        embeddings = self.forward_features(features, mask)
        logits = self.aam_logits(embeddings, batch["labels"])
        loss = F.cross_entropy(logits, batch["labels"])
        with torch.no_grad():
            plain = self.aam_logits(embeddings)
            accuracy = (plain.argmax(-1) == batch["labels"]).float().mean()
        return loss, {"aam": float(loss.detach()), "accuracy": float(accuracy)}

    def task_api(self):
        from speechkit.speaker.api import SpeakerEncoder

        return SpeakerEncoder(self)
