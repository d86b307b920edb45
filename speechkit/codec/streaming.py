"""Chunk-by-chunk encoding and decoding with :class:`~speechkit.codec.causal_rvq_codec.CausalRVQCodec`.

Both objects keep explicit state (the STFT's left context, every causal conv's cache, the
overlap-add tail) and emit only what is final, so concatenating the outputs of ``push`` calls and
``flush`` gives exactly the offline ``encode_codes`` / ``decode_codes`` result (identical codes,
audio to float rounding), whatever the chunk sizes. ``flush`` ends the stream and resets the
object for the next one.

Example:
    >>> import numpy as np
    >>> from speechkit.codec.causal_rvq_codec import CausalRVQCodec, CausalRVQCodecConfig
    >>> config = CausalRVQCodecConfig(dim=16, latent_dim=8, num_quantizers=2, codebook_size=16,
    ...                               encoder_blocks=(1, 1), decoder_blocks=(1, 1))
    >>> model = CausalRVQCodec(config).eval()
    >>> encoder, decoder = StreamingEncoder(model), StreamingDecoder(model)
    >>> wav = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    >>> codes = [encoder.push(wav[:700]), encoder.push(wav[700:]), encoder.flush()]
    >>> [c.shape[1] for c in codes]  # tokens of 320 samples, the last one padded by flush
    [2, 1, 1]
    >>> audio = [decoder.push(c) for c in codes] + [decoder.flush()]
    >>> sum(len(a) for a in audio)  # 4 tokens x 320 samples
    1280
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from speechkit.codec.causal_rvq_codec import CausalRVQCodec, spectrum_from_head
from speechkit.errors import AudioError, BitstreamError, ConfigError


def _causal_model(codec: object) -> CausalRVQCodec:
    """The model inside ``codec`` (a :class:`CausalRVQCodec` or a task API wrapping one)."""
    model = getattr(codec, "model", codec)
    if not isinstance(model, CausalRVQCodec):
        raise ConfigError(f"streaming needs a CausalRVQCodec, got {type(model).__name__}")
    return model


class StreamingEncoder:
    """Audio chunks of any length -> the codes of every token whose 320 samples have all arrived.

    Args:
        codec: a :class:`CausalRVQCodec` (or its ``task_api()``), used in eval mode.
        num_codebooks: codebooks to emit (default all).

    ``push(wav [T]) -> codes [K, F_new]`` (int64, F_new may be 0); ``flush() -> codes [K, 0 or 1]``
    pads the last partial token with zeros, as the offline ``encode_codes`` does.
    """

    def __init__(self, codec: object, num_codebooks: int | None = None) -> None:
        self.model = _causal_model(codec).eval()
        total = self.model.config.num_quantizers
        if num_codebooks is not None and not 1 <= num_codebooks <= total:
            raise ValueError(f"num_codebooks must be in 1..{total}, got {num_codebooks}")
        self.num_codebooks = num_codebooks or total
        self.reset()

    def reset(self) -> None:
        """Forget the stream: zero context and caches (what the offline left padding holds)."""
        self.pending = np.zeros(0, dtype=np.float32)  # samples of the unfinished token
        self.context = torch.zeros(1, self.model.analysis_context)  # STFT left context
        self.conv_state = self.model.encoder.initial_state(1)

    @torch.inference_mode()
    def push(self, wav: np.ndarray) -> np.ndarray:
        """Add audio [T] (float, at the codec's sample rate); returns new codes [K, F_new] int64."""
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1:
            raise AudioError(f"push takes mono audio [T], got shape {wav.shape}")
        if not np.all(np.isfinite(wav)):
            raise AudioError("audio chunk contains NaN or Inf")
        self.pending = np.concatenate([self.pending, wav])
        usable = len(self.pending) // self.model.hop_length * self.model.hop_length
        if usable == 0:
            return np.zeros((self.num_codebooks, 0), dtype=np.int64)
        chunk = torch.from_numpy(self.pending[:usable].copy())[None]
        self.pending = self.pending[usable:]
        return self._encode(chunk)

    def flush(self) -> np.ndarray:
        """End the stream: codes [K, 1] of the zero-padded last partial token ([K, 0] if none)."""
        if len(self.pending):
            codes = self.push(np.zeros(self.model.hop_length - len(self.pending), dtype=np.float32))
        else:
            codes = np.zeros((self.num_codebooks, 0), dtype=np.int64)
        self.reset()
        return codes

    def _encode(self, chunk: Tensor) -> np.ndarray:
        """Audio [1, n * hop_length] -> codes [K, n], advancing the state."""
        audio = torch.cat([self.context, chunk], dim=-1)
        if self.model.analysis_context:
            self.context = audio[:, -self.model.analysis_context :]
        latent, self.conv_state = self.model.encoder.step(self.model.log_magnitude(audio), self.conv_state)
        return self.model.quantizer.encode(latent, self.num_codebooks)[0].numpy()


class StreamingDecoder:
    """Code chunks [K, n] -> the audio samples that are final (later tokens cannot change them).

    Args:
        codec: a :class:`CausalRVQCodec` (or its ``task_api()``), used in eval mode.

    ``push(codes [K, n]) -> audio [S]`` float32 (K <= num_quantizers, the same K every call);
    ``flush() -> audio [n_fft - stft_hop]``: the last samples, which miss frames that never come.
    Over a stream of M tokens the outputs add up to ``M * hop_length`` samples.
    """

    def __init__(self, codec: object) -> None:
        self.model = _causal_model(codec).eval()
        self.reset()

    def reset(self) -> None:
        """Forget the stream."""
        self.conv_state = self.model.decoder.initial_state(1)
        self.tail = self.model.istft.initial_state(1)
        self.to_drop = self.model.istft.tail_length  # first OLA samples lie before time 0

    @torch.inference_mode()
    def push(self, codes: np.ndarray | Tensor) -> np.ndarray:
        """Add codes [K, n] (or [1, K, n]); returns the newly final audio samples [S] float32."""
        codes = torch.as_tensor(np.asarray(codes)).long()
        if codes.ndim == 2:
            codes = codes[None]
        if codes.ndim != 3 or codes.shape[0] != 1:
            raise BitstreamError(f"push takes codes [K, n], got shape {tuple(codes.shape)}")
        if codes.shape[-1] == 0:
            return np.zeros(0, dtype=np.float32)
        if codes.min() < 0 or codes.max() >= self.model.config.codebook_size:
            raise BitstreamError(f"codes must lie in [0, {self.model.config.codebook_size})")
        head, self.conv_state = self.model.decoder.step(self.model.quantizer.decode(codes), self.conv_state)
        audio, self.tail = self.model.istft.step(*spectrum_from_head(head), self.tail)
        return self._drop_before_time_zero(audio[0])

    @torch.inference_mode()
    def flush(self) -> np.ndarray:
        """End the stream: the last ``n_fft - stft_hop`` samples; then reset."""
        audio = self._drop_before_time_zero(self.model.istft.flush(self.tail)[0])
        self.reset()
        return audio

    def _drop_before_time_zero(self, audio: Tensor) -> np.ndarray:
        drop = min(self.to_drop, audio.shape[0])
        self.to_drop -= drop
        return audio[drop:].numpy().astype(np.float32)
