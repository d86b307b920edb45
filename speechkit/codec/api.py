"""``Codec``: the numpy-in, numpy-out task API shared by every speechkit codec.

A codec model (a ``torch.nn.Module``) provides ``sample_rate``, ``frame_rate``, ``hop_length``,
``codebook_sizes`` (all stages it was trained with), ``encode_codes(wav [B, T], num_codebooks)
-> codes [B, K, N]`` and ``decode_codes(codes [B, K, N]) -> wav [B, N * hop_length]``; this class
adds input conversion, validation, the ``Tokens`` type and length bookkeeping.

A codec that also sends per-utterance side information (Single-Codec's global embedding) adds
``global_codebook_sizes`` (a non-empty tuple), ``encode_global(wav [B, T]) -> [B, G]`` and takes
``decode_codes(codes, global_codes=[B, G])``; its tokens carry ``extras["global_codes"]`` ([B, G]
int64) and ``extras["global_codebook_sizes"]`` (a tuple), which the token file stores too.
For training, ``forward(wav [B, T])`` returns a :class:`CodecForwardOutput`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from speechkit.audio import prepare_input
from speechkit.codec.bitstream import read_bitstream, write_bitstream
from speechkit.errors import BitstreamError
from speechkit.tokenizers.bitpacking import bits_per_code, check_code_range
from speechkit.tokenizers.residual_vq import ResidualQuantizerOutput
from speechkit.tokenizers.tokens import Tokens


@dataclass
class CodecForwardOutput:
    """Training-time output of a codec's ``forward`` (the contract of the shared codec recipe).

    Attributes:
        audio: [B, T] reconstruction.
        quantizer: the frame quantizer's losses and statistics (``perplexity``/``usage`` [n] per
            codebook); a codec with side information adds those losses into the same scalars.
        extra_metrics: further scalars to log (e.g. the global codes' perplexity).
    """

    audio: Tensor
    quantizer: ResidualQuantizerOutput
    extra_metrics: dict[str, Tensor] | None = None


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

    @property
    def global_codebook_sizes(self) -> tuple[int, ...]:
        """Sizes of the per-utterance global codes; empty for a codec without side information."""
        return tuple(getattr(self.model, "global_codebook_sizes", ()))

    def bitrate(self, num_codebooks: int | None = None) -> float:
        """Nominal bits per second of the frame tokens when ``num_codebooks`` stages are kept (all
        by default); the per-utterance global codes are counted by :meth:`global_bitrate`."""
        sizes = self.codebook_sizes[: num_codebooks or len(self.codebook_sizes)]
        return self.frame_rate * sum(int(np.ceil(np.log2(s))) for s in sizes)

    @property
    def global_bits(self) -> int:
        """Bits of side information sent once per utterance (0 without global codes)."""
        return sum(bits_per_code(size) for size in self.global_codebook_sizes)

    def global_bitrate(self, duration_seconds: float) -> float:
        """The global bits amortised over an utterance of ``duration_seconds``, in bits per second."""
        if duration_seconds <= 0:
            raise ValueError(f"duration_seconds must be > 0, got {duration_seconds}")
        return self.global_bits / duration_seconds

    @torch.inference_mode()
    def encode(self, wav: np.ndarray, sample_rate: int, num_codebooks: int | None = None) -> Tokens:
        """Audio [T] or [T, C] at ``sample_rate`` -> Tokens [1, K, N] (stereo mixed, rate converted).

        ``extras`` hold ``num_samples`` and, for a codec with global codes, ``global_codes`` [1, G]
        and ``global_codebook_sizes``.
        """
        num_codebooks = self._check_num_codebooks(num_codebooks)
        wav = prepare_input(wav, sample_rate, self.sample_rate)
        hop = int(self.model.hop_length)
        padded = np.pad(wav, (0, (-len(wav)) % hop))
        batch = torch.from_numpy(padded)[None].to(self._device)
        codes = self.model.encode_codes(batch, num_codebooks).cpu()
        extras = {"num_samples": np.array([len(wav)], dtype=np.int64)}
        if self.global_codebook_sizes:
            extras["global_codes"] = self.model.encode_global(batch).cpu().numpy().astype(np.int64)
            extras["global_codebook_sizes"] = self.global_codebook_sizes
        return Tokens(
            codes.numpy(), self.frame_rate, self.codebook_sizes[:num_codebooks], kind=self.kind, extras=extras
        )

    @torch.inference_mode()
    def decode(self, tokens: Tokens) -> np.ndarray:
        """Tokens of this codec -> float32 audio [T] (batch of one) at :attr:`sample_rate`.

        A codec with global codes refuses tokens that lack them or whose global codebooks differ.
        """
        if tokens.kind != self.kind:
            raise BitstreamError(f"tokens were made by a {tokens.kind!r} model, this codec is {self.kind!r}")
        if tokens.codebook_sizes != self.codebook_sizes[: tokens.num_codebooks]:
            raise BitstreamError(
                f"token codebook sizes {tokens.codebook_sizes} do not match this codec's {self.codebook_sizes}"
            )
        if tokens.codes.shape[0] != 1:
            raise BitstreamError(f"decode takes a batch of one, got {tokens.codes.shape[0]}")
        codes = torch.from_numpy(np.array(tokens.codes)).to(self._device)
        if self.global_codebook_sizes:
            global_codes = torch.from_numpy(self._checked_global_codes(tokens)).to(self._device)
            wav = self.model.decode_codes(codes, global_codes=global_codes)[0].float().cpu().numpy()
        else:
            wav = self.model.decode_codes(codes)[0].float().cpu().numpy()
        num_samples = tokens.extras.get("num_samples")
        if num_samples is not None:
            wav = wav[: int(np.asarray(num_samples).reshape(-1)[0])]
        return np.ascontiguousarray(wav, dtype=np.float32)

    @property
    def _device(self) -> torch.device:
        """Where the model's weights are: inputs go there (a model trained on a GPU is evaluated there)."""
        for tensor in (*self.model.parameters(), *self.model.buffers()):
            return tensor.device
        return torch.device("cpu")

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

    def _checked_global_codes(self, tokens: Tokens) -> np.ndarray:
        """extras["global_codes"] as int64 [1, G], checked against this codec's global codebooks."""
        if "global_codes" not in tokens.extras:
            raise BitstreamError(
                f"tokens lack extras['global_codes']: a {self.kind!r} codec needs the per-utterance global "
                f"codes ({len(self.global_codebook_sizes)} codes) that its encode() returns"
            )
        sizes = tuple(int(s) for s in tokens.extras.get("global_codebook_sizes", ()))
        if sizes != self.global_codebook_sizes:
            raise BitstreamError(
                f"global codebook sizes {sizes} do not match this codec's {self.global_codebook_sizes}"
            )
        global_codes = np.asarray(tokens.extras["global_codes"])
        if global_codes.shape != (1, len(sizes)) or not np.issubdtype(global_codes.dtype, np.integer):
            raise BitstreamError(
                f"extras['global_codes'] must be integer [1, {len(sizes)}], got {global_codes.dtype} "
                f"{global_codes.shape}"
            )
        check_code_range(global_codes[:, :, None], sizes)
        return global_codes.astype(np.int64)

    def _check_num_codebooks(self, num_codebooks: int | None) -> int:
        total = len(self.codebook_sizes)
        if num_codebooks is None:
            return total
        if not 1 <= int(num_codebooks) <= total:
            raise ValueError(f"num_codebooks must be in 1..{total}, got {num_codebooks}")
        return int(num_codebooks)
