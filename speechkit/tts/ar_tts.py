"""Autoregressive TTS over Single-Codec's one token stream, with forward-backward decoding regularisation.

The model: a phoneme encoder; a causal transformer decoder that cross-attends to it and predicts the
next codec token (or end of speech); adaptive norms on the speaker vector, which is the embedding of
Single-Codec's global codes of a prompt: the same time-invariant embedding the codec decoder uses,
so the voice of any prompt carries over (zero-shot) without a speaker encoder of its own.

Forward-backward decoding (Zheng et al. 2019): a second, right-to-left decoder shares the encoder
and predicts the reversed token sequence. Training adds its loss and an agreement term
``fbd_weight * ||h_l2r(t) - h_r2l(t)||^2`` between the two decoders' hidden states that predict the
same token t, which pulls the left-to-right decoder towards states that also explain the future
(against exposure bias). Inference uses the left-to-right decoder only. ``fbd_weight = 0`` with
``backward_decoder = False`` is the baseline of the ablation.

Shapes: phonemes [B, N]; codes [B, T]; speaker (global) codes [B, G].

Example:
    >>> cfg = ARTTSConfig(dim=32, num_heads=2, text_layers=1, decoder_layers=1, codebook_size=16,
    ...                   global_num_codes=2, global_codebook_size=8)
    >>> model = ForwardBackwardTTS(cfg).eval()
    >>> codes = model.generate(torch.randint(4, 80, (1, 5)), torch.tensor([[1, 2]]), max_frames=12,
    ...                        generator=torch.Generator().manual_seed(0))
    >>> codes.shape[0], codes.shape[1] <= 12, bool((codes < 16).all())
    (1, True, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.config import ModelConfig
from speechkit.decoders.sampling import sample_tokens
from speechkit.errors import ConfigError
from speechkit.nn.masks import lengths_to_padding_mask
from speechkit.nn.positional import sinusoidal_positions
from speechkit.nn.transformer import Transformer
from speechkit.text.symbols import SYMBOLS_VERSION, PhonemeSymbols


def reverse_valid(codes: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Reverse each item's first ``lengths[b]`` tokens of codes [B, T] (padding stays 0 at the end).

    Returns (reversed codes [B, T], index [B, T] with reversed[b, t] = codes[b, index[b, t]]).

    Example:
        >>> reverse_valid(torch.tensor([[1, 2, 3], [4, 5, 0]]), torch.tensor([3, 2]))[0].tolist()
        [[3, 2, 1], [5, 4, 0]]
    """
    steps = torch.arange(codes.shape[1], device=codes.device)[None]
    index = (lengths[:, None] - 1 - steps).clamp_min(0)
    return torch.gather(codes, 1, index) * (steps < lengths[:, None]), index


@dataclass(frozen=True, kw_only=True)
class ARTTSConfig(ModelConfig):
    """Config of :class:`ForwardBackwardTTS` (token ids: codes 0..V-1, EOS = V, BOS = V + 1)."""

    KIND = "fbd_ar_tts"
    num_symbols: int = len(PhonemeSymbols())
    symbols_version: int = SYMBOLS_VERSION
    codec: str = "single-codec"
    codec_fingerprint: str = ""
    sample_rate: int = 16000
    frame_rate: float = 25.0
    codebook_size: int = 4096
    global_num_codes: int = 4
    global_codebook_size: int = 1024
    dim: int = 192
    num_heads: int = 4
    mlp_ratio: float = 3.0
    text_layers: int = 3
    decoder_layers: int = 4
    dropout: float = 0.1
    backward_decoder: bool = True
    fbd_weight: float = 0.1
    max_frames_per_phoneme: float = 6.0


class ForwardBackwardTTS(nn.Module):
    """Phonemes -> Single-Codec tokens, left to right, regularised by a right-to-left twin (see module doc)."""

    config_class = ARTTSConfig

    def __init__(self, config: ARTTSConfig) -> None:
        super().__init__()
        self.config = config
        self.sample_rate, self.frame_rate = config.sample_rate, config.frame_rate
        d, heads, ratio, drop = config.dim, config.num_heads, config.mlp_ratio, config.dropout
        self.eos_id, self.bos_id = config.codebook_size, config.codebook_size + 1
        self.phoneme_embedding = nn.Embedding(config.num_symbols, d, padding_idx=0)
        self.text_encoder = Transformer(d, config.text_layers, heads, ratio, dropout=drop)
        self.speaker_embedding = nn.Embedding(config.global_num_codes * config.global_codebook_size, d)
        self.position_scale = nn.Parameter(torch.ones(2))  # text, decoder (Transformer-TTS's alpha)
        self.token_embedding = nn.Embedding(config.codebook_size + 2, d)
        self.forward_decoder = self._decoder()
        self.backward_decoder = self._decoder() if config.backward_decoder else None
        self.output = nn.Linear(d, config.codebook_size + 1)
        # the shipped default voice: a training speaker's global codes, stored with the weights
        self.register_buffer("default_global_codes", torch.full((1, config.global_num_codes), -1, dtype=torch.long))

    def _decoder(self) -> Transformer:
        c = self.config
        return Transformer(
            c.dim, c.decoder_layers, c.num_heads, c.mlp_ratio, causal=True, cross_attention=True,
            dropout=c.dropout, cond_dim=c.dim,
        )  # fmt: skip

    def speaker_vector(self, global_codes: Tensor) -> Tensor:
        """Global codes [B, G] -> [B, D] (one embedding table, offset per code position)."""
        offsets = (
            torch.arange(global_codes.shape[1], device=global_codes.device) * self.config.global_codebook_size
        )
        return self.speaker_embedding(global_codes + offsets).mean(1)

    def encode_text(self, phonemes: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        valid = phonemes != 0 if lengths is None else lengths_to_padding_mask(lengths, phonemes.shape[1])
        x = self.phoneme_embedding(phonemes)
        x = x + self.position_scale[0] * sinusoidal_positions(
            torch.arange(x.shape[1], device=x.device), x.shape[2]
        )
        return self.text_encoder(x, valid), valid

    def _embed_tokens(self, tokens: Tensor, offset: int = 0) -> Tensor:
        x = self.token_embedding(tokens)
        positions = torch.arange(offset, offset + tokens.shape[1], device=tokens.device)
        return x + self.position_scale[1] * sinusoidal_positions(positions, x.shape[2])

    def training_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Batch: ``phonemes`` [B, N], ``phoneme_lengths`` [B], ``codes`` [B, T] (0-padded),
        ``code_lengths`` [B], ``global_codes`` [B, G] (the speaker's prompt)."""
        text, text_valid = self.encode_text(batch["phonemes"], batch["phoneme_lengths"])
        speaker = self.speaker_vector(batch["global_codes"])
        codes, lengths = batch["codes"], batch["code_lengths"]
        batch_size, length = codes.shape
        steps = torch.arange(length + 1, device=codes.device)[None]
        valid = steps <= lengths[:, None]  # T tokens + EOS
        forward_targets = torch.where(
            steps < lengths[:, None], F.pad(codes, (0, 1)), torch.full_like(steps, self.eos_id)
        )
        bos = torch.full((batch_size, 1), self.bos_id, device=codes.device, dtype=codes.dtype)
        h_forward = self._decode(
            self.forward_decoder, torch.cat([bos, codes], 1), valid, text, text_valid, speaker
        )
        ce_forward = self._cross_entropy(h_forward, forward_targets, valid)
        metrics = {"ce_forward": float(ce_forward.detach())}
        loss = ce_forward
        if self.backward_decoder is not None:
            reversed_codes, reverse_index = reverse_valid(codes, lengths)
            backward_targets = torch.where(
                steps < lengths[:, None], F.pad(reversed_codes, (0, 1)), torch.full_like(steps, self.eos_id)
            )
            h_backward = self._decode(
                self.backward_decoder, torch.cat([bos, reversed_codes], 1), valid, text, text_valid, speaker
            )
            ce_backward = self._cross_entropy(h_backward, backward_targets, valid)
            # forward state t predicts token t; backward state L - 1 - t predicts the same token
            aligned = torch.gather(
                h_backward, 1, reverse_index[..., None].expand(-1, -1, h_backward.shape[2])
            )
            token_valid = steps[:, :length] < lengths[:, None]
            agreement = (h_forward[:, :length] - aligned).pow(2).mean(-1)[token_valid].mean()
            loss = loss + ce_backward + self.config.fbd_weight * agreement
            metrics.update(ce_backward=float(ce_backward.detach()), agreement=float(agreement.detach()))
        return loss, metrics

    def _decode(
        self,
        decoder: Transformer,
        inputs: Tensor,
        valid: Tensor,
        text: Tensor,
        text_valid: Tensor,
        speaker: Tensor,
    ) -> Tensor:
        return decoder(self._embed_tokens(inputs), valid, text, text_valid, speaker)

    def _cross_entropy(self, hidden: Tensor, targets: Tensor, valid: Tensor) -> Tensor:
        logits = self.output(hidden[valid]).float()
        return F.cross_entropy(logits, targets[valid])

    @torch.no_grad()
    def generate(
        self,
        phonemes: Tensor,
        global_codes: Tensor,
        temperature: float = 0.8,
        top_k: int | None = 50,
        max_frames: int | None = None,
        min_frames: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Codes [1, T] for phonemes [1, N] in the voice of global codes [1, G] (left to right, KV cache).

        Stops at end of speech or after ``max_frames`` (default ``max_frames_per_phoneme * N``).
        """
        if phonemes.shape[0] != 1:
            raise ValueError("generate takes one utterance (batch of one)")
        text, text_valid = self.encode_text(phonemes)
        speaker = self.speaker_vector(global_codes)
        limit = max_frames or int(self.config.max_frames_per_phoneme * phonemes.shape[1]) + 1
        cache = self.forward_decoder.initial_cache(1, device=phonemes.device)
        token = torch.full((1, 1), self.bos_id, dtype=torch.long, device=phonemes.device)
        out = []
        for step in range(limit):
            x = self._embed_tokens(token, offset=step)
            h, cache = self.forward_decoder.step(x, cache, text, text_valid, speaker)
            logits = self.output(h[:, -1]).float()
            if step < min_frames:
                logits[:, self.eos_id] = float("-inf")
            token = sample_tokens(logits, temperature, top_k, generator=generator)[:, None]
            if int(token) == self.eos_id:
                break
            out.append(token)
        if not out:
            return torch.zeros(1, 0, dtype=torch.long, device=phonemes.device)
        return torch.cat(out, 1)

    # --- the TTS API's model contract -------------------------------------------------------------

    def voice_from_tokens(self, tokens) -> Tensor:
        """A prompt's Single-Codec Tokens -> its global codes [1, G] (the voice)."""
        if "global_codes" not in tokens.extras:
            raise ValueError("the prompt's tokens have no global codes: encode it with a Single-Codec model")
        return torch.from_numpy(np.asarray(tokens.extras["global_codes"])).long()

    def set_default_voice(self, global_codes: Tensor) -> None:
        self.default_global_codes.copy_(global_codes.reshape(1, -1))

    def default_voice(self) -> Tensor:
        if bool((self.default_global_codes < 0).any()):
            raise ConfigError("this TTS checkpoint has no default voice; pass a prompt")
        return self.default_global_codes

    def synthesize_tokens(
        self, phonemes: Tensor, voice: Tensor, speed: float = 1.0, generator: torch.Generator | None = None, **options
    ) -> tuple[Tensor, dict]:
        """Codes [1, 1, T] and the codec extras (the voice's global codes) to decode them with.

        ``speed`` is not supported by an autoregressive model (it sets its own pace): 1.0 only.
        """
        if speed != 1.0:
            raise ValueError("the autoregressive TTS has no speed control; use speed=1.0")
        options = {k: v for k, v in options.items() if k in ("temperature", "top_k", "max_frames") and v is not None}
        codes = self.generate(phonemes, voice, generator=generator, **options)
        extras = {
            "global_codes": voice.numpy().astype(np.int64),
            "global_codebook_sizes": (self.config.global_codebook_size,) * self.config.global_num_codes,
        }
        return codes[:, None, :], extras

    def task_api(self):
        from speechkit.tts.api import TextToSpeech

        return TextToSpeech(self)
