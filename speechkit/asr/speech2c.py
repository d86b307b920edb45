"""Speech2C pre-training (Ao et al. 2022, "Pre-Training Transformer Decoder for End-to-End ASR Model
with Unpaired Speech Data", section 2) on speech without transcripts.

The pre-trainer has the ASR model's front-end, encoder and decoder (same sizes, built from a nested
:class:`~speechkit.asr.model.ASRConfig`) and two tasks on pseudo-codes, one code per encoder frame:

1. masked prediction on the encoder output (HuBERT, Hsu et al. 2021): spans of the subsampled encoder
   input are replaced by a learned mask vector, and a linear head predicts the codes of the masked
   frames;
2. code reconstruction by the decoder: it cross-attends to the (masked) encoder output and generates
   the deduplicated code sequence autoregressively, so the decoder learns to read the encoder before
   it ever sees text.

``loss = L_masked + decoder_weight * L_decoder`` (per-token means).

Pseudo-codes: the first RVQ layer of ``codec-rvq`` (1024 codes at 50 Hz), which the token corpus
(``data/tts``) already holds for every utterance, taken at each encoder frame's centre (every second
code at 25 Hz). Why these rather than k-means over log-mel: they exist already (no clustering pass
over 3 hours of audio on 2 cores), they are deterministic and versioned by the codec's weights
fingerprint, and the first RVQ layer is trained to carry the coarse spectral envelope, which is what
k-means on MFCC/log-mel captures in HuBERT's first iteration, with a codebook learnt jointly with a
decoder rather than by plain Euclidean clustering. A second iteration could cluster this encoder's
own features (``speechkit.tokenizers.kmeans``) without changing the model.

Fine-tuning (:func:`init_asr_from_speech2c`) copies the front-end statistics, subsampling, encoder
and decoder transformer into an ASR model; the decoder's embedding and output layers (codes vs
characters), the CTC head and DeCRED's intermediate norms start fresh.

Example:
    >>> model = Speech2CPretrainer(Speech2CConfig(asr=ASRConfig.tiny(), num_codes=16)).train()
    >>> batch = {"wav": torch.randn(2, 8000), "wav_lengths": torch.tensor([8000, 6400]),
    ...          "codes": torch.randint(0, 16, (2, 25)), "code_lengths": torch.tensor([25, 20])}
    >>> loss, metrics = model.training_step(batch)
    >>> bool(torch.isfinite(loss)), sorted(metrics)
    (True, ['decoder_accuracy', 'decoder_ce', 'masked_accuracy', 'masked_ce', 'masked_fraction'])
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.asr.decoder import AttentionDecoder
from speechkit.asr.encoder import EBranchformerEncoder
from speechkit.asr.frontend import Conv2dSubsampling, LogMelFrontend
from speechkit.asr.model import ASRConfig, EBranchformerASR
from speechkit.config import ModelConfig
from speechkit.errors import ConfigError
from speechkit.nn.masks import lengths_to_padding_mask

TRANSFERRED_PREFIXES = ("frontend.", "subsampling.", "encoder.", "decoder.transformer.", "decoder.position_scale")


@dataclass(frozen=True, kw_only=True)
class Speech2CConfig(ModelConfig):
    """Config of :class:`Speech2CPretrainer`.

    Fields: ``asr`` (the architecture fine-tuning will use), ``num_codes`` (pseudo-code classes),
    ``codes`` / ``codes_fingerprint`` / ``code_frame_rate`` (where the codes come from), span masking
    (``mask_prob``: expected share of frames that start a span, wav2vec 2.0 style; ``mask_span`` frames
    per span) and ``decoder_weight``.
    """

    KIND = "speech2c_pretrain"
    asr: ASRConfig = dataclasses.field(default_factory=ASRConfig)
    num_codes: int = 1024
    codes: str = "codec-rvq layer 1"
    codes_fingerprint: str = ""
    code_frame_rate: float = 50.0
    mask_prob: float = 0.08
    mask_span: int = 5
    decoder_weight: float = 1.0


def span_mask(lengths: Tensor, num_frames: int, mask_prob: float, span: int) -> Tensor:
    """HuBERT / wav2vec 2.0 span masking: bool [B, T], True = masked, only within each length.

    About ``mask_prob * length`` span starts are drawn per item (spans may overlap), so roughly
    ``1 - exp(-mask_prob * span)`` of the frames end up masked (~33% for 0.08 x 5).

    Example:
        >>> m = span_mask(torch.tensor([100, 40]), 100, mask_prob=0.08, span=5)
        >>> m.shape, bool(m[1, 40:].any()), 0.1 < m[0].float().mean().item() < 0.6
        (torch.Size([2, 100]), False, True)
    """
    batch = lengths.shape[0]
    mask = torch.zeros(batch, num_frames, dtype=torch.bool, device=lengths.device)
    for b in range(batch):
        length = int(lengths[b])
        if length <= span:
            continue
        num_spans = max(1, int(mask_prob * length + torch.rand(()).item()))
        starts = torch.randint(0, length - span + 1, (num_spans,), device=lengths.device)
        index = (starts[:, None] + torch.arange(span, device=lengths.device)[None]).flatten()
        mask[b, index] = True
    return mask


def codes_at_encoder_frames(
    codes: Tensor, code_lengths: Tensor, num_frames: int, code_frame_rate: float, frame_centre_seconds: Tensor
) -> tuple[Tensor, Tensor]:
    """Pick the code under each encoder frame's centre: codes [B, Nc] -> targets [B, T], valid [B, T]."""
    index = (frame_centre_seconds * code_frame_rate).floor().long()  # [T]
    valid = index[None, :] < code_lengths[:, None]
    index = index.clamp_max(codes.shape[1] - 1)[None].expand(codes.shape[0], -1)
    return torch.gather(codes, 1, index), valid


def deduplicate(targets: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Merge runs of equal codes: [B, T] (+ valid mask) -> packed [B, L] (0-padded) and lengths [B].

    Example:
        >>> deduplicate(torch.tensor([[3, 3, 1, 1, 3], [2, 2, 2, 0, 0]]), torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]).bool())
        (tensor([[3, 1, 3],
                [2, 0, 0]]), tensor([3, 1]))
    """
    keep = valid.clone()
    keep[:, 1:] &= targets[:, 1:] != targets[:, :-1]
    lengths = keep.sum(1)
    position = keep.long().cumsum(1) - 1
    out = torch.zeros(targets.shape[0], max(1, int(lengths.max())), dtype=targets.dtype, device=targets.device)
    rows = torch.arange(targets.shape[0], device=targets.device)[:, None].expand_as(targets)
    out[rows[keep], position[keep]] = targets[keep]
    return out, lengths


class Speech2CPretrainer(nn.Module):
    """Masked code prediction + autoregressive code reconstruction (see the module docstring)."""

    config_class = Speech2CConfig

    def __init__(self, config: Speech2CConfig) -> None:
        super().__init__()
        self.config = config
        a = config.asr
        self.frontend = LogMelFrontend(a.sample_rate, a.n_mels, a.n_fft, a.hop_length)
        self.subsampling = Conv2dSubsampling(a.n_mels, a.dim, a.subsampling_channels)
        self.encoder = EBranchformerEncoder(
            a.dim, a.encoder_layers, a.num_heads, a.cgmlp_mult, a.kernel_size, a.ff_mult, a.dropout, a.causal_convs
        )
        self.mask_embedding = nn.Parameter(torch.randn(a.dim) * 0.02)
        self.code_head = nn.Linear(a.dim, config.num_codes)
        # decoder ids: codes 0..K-1, eos = K, sos = K + 1
        self.eos_id, self.sos_id = config.num_codes, config.num_codes + 1
        self.decoder = AttentionDecoder(
            a.dim, a.decoder_layers, a.num_heads, config.num_codes + 2, (), a.decoder_mlp_ratio, a.dropout
        )

    def _frame_centres(self, num_frames: int, device: torch.device) -> Tensor:
        a = self.config.asr
        # encoder frame j sees mel frames 4j .. 4j + 6; its centre is mel frame 4j + 3
        return (torch.arange(num_frames, device=device) * 4 + 3) * a.hop_length / a.sample_rate

    def training_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Batch: ``wav`` [B, T], ``wav_lengths`` [B], ``codes`` [B, Nc] at ``code_frame_rate``, ``code_lengths`` [B]."""
        c = self.config
        mel, mel_lengths = self.frontend(batch["wav"], batch["wav_lengths"])
        x, lengths = self.subsampling(mel, mel_lengths)
        frames = x.shape[1]
        targets, target_valid = codes_at_encoder_frames(
            batch["codes"], batch["code_lengths"], frames, c.code_frame_rate, self._frame_centres(frames, x.device)
        )
        target_valid &= lengths_to_padding_mask(lengths, frames)
        masked = span_mask(lengths, frames, c.mask_prob, c.mask_span) & target_valid
        x = torch.where(masked[..., None], self.mask_embedding.to(x.dtype), x)
        encoded = self.encoder(x, lengths)
        logits = self.code_head(encoded[masked]).float()
        masked_ce = F.cross_entropy(logits, targets[masked]) if masked.any() else logits.sum() * 0.0
        sequence, seq_lengths = deduplicate(targets, target_valid)
        heads, dec_targets, dec_valid = self._teacher_forced(encoded, lengths, sequence, seq_lengths)
        decoder_ce = F.cross_entropy(heads[-1][dec_valid], dec_targets[dec_valid])
        loss = masked_ce + c.decoder_weight * decoder_ce
        metrics = {
            "masked_ce": float(masked_ce.detach()),
            "masked_accuracy": float((logits.argmax(-1) == targets[masked]).float().mean()) if masked.any() else 0.0,
            "masked_fraction": float(masked.sum() / target_valid.sum().clamp_min(1)),
            "decoder_ce": float(decoder_ce.detach()),
            "decoder_accuracy": float((heads[-1][dec_valid].argmax(-1) == dec_targets[dec_valid]).float().mean()),
        }
        return loss, metrics

    def _teacher_forced(
        self, encoded: Tensor, lengths: Tensor, sequence: Tensor, seq_lengths: Tensor
    ) -> tuple[list[Tensor], Tensor, Tensor]:
        batch_size, length = sequence.shape
        steps = torch.arange(length + 1, device=sequence.device)[None]
        valid = steps <= seq_lengths[:, None]
        sos = torch.full((batch_size, 1), self.sos_id, device=sequence.device, dtype=sequence.dtype)
        targets = torch.where(steps < seq_lengths[:, None], F.pad(sequence, (0, 1)), torch.full_like(steps, self.eos_id))
        memory_valid = lengths_to_padding_mask(lengths, encoded.shape[1])
        return self.decoder(torch.cat([sos, sequence], 1), valid, encoded, memory_valid), targets, valid

    def task_api(self):
        raise ConfigError(
            "a Speech2C pre-training checkpoint has no task API; fine-tune it with "
            "`speechkit train asr --init-from <this folder>`"
        )


def init_asr_from_speech2c(model: EBranchformerASR, pretrained: Speech2CPretrainer) -> int:
    """Copy front-end statistics, subsampling, encoder and decoder transformer into ``model``.

    The decoder's embedding/output (codes vs characters), the CTC head and the DeCRED norms keep
    their fresh initialisation. Returns the number of tensors copied.

    Raises:
        ConfigError: the two architectures differ (a shape or a tensor is missing).
    """
    own, source = model.state_dict(), pretrained.state_dict()
    wanted = [k for k in own if k.startswith(TRANSFERRED_PREFIXES)]
    missing = [k for k in wanted if k not in source or source[k].shape != own[k].shape]
    if missing:
        raise ConfigError(
            f"the pre-trained model's architecture differs from the ASR config: {missing[:4]} "
            "(fine-tune with the pre-training checkpoint's asr config)"
        )
    with torch.no_grad():
        for key in wanted:
            own[key].copy_(source[key])
    return len(wanted)


def expected_masked_fraction(mask_prob: float, span: int) -> float:
    """Share of frames masked by :func:`span_mask` on long inputs (overlapping spans)."""
    return 1.0 - math.exp(-mask_prob * span)
