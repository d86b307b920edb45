"""Phoneme-to-frame aligner: learns soft alignments with the forward-sum loss, yields hard durations.

Follows "One TTS Alignment To Rule Them All" (Badlani et al. 2022): phonemes and log-mel frames are
encoded by small conv stacks; the frame-to-phoneme attention is a softmax over negative squared
distances plus a beta-binomial prior; the forward-sum loss (CTC over the phoneme sequence, every
phoneme visited in order) trains it without any labels but the text; monotonic alignment search on
the attention turns it into integer durations in codec frames. The TTS models train on those
durations, and the aligner ships with them so a prompt's durations can be measured at inference.

Shapes: phonemes [B, N] ids, mel [B, n_mels, T] -> attention log-probabilities [B, T, N].

Example:
    >>> aligner = DurationAligner(AlignerConfig(dim=16, n_mels=8)).eval()
    >>> phonemes, mel = torch.randint(4, 80, (1, 5)), torch.randn(1, 8, 12)
    >>> aligner.durations(phonemes, mel)[0].sum().item()
    12
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.config import ModelConfig
from speechkit.features import LogMelSpectrogram
from speechkit.nn.masks import lengths_to_padding_mask
from speechkit.text.symbols import SYMBOLS_VERSION, PhonemeSymbols
from speechkit.tts.durations import beta_binomial_prior, monotonic_alignment_search


@dataclass(frozen=True, kw_only=True)
class AlignerConfig(ModelConfig):
    """Config of :class:`DurationAligner`; ``hop_length`` is the codec's token hop (durations in tokens)."""

    KIND = "tts_aligner"
    num_symbols: int = len(PhonemeSymbols())
    symbols_version: int = SYMBOLS_VERSION
    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 320
    n_mels: int = 80
    dim: int = 192
    attention_dim: int = 80
    temperature: float = 0.0005


def _conv(in_dim: int, out_dim: int, kernel: int) -> nn.Conv1d:
    return nn.Conv1d(in_dim, out_dim, kernel, padding=kernel // 2)


class DurationAligner(nn.Module):
    """Frame-to-phoneme soft aligner trained with the forward-sum loss; ``durations`` gives hard ones."""

    config_class = AlignerConfig

    def __init__(self, config: AlignerConfig) -> None:
        super().__init__()
        self.config = config
        self.mel = LogMelSpectrogram(
            config.sample_rate, config.n_fft, config.hop_length, config.n_mels, padding="same"
        )
        self.embedding = nn.Embedding(config.num_symbols, config.dim, padding_idx=0)
        self.text_encoder = nn.Sequential(
            _conv(config.dim, config.dim * 2, 3), nn.ReLU(), _conv(config.dim * 2, config.attention_dim, 1)
        )
        self.mel_encoder = nn.Sequential(
            _conv(config.n_mels, config.dim * 2, 3),
            nn.ReLU(),
            _conv(config.dim * 2, config.dim, 1),
            nn.ReLU(),
            _conv(config.dim, config.attention_dim, 1),
        )

    def features(self, wav: Tensor, num_frames: int | None = None) -> Tensor:
        """Log-mel [B, n_mels, T] at the token rate, cropped or padded to ``num_frames``."""
        mel = self.mel(wav)
        if num_frames is not None:
            mel = F.pad(mel, (0, max(0, num_frames - mel.shape[-1])), mode="replicate")[..., :num_frames]
        return mel

    def attention(
        self,
        phonemes: Tensor,
        mel: Tensor,
        phoneme_lengths: Tensor | None = None,
        prior: Tensor | None = None,
    ) -> Tensor:
        """Log-attention [B, T, N] of each frame over the phonemes (log-softmax over N, padding excluded)."""
        keys = self.text_encoder(self.embedding(phonemes).transpose(1, 2))  # [B, A, N]
        queries = self.mel_encoder(mel)  # [B, A, T]
        # ||q - k||^2 = ||q||^2 + ||k||^2 - 2 q.k, without a [B, A, T, N] difference tensor
        distance = (
            queries.pow(2).sum(1)[:, :, None]
            + keys.pow(2).sum(1)[:, None, :]
            - 2 * torch.einsum("bat,ban->btn", queries, keys)
        ).clamp_min(0.0)  # [B, T, N]
        logits = -self.config.temperature * distance
        if phoneme_lengths is not None:
            valid = lengths_to_padding_mask(phoneme_lengths, phonemes.shape[1])
            logits = logits.masked_fill(~valid[:, None, :], -1e4)
        log_attention = F.log_softmax(logits, dim=-1)
        if prior is not None:
            log_attention = F.log_softmax(log_attention + prior, dim=-1)
        return log_attention

    def forward_sum_loss(
        self, log_attention: Tensor, phoneme_lengths: Tensor, frame_lengths: Tensor, blank_logprob: float = -1.0
    ) -> Tensor:
        """CTC over the in-order phoneme sequence: every alignment that visits each phoneme counts."""
        padded = F.pad(log_attention, (1, 0), value=blank_logprob)  # blank is class 0
        log_probs = F.log_softmax(padded, dim=-1).transpose(0, 1)  # [T, B, N + 1]
        targets = torch.arange(1, log_attention.shape[2] + 1, device=log_attention.device)
        targets = targets[None].expand(log_attention.shape[0], -1)
        return F.ctc_loss(
            log_probs, targets, frame_lengths, phoneme_lengths, blank=0, reduction="mean", zero_infinity=True
        )

    def training_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        mel = self.features(batch["audio"], int(batch["frame_lengths"].max()))
        log_attention = self.attention(batch["phonemes"], mel, batch["phoneme_lengths"], batch["prior"])
        loss = self.forward_sum_loss(log_attention, batch["phoneme_lengths"], batch["frame_lengths"])
        return loss, {"forward_sum": float(loss.detach())}

    @torch.no_grad()
    def durations(self, phonemes: Tensor, mel: Tensor) -> list[np.ndarray]:
        """Hard durations (frames per phoneme, summing to T) for each item of an unpadded batch."""
        out = []
        for b in range(phonemes.shape[0]):
            num_tokens, num_frames = phonemes.shape[1], mel.shape[-1]
            prior = torch.from_numpy(beta_binomial_prior(num_tokens, num_frames))[None]
            log_attention = self.attention(phonemes[b : b + 1], mel[b : b + 1], prior=prior)[0]
            out.append(monotonic_alignment_search(log_attention.double().numpy()))
        return out

    def align(self, wav: np.ndarray, sample_rate: int, phoneme_ids: list[int]) -> np.ndarray:
        """Durations in token frames [N] of phonemes in audio [T] (any rate; resampled)."""
        from speechkit.audio import prepare_input

        wav = prepare_input(wav, sample_rate, self.config.sample_rate)
        hop = self.config.hop_length
        frames = -(-len(wav) // hop)
        if frames < len(phoneme_ids):
            raise ValueError(f"{len(phoneme_ids)} phonemes cannot fit in {frames} frames of audio")
        padded = torch.from_numpy(np.pad(wav, (0, frames * hop - len(wav))))[None]
        return self.durations(torch.tensor([phoneme_ids]), self.features(padded, frames))[0]

    def task_api(self) -> DurationAligner:
        """The aligner is its own task API (``align``)."""
        return self.eval()
