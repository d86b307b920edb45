"""``Codec``: the numpy-in, numpy-out task API shared by every speechkit codec.

A codec model (a ``torch.nn.Module``) provides ``sample_rate``, ``frame_rate``, ``hop_length``,
``codebook_sizes`` (all stages it was trained with), ``encode_codes(wav [B, T], num_codebooks)
-> codes [B, K, N]`` and ``decode_codes(codes [B, K, N]) -> wav [B, N * hop_length]``; this class
adds input conversion, validation, the ``Tokens`` type and length bookkeeping.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from speechkit.audio import prepare_input
from speechkit.codec.bitstream import read_bitstream, write_bitstream
from speechkit.errors import BitstreamError
from speechkit.tokenizers.tokens import Tokens


class Codec:
    """Encode speech to tokens and decode tokens to speech.

    Args:
        model: a codec model in eval mode (see module docstring for what it provides).

    Example:
        >>> import speechkit
        >>> from speechkit.assets import sample_speech_path
        >>> from speechkit.audio import load_audio
        >>> codec = speechkit.load("mel-rvq-demo")
        >>> wav, sr = load_audio(sample_speech_path())
        >>> tokens = codec.encode(wav[:8000], sr)
        >>> tokens.codes.shape[1], codec.decode(tokens).shape
        (8, (8000,))
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()
        self.name: str = getattr(model, "checkpoint_name", model.config.KIND)
        self.fingerprint: str = getattr(model, "fingerprint", "unsaved")

    @property
    def kind(self) -> str:
        return self.model.config.KIND

    @property
    def sample_rate(self) -> int:
        return int(self.model.sample_rate)

    @property
    def frame_rate(self) -> float:
        return float(self.model.frame_rate)

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return tuple(self.model.codebook_sizes)

    def bitrate(self, num_codebooks: int | None = None) -> float:
        """Nominal bits per second when ``num_codebooks`` stages are kept (all by default)."""
        sizes = self.codebook_sizes[: num_codebooks or len(self.codebook_sizes)]
        return self.frame_rate * sum(int(np.ceil(np.log2(s))) for s in sizes)

    @torch.inference_mode()
    def encode(self, wav: np.ndarray, sample_rate: int, num_codebooks: int | None = None) -> Tokens:
        """Audio [T] or [T, C] at ``sample_rate`` -> Tokens [1, K, N] (stereo mixed, rate converted)."""
        num_codebooks = self._check_num_codebooks(num_codebooks)
        wav = prepare_input(wav, sample_rate, self.sample_rate)
        hop = int(self.model.hop_length)
        padded = np.pad(wav, (0, (-len(wav)) % hop))
        codes = self.model.encode_codes(torch.from_numpy(padded)[None], num_codebooks)
        return Tokens(
            codes.numpy(),
            self.frame_rate,
            self.codebook_sizes[:num_codebooks],
            kind=self.kind,
            extras={"num_samples": np.array([len(wav)], dtype=np.int64)},
        )

    @torch.inference_mode()
    def decode(self, tokens: Tokens) -> np.ndarray:
        """Tokens of this codec -> float32 audio [T] (batch of one) at :attr:`sample_rate`."""
        if tokens.kind != self.kind:
            raise BitstreamError(f"tokens were made by a {tokens.kind!r} model, this codec is {self.kind!r}")
        if tokens.codebook_sizes != self.codebook_sizes[: tokens.num_codebooks]:
            raise BitstreamError(
                f"token codebook sizes {tokens.codebook_sizes} do not match this codec's {self.codebook_sizes}"
            )
        if tokens.codes.shape[0] != 1:
            raise BitstreamError(f"decode takes a batch of one, got {tokens.codes.shape[0]}")
        wav = self.model.decode_codes(torch.from_numpy(np.array(tokens.codes)))[0].numpy()
        num_samples = tokens.extras.get("num_samples")
        if num_samples is not None:
            wav = wav[: int(np.asarray(num_samples).reshape(-1)[0])]
        return np.ascontiguousarray(wav, dtype=np.float32)

    def num_codebooks_for(self, kbps: float) -> int:
        """The number of codebooks whose bitrate is nearest ``kbps`` (ties go to fewer)."""
        per_codebook = self.bitrate(1)
        wanted = kbps * 1000 / per_codebook
        return int(min(len(self.codebook_sizes), max(1, np.floor(wanted + 0.5 - 1e-9))))

    def to_bytes(self, tokens: Tokens) -> bytes:
        """Tokens -> the compact token file (see :mod:`speechkit.codec.bitstream`)."""
        return write_bitstream(
            tokens, model=self.name, fingerprint=self.fingerprint, sample_rate=self.sample_rate
        )

    def from_bytes(self, data: bytes) -> Tokens:
        """Token file -> Tokens, refusing files written by another model or another set of weights."""
        header, tokens = read_bitstream(data)
        if header["kind"] != self.kind or header["fingerprint"] != self.fingerprint:
            raise BitstreamError(
                f"token file was written by model {header['model']!r} ({header['kind']}, weights "
                f"{header['fingerprint']}); this codec is {self.name!r} ({self.kind}, weights {self.fingerprint})"
            )
        return tokens

    def _check_num_codebooks(self, num_codebooks: int | None) -> int:
        total = len(self.codebook_sizes)
        if num_codebooks is None:
            return total
        if not 1 <= int(num_codebooks) <= total:
            raise ValueError(f"num_codebooks must be in 1..{total}, got {num_codebooks}")
        return int(num_codebooks)
