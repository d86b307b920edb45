"""E-Branchformer encoder-decoder ASR: joint CTC + attention over characters, with DeCRED.

    audio 16 kHz ─► log-mel 80 @ 100 Hz ─► SpecAugment (train) ─► conv2d 4x ─► E-Branchformer ─► CTC head
                                                                                   │ (memory)
                           <sos> + characters ─► causal transformer decoder ─► final + intermediate heads

Training loss (Watanabe et al. 2017, section 3.1): ``ctc_weight * L_ctc + (1 - ctc_weight) * L_att``
with ``L_att = (1 - intermediate_weight) * L_final + intermediate_weight * mean(L_aux)`` (DeCRED;
``intermediate_layers = ()`` is the baseline). Both terms are summed over each utterance and averaged
over the batch, as ESPnet does, so ``ctc_weight`` has its usual meaning.

Streaming: with ``causal_convs`` the encoder is trained with dynamic chunks (WeNet U2): half of the
batches see full context, the others a random chunk of 1..``max_train_chunk`` frames (40 ms each)
and a random left context, so one model decodes offline and in chunks.

Example:
    >>> model = EBranchformerASR(ASRConfig.tiny()).eval()
    >>> batch = {"wav": torch.randn(2, 8000), "wav_lengths": torch.tensor([8000, 6000]),
    ...          "tokens": torch.tensor([[5, 6, 7], [8, 9, 0]]), "token_lengths": torch.tensor([3, 2])}
    >>> loss, metrics = model.training_step(batch)
    >>> bool(torch.isfinite(loss)), "ctc" in metrics, "att_layer1" in metrics
    (True, True, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.asr.decoder import AttentionDecoder
from speechkit.asr.encoder import EBranchformerEncoder, sample_training_chunk
from speechkit.asr.frontend import Conv2dSubsampling, LogMelFrontend, SpecAugment
from speechkit.asr.text import NORMALIZER_VERSION, VOCAB_VERSION, CharVocabulary
from speechkit.config import ModelConfig
from speechkit.errors import ConfigError
from speechkit.nn.masks import lengths_to_padding_mask


@dataclass(frozen=True, kw_only=True)
class ASRConfig(ModelConfig):
    """Config of :class:`EBranchformerASR` (defaults: 6.33M parameters, trainable on 2 CPU cores).

    Fields: front-end (``sample_rate``, ``n_mels``, ``n_fft``, ``hop_length``), encoder (``dim``,
    ``num_heads``, ``encoder_layers``, ``cgmlp_mult``, ``kernel_size``, ``ff_mult``,
    ``subsampling_channels``, ``causal_convs``), decoder (``decoder_layers``, ``decoder_mlp_ratio``,
    ``intermediate_layers`` (1-based, DeCRED; () = baseline)), training (``dropout``, ``ctc_weight``,
    ``intermediate_weight``, ``label_smoothing``, ``specaugment``, ``max_train_chunk``,
    ``full_context_prob``) and the default streaming chunk ``decode_chunk_frames``.
    """

    KIND = "ebranchformer_asr"
    vocab_version: int = VOCAB_VERSION
    normalizer_version: int = NORMALIZER_VERSION
    vocab_size: int = 31
    sample_rate: int = 16000
    n_mels: int = 80
    n_fft: int = 400
    hop_length: int = 160
    dim: int = 144
    num_heads: int = 4
    encoder_layers: int = 8
    cgmlp_mult: float = 4.0
    kernel_size: int = 31
    ff_mult: float = 4.0
    subsampling_channels: int = 64
    causal_convs: bool = True
    decoder_layers: int = 4
    decoder_mlp_ratio: float = 4.0
    intermediate_layers: tuple[int, ...] = (2,)
    dropout: float = 0.1
    ctc_weight: float = 0.3
    intermediate_weight: float = 0.3
    label_smoothing: float = 0.1
    specaugment: bool = True
    max_train_chunk: int = 25
    full_context_prob: float = 0.5
    decode_chunk_frames: int = 16

    def __post_init__(self) -> None:
        if self.vocab_version != VOCAB_VERSION or self.vocab_size != len(CharVocabulary()):
            raise ConfigError(
                f"this checkpoint uses character vocabulary v{self.vocab_version} ({self.vocab_size} symbols); "
                f"this speechkit has v{VOCAB_VERSION} ({len(CharVocabulary())})"
            )
        if not 0.0 <= self.ctc_weight <= 1.0 or not 0.0 <= self.intermediate_weight < 1.0:
            raise ConfigError("ctc_weight must lie in [0, 1] and intermediate_weight in [0, 1)")

    @classmethod
    def tiny(cls, **changes) -> ASRConfig:
        """A few-thousand-parameter preset for tests."""
        base = dict(
            dim=32, num_heads=2, encoder_layers=2, cgmlp_mult=2.0, kernel_size=7, ff_mult=2.0,
            subsampling_channels=8, decoder_layers=2, decoder_mlp_ratio=2.0, intermediate_layers=(1,),
            dropout=0.0, n_mels=40,
        )  # fmt: skip
        base.update(changes)
        return cls(**base)


class EBranchformerASR(nn.Module):
    """Speech -> characters (see the module docstring). Task API: :class:`speechkit.asr.api.SpeechRecognizer`."""

    config_class = ASRConfig

    def __init__(self, config: ASRConfig) -> None:
        super().__init__()
        self.config = config
        self.vocabulary = CharVocabulary()
        c = config
        self.sample_rate = c.sample_rate
        self.frontend = LogMelFrontend(c.sample_rate, c.n_mels, c.n_fft, c.hop_length)
        self.specaugment = SpecAugment() if c.specaugment else None
        self.subsampling = Conv2dSubsampling(c.n_mels, c.dim, c.subsampling_channels)
        self.encoder = EBranchformerEncoder(
            c.dim, c.encoder_layers, c.num_heads, c.cgmlp_mult, c.kernel_size, c.ff_mult, c.dropout, c.causal_convs
        )
        self.ctc_head = nn.Linear(c.dim, c.vocab_size)
        self.decoder = AttentionDecoder(
            c.dim, c.decoder_layers, c.num_heads, c.vocab_size, c.intermediate_layers, c.decoder_mlp_ratio, c.dropout
        )

    @property
    def frame_shift_seconds(self) -> float:
        """Seconds per encoder frame (0.04 s: 10 ms mel hop x 4)."""
        return self.config.hop_length * Conv2dSubsampling.stride / self.config.sample_rate

    # --- encoder ----------------------------------------------------------------------------------

    def encode(
        self, wav: Tensor, lengths: Tensor | None = None, chunk_size: int | None = None, num_left_chunks: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """Audio [B, T] -> encoder output [B, N', D] and lengths [B] (chunked attention if asked)."""
        mel, mel_lengths = self.frontend(wav, lengths)
        return self.encode_mel(mel, mel_lengths, chunk_size, num_left_chunks)

    def encode_mel(
        self, mel: Tensor, mel_lengths: Tensor, chunk_size: int | None = None, num_left_chunks: int | None = None
    ) -> tuple[Tensor, Tensor]:
        if self.specaugment is not None:
            mel = self.specaugment(mel, mel_lengths)
        x, lengths = self.subsampling(mel, mel_lengths)
        return self.encoder(x, lengths, chunk_size, num_left_chunks), lengths

    def ctc_log_probs(self, encoded: Tensor) -> Tensor:
        """[B, N', D] -> CTC log-posteriors [B, N', V] (float32)."""
        return self.ctc_head(encoded).float().log_softmax(-1)

    # --- training ---------------------------------------------------------------------------------

    def training_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Batch: ``wav`` [B, T], ``wav_lengths`` [B], ``tokens`` [B, L] (0-padded), ``token_lengths`` [B]."""
        c = self.config
        chunk, left = None, None
        if self.training and c.causal_convs:
            chunk, left = sample_training_chunk(batch["wav"].shape[1] // (4 * c.hop_length), c.max_train_chunk, c.full_context_prob)
        encoded, enc_lengths = self.encode(batch["wav"], batch["wav_lengths"], chunk, left)
        tokens, token_lengths = batch["tokens"], batch["token_lengths"]
        batch_size = tokens.shape[0]
        ctc = F.ctc_loss(
            self.ctc_log_probs(encoded).transpose(0, 1), tokens, enc_lengths, token_lengths,
            blank=self.vocabulary.blank_id, reduction="sum", zero_infinity=True,
        ) / batch_size  # fmt: skip
        heads, targets, valid = self._teacher_forced(encoded, enc_lengths, tokens, token_lengths)
        losses = [
            F.cross_entropy(h[valid], targets[valid], label_smoothing=c.label_smoothing, reduction="sum") / batch_size
            for h in heads
        ]
        att = losses[-1]
        if len(losses) > 1:
            att = (1 - c.intermediate_weight) * att + c.intermediate_weight * torch.stack(losses[:-1]).mean()
        loss = c.ctc_weight * ctc + (1 - c.ctc_weight) * att
        accuracy = (heads[-1][valid].argmax(-1) == targets[valid]).float().mean()
        metrics = {
            "ctc": float(ctc.detach()),
            "att": float(losses[-1].detach()),
            "att_accuracy": float(accuracy),
            "att_token_ce": float(losses[-1].detach()) * batch_size / max(1, int(valid.sum())),
        }
        for layer, aux in zip(self.decoder.intermediate_layers, losses[:-1]):
            metrics[f"att_layer{layer}"] = float(aux.detach())
        return loss, metrics

    def _teacher_forced(
        self, encoded: Tensor, enc_lengths: Tensor, tokens: Tensor, token_lengths: Tensor
    ) -> tuple[list[Tensor], Tensor, Tensor]:
        sos_eos = self.vocabulary.sos_eos_id
        batch_size, length = tokens.shape
        steps = torch.arange(length + 1, device=tokens.device)[None]
        valid = steps <= token_lengths[:, None]  # L tokens + eos
        inputs = torch.cat([torch.full((batch_size, 1), sos_eos, device=tokens.device, dtype=tokens.dtype), tokens], 1)
        targets = torch.where(steps < token_lengths[:, None], F.pad(tokens, (0, 1)), torch.full_like(steps, sos_eos))
        memory_valid = lengths_to_padding_mask(enc_lengths, encoded.shape[1])
        return self.decoder(inputs, valid, encoded, memory_valid), targets, valid

    def task_api(self):
        from speechkit.asr.api import SpeechRecognizer

        return SpeechRecognizer(self)
