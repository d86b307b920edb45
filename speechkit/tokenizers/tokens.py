"""``Tokens``: the named type that carries discrete audio codes across every boundary.

A codec's ``encode`` returns one, a TTS or music token decoder produces one, a codec's ``decode``
and the bitstream writer take one. It is validated once, here, so nothing downstream has to
re-check shapes, dtypes or code ranges.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from speechkit.errors import BitstreamError
from speechkit.tokenizers.bitpacking import bitrate, bits_per_code, check_code_range


@dataclass(frozen=True, eq=False, repr=False)
class Tokens:
    """Discrete codes of a batch of clips, with what is needed to interpret them.

    Validated on construction; ``codes`` is stored as a read-only int64 copy, so a ``Tokens`` is
    immutable. Two ``Tokens`` compare equal when every field (arrays by value) is equal.

    Args:
        codes: [B, K, T] integer array, ``0 <= codes[:, k] < codebook_sizes[k]`` (stored as int64).
        frame_rate: token frames per second (T / duration), > 0.
        codebook_sizes: the size of each of the K codebooks (a list is turned into a tuple).
        kind: the model kind that produced the codes (a registry key such as ``"rvq_codec"``); a
            decoder refuses tokens of another kind.
        extras: per-batch side information, e.g. ``{"global_embedding": ndarray [B, D]}`` (checked:
            2-D with B rows). Copied into a new dict.

    Raises:
        BitstreamError: (a ValueError) on a wrong shape, dtype, code range, size count, frame rate,
            kind or extras.

    Example:
        >>> tokens = Tokens(np.zeros((1, 8, 50), dtype=np.int64), 50.0, (1024,) * 8, kind="rvq_codec")
        >>> tokens.num_codebooks, tokens.num_frames, tokens.duration_seconds, tokens.bitrate
        (8, 50, 1.0, 4000.0)
        >>> tokens.select(2).bitrate
        1000.0
    """

    codes: np.ndarray
    frame_rate: float
    codebook_sizes: tuple[int, ...]
    kind: str
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        codes = _validated_codes(self.codes)
        sizes = _validated_sizes(self.codebook_sizes, codes.shape[1])
        check_code_range(codes, sizes)
        frame_rate = _validated_frame_rate(self.frame_rate)
        if not isinstance(self.kind, str) or not self.kind:
            raise BitstreamError(f"Tokens.kind must be a non-empty string, got {self.kind!r}")
        extras = _validated_extras(self.extras, codes.shape[0])
        codes = np.array(codes, dtype=np.int64, copy=True)  # own the data: nobody can mutate it behind us
        codes.flags.writeable = False
        # The dataclass is frozen; normalised values are stored the documented way around it.
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "codebook_sizes", sizes)
        object.__setattr__(self, "frame_rate", frame_rate)
        object.__setattr__(self, "extras", extras)

    @property
    def batch_size(self) -> int:
        """B, the number of clips."""
        return int(self.codes.shape[0])

    @property
    def num_codebooks(self) -> int:
        """K, the number of codebooks (residual stages, or 1 for a single-codebook codec)."""
        return int(self.codes.shape[1])

    @property
    def num_frames(self) -> int:
        """T, the number of token frames."""
        return int(self.codes.shape[2])

    @property
    def duration_seconds(self) -> float:
        """Duration covered by the tokens: T / frame_rate."""
        return self.num_frames / self.frame_rate

    @property
    def bitrate(self) -> float:
        """Bits per second: frame_rate * sum_k ceil(log2(codebook_sizes[k]))."""
        return bitrate(self.frame_rate, self.codebook_sizes)

    def to_torch(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The codes as a writable int64 tensor [B, K, T] (a copy: ``codes`` itself is read-only).

        Example:
            >>> Tokens(np.zeros((1, 2, 3), dtype=np.int64), 50.0, (4, 4), "x").to_torch().shape
            torch.Size([1, 2, 3])
        """
        return torch.tensor(self.codes, dtype=torch.long, device=device)

    def select(self, num_codebooks: int) -> Tokens:
        """The first ``num_codebooks`` codebooks (a lower bitrate of an RVQ stream).

        Args:
            num_codebooks: n, 1 <= n <= K.

        Returns:
            Tokens with codes [B, n, T], the first n sizes, the same frame rate, kind and extras.

        Example:
            >>> Tokens(np.zeros((2, 4, 3), dtype=np.int64), 75.0, (16,) * 4, "rvq").select(1).codes.shape
            (2, 1, 3)
        """
        if isinstance(num_codebooks, bool) or not isinstance(num_codebooks, (int, np.integer)):
            raise BitstreamError(f"num_codebooks must be an integer, got {num_codebooks!r}")
        if not 1 <= num_codebooks <= self.num_codebooks:
            raise BitstreamError(
                f"cannot select {num_codebooks} codebooks from tokens with {self.num_codebooks}"
            )
        n = int(num_codebooks)
        return dataclasses.replace(self, codes=self.codes[:, :n], codebook_sizes=self.codebook_sizes[:n])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tokens):
            return NotImplemented
        return (
            self.frame_rate == other.frame_rate
            and self.codebook_sizes == other.codebook_sizes
            and self.kind == other.kind
            and np.array_equal(self.codes, other.codes)
            and self.extras.keys() == other.extras.keys()
            and all(_values_equal(self.extras[key], other.extras[key]) for key in self.extras)
        )

    __hash__ = None  # holds arrays: equality is by value, so it cannot be hashed

    def __repr__(self) -> str:
        return (
            f"Tokens(kind={self.kind!r}, batch_size={self.batch_size}, num_codebooks={self.num_codebooks}, "
            f"num_frames={self.num_frames}, frame_rate={self.frame_rate}, "
            f"codebook_sizes={self.codebook_sizes}, extras={sorted(self.extras)})"
        )


def _validated_codes(codes: object) -> np.ndarray:
    if not isinstance(codes, np.ndarray):
        raise BitstreamError(
            f"Tokens.codes must be a numpy array [B, K, T], got {type(codes).__name__} "
            "(convert a torch tensor with .cpu().numpy())"
        )
    if codes.ndim != 3:
        raise BitstreamError(f"Tokens.codes must be [B, K, T] (3-D), got shape {codes.shape}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise BitstreamError(f"Tokens.codes must have an integer dtype, got {codes.dtype}")
    if codes.shape[1] == 0:
        raise BitstreamError("Tokens.codes has no codebooks (K = 0)")
    return codes


def _validated_sizes(codebook_sizes: object, num_codebooks: int) -> tuple[int, ...]:
    if isinstance(codebook_sizes, (str, bytes)) or not hasattr(codebook_sizes, "__len__"):
        raise BitstreamError(f"codebook_sizes must be a sequence of ints, got {codebook_sizes!r}")
    if len(codebook_sizes) != num_codebooks:
        raise BitstreamError(
            f"codebook_sizes has {len(codebook_sizes)} entries but codes have K = {num_codebooks} codebooks"
        )
    for size in codebook_sizes:
        bits_per_code(size)  # raises on a non-integer, a size < 1 or one too large to pack
    return tuple(int(size) for size in codebook_sizes)


def _validated_frame_rate(frame_rate: object) -> float:
    if isinstance(frame_rate, bool) or not isinstance(frame_rate, (int, float, np.integer, np.floating)):
        raise BitstreamError(f"frame_rate must be a number, got {frame_rate!r}")
    value = float(frame_rate)
    if not math.isfinite(value) or value <= 0:
        raise BitstreamError(f"frame_rate must be finite and > 0, got {value}")
    return value


def _validated_extras(extras: object, batch_size: int) -> dict[str, Any]:
    if not isinstance(extras, dict) or not all(isinstance(key, str) for key in extras):
        raise BitstreamError(f"Tokens.extras must be a dict with string keys, got {extras!r}")
    embedding = extras.get("global_embedding")
    if embedding is not None and (
        not isinstance(embedding, np.ndarray) or embedding.ndim != 2 or embedding.shape[0] != batch_size
    ):
        shape = getattr(embedding, "shape", type(embedding).__name__)
        raise BitstreamError(
            f"extras['global_embedding'] must be a numpy array [B={batch_size}, D], got {shape}"
        )
    return dict(extras)


def _values_equal(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    return bool(a == b)
