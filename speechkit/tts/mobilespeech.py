"""MobileSpeech-style zero-shot TTS: a parallel speech mask decoder (SMD) over RVQ codec tokens.

Ji et al. 2024 (MobileSpeech), adapted to a frame-rate RVQ codec and CPU budgets:

- phonemes -> transformer text encoder -> per-phoneme durations (predicted; trained on the aligner's
  durations) -> length regulation to codec frames (50 Hz for codec-rvq);
- the speaker prompt (a few seconds of reference speech: its codec tokens, optionally its phonemes
  expanded by its own durations: MobileSpeech's fine-grained prompt durations) is encoded once and
  joined by cross-attention in the duration predictor and in every SMD block, which makes the
  model zero-shot (the prompt's speaker never needs to be seen in training);
- the SMD predicts codec layer j given layers < j, the text frames and the prompt. Training picks
  j per utterance with layer weights that favour the low layers (they carry most information: the
  codec's weights mechanism), masks a cosine-scheduled share of layer j and masks every layer above
  j entirely (the high-level probabilistic mask: information flows from less to more);
- inference fills layer 1 by confidence-ordered iterative decoding in a few steps and each higher
  layer in one step; the codec decoder turns the K layers into audio.

Shapes: phonemes [B, N]; codes [B, K, T]; prompt codes [B, K, P].

Example:
    >>> cfg = MobileSpeechConfig(dim=32, num_heads=2, text_layers=1, prompt_layers=1, duration_layers=1,
    ...                          decoder_layers=1, num_codebooks=2, codebook_size=16)
    >>> model = MobileSpeech(cfg).eval()
    >>> out = model.generate(torch.randint(4, 80, (1, 7)), torch.randint(0, 16, (1, 2, 20)),
    ...                      steps=(2, 1), generator=torch.Generator().manual_seed(0))
    >>> out.codes.shape[:2], bool((out.codes < 16).all()), int(out.durations.sum()) == out.codes.shape[2]
    (torch.Size([1, 2]), True, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.config import ModelConfig
from speechkit.decoders.masked import iterative_decode, random_mask
from speechkit.errors import ConfigError
from speechkit.nn.masks import lengths_to_padding_mask
from speechkit.nn.transformer import Transformer
from speechkit.text.symbols import SYMBOLS_VERSION, PhonemeSymbols
from speechkit.tts.durations import length_regulate


@dataclass(frozen=True, kw_only=True)
class MobileSpeechConfig(ModelConfig):
    """Config of :class:`MobileSpeech`.

    ``codec`` / ``codec_fingerprint`` name the codec weights whose tokens the model predicts (the
    first ``num_codebooks`` layers); ``layer_weights`` are the per-layer training probabilities
    (empty = 0.4 for layer 1, the rest shared evenly).
    """

    KIND = "mobilespeech_tts"
    num_symbols: int = len(PhonemeSymbols())
    symbols_version: int = SYMBOLS_VERSION
    codec: str = "codec-rvq"
    codec_fingerprint: str = ""
    sample_rate: int = 16000
    frame_rate: float = 50.0
    num_codebooks: int = 6
    codebook_size: int = 1024
    dim: int = 192
    num_heads: int = 4
    mlp_ratio: float = 3.0
    text_layers: int = 3
    prompt_layers: int = 2
    duration_layers: int = 2
    decoder_layers: int = 5
    dropout: float = 0.1
    layer_weights: tuple[float, ...] = ()
    default_steps: tuple[int, ...] = (8,)
    default_prompt_frames: int = 150


@dataclass
class GeneratedSpeech:
    """Output of :meth:`MobileSpeech.generate`: codes [B, K, T] and durations [B, N] in frames."""

    codes: Tensor
    durations: Tensor


class CodeEmbedding(nn.Module):
    """Sum of per-layer code embeddings with learned layer weights; id ``codebook_size`` = [MASK]."""

    def __init__(self, num_codebooks: int, codebook_size: int, dim: int) -> None:
        super().__init__()
        self.mask_id = codebook_size
        self.tables = nn.Parameter(torch.randn(num_codebooks, codebook_size + 1, dim) * dim**-0.5)
        self.layer_weights = nn.Parameter(torch.ones(num_codebooks))

    def forward(self, codes: Tensor) -> Tensor:
        """codes [B, K, T] (mask id allowed) -> [B, T, D]."""
        k = codes.shape[1]
        gathered = torch.stack([F.embedding(codes[:, i], self.tables[i]) for i in range(k)], dim=1)
        return (gathered * self.layer_weights[:k, None, None]).sum(1)


class MobileSpeech(nn.Module):
    """Zero-shot TTS over RVQ codec tokens with a parallel speech mask decoder (see module doc)."""

    config_class = MobileSpeechConfig

    def __init__(self, config: MobileSpeechConfig) -> None:
        super().__init__()
        if config.layer_weights and len(config.layer_weights) != config.num_codebooks:
            raise ConfigError(f"layer_weights needs {config.num_codebooks} entries, got {config.layer_weights}")
        self.config = config
        self.sample_rate, self.frame_rate = config.sample_rate, config.frame_rate
        d, heads, ratio, drop = config.dim, config.num_heads, config.mlp_ratio, config.dropout
        self.phoneme_embedding = nn.Embedding(config.num_symbols, d, padding_idx=0)
        self.text_encoder = Transformer(d, config.text_layers, heads, ratio, dropout=drop)
        self.code_embedding = CodeEmbedding(config.num_codebooks, config.codebook_size, d)
        self.prompt_text_projection = nn.Linear(d, d)
        self.prompt_encoder = Transformer(d, config.prompt_layers, heads, ratio, dropout=drop)
        self.duration_predictor = Transformer(
            d, config.duration_layers, heads, ratio, cross_attention=True, dropout=drop
        )
        self.duration_head = nn.Linear(d, 1)
        self.target_layer_embedding = nn.Embedding(config.num_codebooks, d)
        self.decoder = Transformer(d, config.decoder_layers, heads, ratio, cross_attention=True, dropout=drop)
        self.heads = nn.Parameter(torch.randn(config.num_codebooks, config.codebook_size, d) * d**-0.5)
        self.head_bias = nn.Parameter(torch.zeros(config.num_codebooks, config.codebook_size))
        weights = torch.tensor(config.layer_weights or self._default_layer_weights(config.num_codebooks))
        self.register_buffer("layer_probabilities", weights / weights.sum(), persistent=False)
        # the shipped default voice: a training speaker's prompt codes, stored with the weights
        self.register_buffer(
            "default_prompt_codes",
            torch.zeros(1, config.num_codebooks, config.default_prompt_frames, dtype=torch.long),
        )
        self.register_buffer("default_prompt_length", torch.zeros((), dtype=torch.long))

    @staticmethod
    def _default_layer_weights(k: int) -> list[float]:
        return [1.0] if k == 1 else [0.4] + [0.6 / (k - 1)] * (k - 1)

    @property
    def mask_id(self) -> int:
        return self.config.codebook_size

    def set_default_prompt(self, codes: Tensor) -> None:
        """Store prompt codes [K', P] (P <= default_prompt_frames) as the shipped default voice."""
        k, p = codes.shape[0], min(codes.shape[1], self.config.default_prompt_frames)
        if k < self.config.num_codebooks:
            raise ValueError(f"the default prompt needs {self.config.num_codebooks} codec layers, got {k}")
        self.default_prompt_codes.zero_()
        self.default_prompt_codes[0, :, :p] = codes[: self.config.num_codebooks, :p]
        self.default_prompt_length.fill_(p)

    def default_prompt(self) -> Tensor:
        """The default voice's prompt codes [1, K, P]."""
        p = int(self.default_prompt_length)
        if p == 0:
            raise ConfigError("this MobileSpeech checkpoint has no default voice; pass a prompt")
        return self.default_prompt_codes[:, :, :p]

    # --- encoders -------------------------------------------------------------------------------

    def encode_text(self, phonemes: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """phonemes [B, N] -> (encodings [B, N, D], valid [B, N])."""
        valid = phonemes != 0 if lengths is None else lengths_to_padding_mask(lengths, phonemes.shape[1])
        return self.text_encoder(self.phoneme_embedding(phonemes), valid), valid

    def encode_prompt(
        self,
        prompt_codes: Tensor,
        prompt_lengths: Tensor | None = None,
        prompt_phonemes: Tensor | None = None,
        prompt_durations: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Prompt codes [B, K', P] (K' <= K layers) -> (context [B, P, D], valid [B, P]).

        With ``prompt_phonemes`` [B, M] and ``prompt_durations`` [B, M] (frames, summing to P), the
        prompt's phonemes expanded by its own durations are added (fine-grained prompt durations).
        """
        length = prompt_codes.shape[2]
        if prompt_lengths is None:
            prompt_lengths = torch.full((prompt_codes.shape[0],), length, device=prompt_codes.device)
        valid = lengths_to_padding_mask(prompt_lengths, length)
        x = self.code_embedding(prompt_codes.clamp(0, self.mask_id))
        if prompt_phonemes is not None and prompt_durations is not None:
            text, _ = self.encode_text(prompt_phonemes)
            x = x + self.prompt_text_projection(length_regulate(text, prompt_durations, length))
        return self.prompt_encoder(x, valid), valid

    def predict_log_durations(
        self, text: Tensor, text_valid: Tensor, prompt: Tensor, prompt_valid: Tensor
    ) -> Tensor:
        """log(1 + frames) per phoneme [B, N]; the prompt sets speaking rate through cross-attention."""
        h = self.duration_predictor(text, text_valid, prompt, prompt_valid)
        return self.duration_head(h)[..., 0]

    # --- the speech mask decoder ----------------------------------------------------------------

    def decoder_logits(
        self,
        inputs: Tensor,
        layer: Tensor,
        frames: Tensor,
        frame_valid: Tensor,
        prompt: Tensor,
        prompt_valid: Tensor,
    ) -> Tensor:
        """Logits [B, T, V] for target layer ``layer`` [B] given input codes [B, K, T] (mask id where unknown)."""
        x = frames + self.code_embedding(inputs) + self.target_layer_embedding(layer)[:, None, :]
        h = self.decoder(x, frame_valid, prompt, prompt_valid)
        return torch.einsum("btd,bvd->btv", h, self.heads[layer]) + self.head_bias[layer][:, None, :]

    def training_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Duration loss + masked-token cross-entropy on one sampled codec layer per utterance.

        Batch: ``phonemes`` [B, N], ``phoneme_lengths`` [B], ``durations`` [B, N]; ``codes`` [B, K, T]
        a window of the utterance's frames starting at ``frame_start`` [B] with ``frame_lengths`` [B];
        ``prompt_codes`` [B, K, P], ``prompt_lengths`` [B]; optionally ``prompt_phonemes`` [B, M] and
        ``prompt_durations`` [B, M].
        """
        text, text_valid = self.encode_text(batch["phonemes"], batch["phoneme_lengths"])
        prompt, prompt_valid = self.encode_prompt(
            batch["prompt_codes"],
            batch["prompt_lengths"],
            batch.get("prompt_phonemes"),
            batch.get("prompt_durations"),
        )
        log_durations = self.predict_log_durations(text, text_valid, prompt, prompt_valid)
        target_durations = torch.log1p(batch["durations"].float())
        duration_loss = F.mse_loss(log_durations[text_valid], target_durations[text_valid])

        codes = batch["codes"][:, : self.config.num_codebooks]
        num_frames = codes.shape[2]
        frames = length_regulate(text, batch["durations"])
        index = (batch["frame_start"][:, None] + torch.arange(num_frames, device=codes.device)[None]).clamp_max(
            frames.shape[1] - 1
        )
        frames = torch.gather(frames, 1, index[..., None].expand(-1, -1, frames.shape[2]))
        frame_valid = lengths_to_padding_mask(batch["frame_lengths"], num_frames)

        layer = torch.multinomial(self.layer_probabilities, codes.shape[0], replacement=True)  # [B]
        masked = random_mask(frame_valid)
        k_index = torch.arange(codes.shape[1], device=codes.device)[None, :, None]
        below = k_index < layer[:, None, None]
        at = (k_index == layer[:, None, None]) & ~masked[:, None, :]
        inputs = torch.where(below | at, codes, torch.full_like(codes, self.mask_id))
        logits = self.decoder_logits(inputs, layer, frames, frame_valid, prompt, prompt_valid)
        target = torch.gather(codes, 1, layer[:, None, None].expand(-1, 1, num_frames))[:, 0]
        token_loss = F.cross_entropy(logits[masked].float(), target[masked])
        accuracy = (logits[masked].argmax(-1) == target[masked]).float().mean()
        loss = token_loss + duration_loss
        return loss, {
            "token_ce": float(token_loss.detach()),
            "duration_mse": float(duration_loss.detach()),
            "accuracy": float(accuracy),
        }

    # --- inference ------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        phonemes: Tensor,
        prompt_codes: Tensor,
        steps: tuple[int, ...] | None = None,
        num_codebooks: int | None = None,
        temperature: float = 0.8,
        top_k: int | None = 50,
        speed: float = 1.0,
        prompt_phonemes: Tensor | None = None,
        prompt_durations: Tensor | None = None,
        durations: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> GeneratedSpeech:
        """Codes [1, K, T] for phonemes [1, N] in the voice of prompt codes [1, K', P].

        Args:
            steps: decoding steps per layer (missing entries = 1); default ``config.default_steps``.
            num_codebooks: layers to generate (<= K; fewer is faster and coarser).
            temperature, top_k: sampling of the first layer's steps (higher layers are greedy).
            speed: > 1 speaks faster (durations divided by it).
            durations: [1, N] frames per phoneme to use instead of the predicted ones.
        """
        if phonemes.shape[0] != 1:
            raise ValueError("generate takes one utterance (batch of one)")
        k_total = self.config.num_codebooks
        k_gen = k_total if num_codebooks is None else num_codebooks
        if not 1 <= k_gen <= k_total:
            raise ValueError(f"num_codebooks must be in 1..{k_total}, got {num_codebooks}")
        steps = tuple(steps or self.config.default_steps)
        text, text_valid = self.encode_text(phonemes)
        prompt, prompt_valid = self.encode_prompt(
            prompt_codes[:, :k_total], None, prompt_phonemes, prompt_durations
        )
        if durations is None:
            log_durations = self.predict_log_durations(text, text_valid, prompt, prompt_valid)
            durations = (torch.expm1(log_durations) / speed).round().clamp_min(1).long()
        frames = length_regulate(text, durations)
        num_frames = frames.shape[1]
        frame_valid = torch.ones(1, num_frames, dtype=torch.bool, device=phonemes.device)
        codes = torch.full((1, k_total, num_frames), self.mask_id, dtype=torch.long, device=phonemes.device)
        for j in range(k_gen):
            layer = torch.tensor([j], device=phonemes.device)

            def logits_fn(tokens: Tensor, masked: Tensor, j: int = j, layer: Tensor = layer) -> Tensor:
                inputs = codes.clone()
                inputs[:, j] = torch.where(masked, torch.full_like(tokens, self.mask_id), tokens)
                return self.decoder_logits(inputs, layer, frames, frame_valid, prompt, prompt_valid)

            num_steps = steps[j] if j < len(steps) else 1
            layer_temperature = temperature if j == 0 else 0.0
            codes[:, j] = iterative_decode(
                logits_fn,
                torch.zeros(1, num_frames, dtype=torch.long, device=phonemes.device),
                frame_valid.clone(),
                num_steps,
                layer_temperature,
                top_k,
                generator,
            )
        return GeneratedSpeech(codes[:, :k_gen], durations)

    # --- the TTS API's model contract -------------------------------------------------------------

    def voice_from_tokens(self, tokens) -> Tensor:
        """A prompt's codec Tokens -> the voice this model conditions on: prompt codes [1, K, P]."""
        codes = torch.from_numpy(np.array(tokens.codes[:, : self.config.num_codebooks])).long()
        return codes[:, :, : self.config.default_prompt_frames]

    def default_voice(self) -> Tensor:
        return self.default_prompt()

    def synthesize_tokens(
        self, phonemes: Tensor, voice: Tensor, speed: float = 1.0, generator: torch.Generator | None = None, **options
    ) -> tuple[Tensor, dict]:
        """Codes [1, K, T] and the codec extras for them (none for an RVQ codec)."""
        return self.generate(phonemes, voice, speed=speed, generator=generator, **options).codes, {}

    def task_api(self):
        from speechkit.tts.api import TextToSpeech

        return TextToSpeech(self)
