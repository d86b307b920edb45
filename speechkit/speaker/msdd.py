"""Multi-scale diarization decoder (MSDD, Park et al. 2022) with dynamic per-step scale weights.

Given, at every base-scale step t, the embeddings of the K segments (one per scale) that cover it
and, for every speaker s found by clustering, the speaker's average embedding at each scale, MSDD
decides for each (s, t) whether s speaks, independently per speaker, so two speakers can both be
active (overlap):

    sims[s, k, t]  = cos(e[k, t], c[s, k])                                   per-scale similarity
    w[s, t, :]     = softmax_k(CNN_t([proj(e[k, t]), proj(c[s, k]), sims[s, k, t]]_k))  scale weights
    x[s, t]        = [w * sims[s], w * max_{s' != s} sims[s'], w]            own vs best rival
    p[s, t]        = sigmoid(Linear(BiLSTM_t(x[s])))                         speaker activity

The CNN (a 1-D conv over time) makes the weights dynamic: a step inside a long turn can trust the
1.5 s scale, a step near a speaker change the 0.5 s one. Weights are shared over speakers, so any
speaker count works. Inputs are unit-norm embeddings from :class:`~speechkit.speaker.ecapa.ECAPATDNN`.

Shapes: embeddings [B, K, T, D], centroids [B, S, K, D], speaker_mask [B, S] (True = real speaker)
-> probabilities [B, S, T] and scale weights [B, S, T, K].

Example:
    >>> model = MSDD(MSDDConfig(embedding_dim=8, proj_dim=4, cnn_channels=8, lstm_hidden=8)).eval()
    >>> probs, weights = model(torch.randn(1, 3, 20, 8), torch.randn(1, 2, 3, 8))
    >>> tuple(probs.shape), tuple(weights.shape)
    ((1, 2, 20), (1, 2, 20, 3))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.config import ModelConfig
from speechkit.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class MSDDConfig(ModelConfig):
    """Config of :class:`MSDD`; ``windows``/``shifts`` (seconds) are the scales it was trained on."""

    KIND = "msdd_diarizer"
    embedding_dim: int = 192
    windows: tuple[float, ...] = (1.5, 1.0, 0.5)
    shifts: tuple[float, ...] = (0.75, 0.5, 0.25)
    proj_dim: int = 16
    cnn_channels: int = 32
    kernel_size: int = 5
    lstm_hidden: int = 64
    dropout: float = 0.1
    threshold: float = 0.5
    speaker_model: str = "ecapa-tdnn"

    def __post_init__(self) -> None:
        if len(self.windows) != len(self.shifts) or not self.windows:
            raise ConfigError("windows and shifts must be non-empty and of equal length")
        if self.kernel_size % 2 == 0:
            raise ConfigError("kernel_size must be odd")

    @property
    def num_scales(self) -> int:
        return len(self.windows)


class MSDD(nn.Module):
    """Speaker-activity decoder over multi-scale similarities with dynamic scale weights."""

    config_class = MSDDConfig

    def __init__(self, config: MSDDConfig) -> None:
        super().__init__()
        self.config = config
        k, p = config.num_scales, config.proj_dim
        self.embed_proj = nn.Linear(config.embedding_dim, p)
        self.centroid_proj = nn.Linear(config.embedding_dim, p)
        pad = config.kernel_size // 2
        self.scale_cnn = nn.Sequential(
            nn.Conv1d(k * (2 * p + 1), config.cnn_channels, config.kernel_size, padding=pad),
            nn.ReLU(),
            nn.Conv1d(config.cnn_channels, config.cnn_channels, config.kernel_size, padding=pad),
            nn.ReLU(),
            nn.Conv1d(config.cnn_channels, k, 1),
        )
        self.lstm = nn.LSTM(3 * k, config.lstm_hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(2 * config.lstm_hidden, 1)

    def forward(
        self, embeddings: Tensor, centroids: Tensor, speaker_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        b, k, t, _ = embeddings.shape
        s = centroids.shape[1]
        if centroids.shape[2] != k or k != self.config.num_scales:
            raise ConfigError(f"expected {self.config.num_scales} scales, got {k} and {centroids.shape[2]}")
        if speaker_mask is None:
            speaker_mask = torch.ones(b, s, dtype=torch.bool, device=embeddings.device)
        e = F.normalize(embeddings, dim=-1)
        c = F.normalize(centroids, dim=-1)
        sims = torch.einsum("bktd,bskd->bskt", e, c)  # [B, S, K, T]
        pe = self.embed_proj(e).permute(0, 1, 3, 2)  # [B, K, P, T]
        pc = self.centroid_proj(c)  # [B, S, K, P]
        cnn_in = torch.cat(
            [
                pe[:, None].expand(b, s, k, -1, t),
                pc[..., None].expand(b, s, k, -1, t),
                sims[:, :, :, None, :],
            ],
            dim=3,
        )  # [B, S, K, 2P+1, T]
        logits = self.scale_cnn(cnn_in.reshape(b * s, -1, t))  # [B*S, K, T]
        weights = torch.softmax(logits, dim=1).reshape(b, s, k, t)
        weighted = weights * sims
        # the strongest rival at each scale and step (masked speakers and self excluded)
        rival_mask = ~speaker_mask[:, None, :] | torch.eye(s, dtype=torch.bool, device=sims.device)[None]
        rivals = sims[:, None].expand(b, s, s, k, t).masked_fill(rival_mask[..., None, None], -1.0)
        rival = rivals.max(dim=2).values if s > 1 else torch.full_like(sims, -1.0)
        x = torch.cat([weighted, weights * rival, weights], dim=2)  # [B, S, 3K, T]
        h, _ = self.lstm(x.permute(0, 1, 3, 2).reshape(b * s, t, 3 * k))
        probs = torch.sigmoid(self.head(self.dropout(h))).reshape(b, s, t)
        probs = probs.masked_fill(~speaker_mask[..., None], 0.0)
        return probs, weights.permute(0, 1, 3, 2)

    def training_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Binary cross-entropy per (speaker, step); ``batch``: embeddings, centroids, speaker_mask,
        labels [B, S, T] in {0, 1} and step_mask [B, T] (True = a real step, not padding)."""
        probs, weights = self(batch["embeddings"], batch["centroids"], batch["speaker_mask"])
        valid = batch["speaker_mask"][..., None] & batch["step_mask"][:, None, :]
        labels = batch["labels"].float()
        loss = F.binary_cross_entropy(probs.clamp(1e-6, 1 - 1e-6)[valid], labels[valid])
        with torch.no_grad():
            accuracy = ((probs[valid] > 0.5).float() == labels[valid]).float().mean()
            entropy = -(weights * weights.clamp_min(1e-8).log()).sum(-1).mean()
        return loss, {
            "bce": float(loss.detach()),
            "accuracy": float(accuracy),
            "weight_entropy": float(entropy),
        }

    def task_api(self):
        """A :class:`~speechkit.speaker.diarize.Diarizer` with the speaker model named in the config."""
        from speechkit.registry import load
        from speechkit.speaker.diarize import Diarizer

        return Diarizer(load(self.config.speaker_model), self)
