"""Codec tokens on device (:class:`RuntimeTokens`) and the ``.sktk`` token file, in numpy.

The file format is the one ``speechkit encode`` writes (``speechkit.codec.bitstream`` and
``speechkit.tokenizers.bitpacking``), reimplemented here byte for byte so the runtime needs neither
torch nor speechkit. Layout (integers big-endian)::

    b"SKTK"  magic (4 bytes)
    u8       format version (2 written; 1 and 2 read)
    u32      header length H
    H bytes  UTF-8 JSON header, compact separators, keys in this order: model, kind, fingerprint,
             sample_rate, frame_rate, codebook_sizes, num_frames, num_samples, payload_bytes and
             (version 2) global_codebook_sizes, global_payload_bytes
    payload  codes [K, N] packed frame-major, ceil(log2(size_k)) bits each, MSB first, the last
             byte zero-padded
    global   version 2: the G global codes packed as one frame; empty without global codes

Example:
    >>> tokens = RuntimeTokens(np.arange(6).reshape(1, 2, 3), 50.0, (8, 8), "rvq_codec", num_samples=960)
    >>> data = write_token_file(tokens, model="codec-rvq", fingerprint="abc", sample_rate=16000)
    >>> header, back = read_token_file(data)
    >>> header["model"], back.codes.tolist(), back.num_samples
    ('codec-rvq', [[[0, 1, 2], [3, 4, 5]]], 960)
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from speechkit_rt.errors import BitstreamError

MAGIC = b"SKTK"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
_PREFIX = struct.Struct(">4sBI")
_HEADER_FIELDS = (
    "model", "kind", "fingerprint", "sample_rate", "frame_rate", "codebook_sizes", "num_frames",
    "num_samples", "payload_bytes",
)  # fmt: skip
_GLOBAL_FIELDS = ("global_codebook_sizes", "global_payload_bytes")  # version 2 on
_MAX_BITS = 62  # as speechkit's bit packing: shifted int64 codes stay in range


@dataclass(frozen=True, eq=False)
class RuntimeTokens:
    """One clip's codec tokens, validated on construction (the runtime's ``speechkit`` ``Tokens``).

    Args:
        codes: [1, K, N] integer codes, ``0 <= codes[:, k] < codebook_sizes[k]`` (stored as a
            read-only int64 copy).
        frame_rate: token frames per second.
        codebook_sizes: size of each of the K codebooks.
        kind: the codec kind that made them (the bundle's ``model_kind``, e.g. ``"rvq_codec"``).
        num_samples: audio samples the codes stand for (decode trims to it); None when unknown.
        global_codes: [1, G] per-utterance codes of a codec with side information, else None.
        global_codebook_sizes: size of each of the G global codebooks (empty without global codes).

    Raises:
        BitstreamError: a wrong shape, dtype, code range, size count, frame rate or kind.

    Example:
        >>> tokens = RuntimeTokens(np.zeros((1, 4, 50), dtype=np.int64), 50.0, (1024,) * 4, "rvq_codec")
        >>> tokens.num_codebooks, tokens.num_frames, tokens.bitrate, tokens.select(2).bitrate
        (4, 50, 2000.0, 1000.0)
    """

    codes: np.ndarray
    frame_rate: float
    codebook_sizes: tuple[int, ...]
    kind: str
    num_samples: int | None = None
    global_codes: np.ndarray | None = None
    global_codebook_sizes: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        codes = _checked_codes(self.codes, self.codebook_sizes, "codes")
        if codes.ndim != 3 or codes.shape[0] != 1:
            raise BitstreamError(f"codes must be [1, K, N] (one clip), got shape {codes.shape}")
        if isinstance(self.frame_rate, bool) or not isinstance(self.frame_rate, (int, float, np.number)):
            raise BitstreamError(f"frame_rate must be a number, got {self.frame_rate!r}")
        if not math.isfinite(float(self.frame_rate)) or float(self.frame_rate) <= 0:
            raise BitstreamError(f"frame_rate must be finite and > 0, got {self.frame_rate}")
        if not isinstance(self.kind, str) or not self.kind:
            raise BitstreamError(f"kind must be a non-empty string, got {self.kind!r}")
        num_samples = self.num_samples
        if num_samples is not None:
            num_samples = _as_int(num_samples, "num_samples")
            if num_samples < 0:
                raise BitstreamError(f"num_samples must be >= 0, got {num_samples}")
        global_sizes = tuple(_as_int(s, "global codebook size") for s in self.global_codebook_sizes)
        global_codes = None
        if self.global_codes is not None or global_sizes:
            if self.global_codes is None or not global_sizes:
                raise BitstreamError("global_codes and global_codebook_sizes come together (both or neither)")
            global_codes = _checked_codes(self.global_codes, global_sizes, "global_codes")
            if global_codes.shape != (1, len(global_sizes)):
                raise BitstreamError(
                    f"global_codes must be [1, G={len(global_sizes)}], got shape {global_codes.shape}"
                )
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "frame_rate", float(self.frame_rate))
        object.__setattr__(self, "codebook_sizes", tuple(int(s) for s in self.codebook_sizes))
        object.__setattr__(self, "num_samples", num_samples)
        object.__setattr__(self, "global_codes", global_codes)
        object.__setattr__(self, "global_codebook_sizes", global_sizes)

    @property
    def num_codebooks(self) -> int:
        """K."""
        return int(self.codes.shape[1])

    @property
    def num_frames(self) -> int:
        """N, the number of token frames."""
        return int(self.codes.shape[2])

    @property
    def duration_seconds(self) -> float:
        """N / frame_rate."""
        return self.num_frames / self.frame_rate

    @property
    def bitrate(self) -> float:
        """Bits per second of the frame codes: frame_rate * sum_k ceil(log2(codebook_sizes[k]))."""
        return self.frame_rate * sum(bits_per_code(size) for size in self.codebook_sizes)

    def select(self, num_codebooks: int) -> RuntimeTokens:
        """The first ``num_codebooks`` codebooks (a lower bitrate of a residual-VQ stream)."""
        k = _as_int(num_codebooks, "num_codebooks")
        if not 1 <= k <= self.num_codebooks:
            raise BitstreamError(f"num_codebooks must be in 1..{self.num_codebooks}, got {k}")
        return RuntimeTokens(
            self.codes[:, :k], self.frame_rate, self.codebook_sizes[:k], self.kind, self.num_samples,
            self.global_codes, self.global_codebook_sizes,
        )  # fmt: skip


def _checked_codes(codes: object, sizes: Sequence[int], what: str) -> np.ndarray:
    """A read-only int64 copy of ``codes`` after shape, dtype and range checks (codebook axis: 1)."""
    arr = np.asarray(codes)
    if arr.ndim < 2 or not np.issubdtype(arr.dtype, np.integer):
        raise BitstreamError(
            f"{what} must be an integer array with a codebook axis, got {arr.dtype} {arr.shape}"
        )
    if len(sizes) != arr.shape[1]:
        raise BitstreamError(
            f"{what} has {arr.shape[1]} codebooks but {len(sizes)} codebook sizes were given"
        )
    for size in sizes:
        bits_per_code(size)
    arr = np.array(arr, dtype=np.int64, copy=True)
    check_code_range(arr.reshape(arr.shape[0], arr.shape[1], -1)[0], sizes)
    arr.flags.writeable = False
    return arr


# ---- bit packing (speechkit.tokenizers.bitpacking) --------------------------------------------------


def bits_per_code(codebook_size: int) -> int:
    """``ceil(log2(size))`` computed on integers: 1 -> 0, 1000 -> 10, 1024 -> 10, 1025 -> 11.

    Example:
        >>> [bits_per_code(n) for n in (1, 2, 3, 1000, 1024, 1025)]
        [0, 1, 2, 10, 10, 11]
    """
    size = _as_int(codebook_size, "codebook size")
    if size < 1:
        raise BitstreamError(f"a codebook size must be >= 1, got {size}")
    bits = (size - 1).bit_length()
    if bits > _MAX_BITS:
        raise BitstreamError(f"codebook size {size} needs {bits} bits per code; at most {_MAX_BITS} fit")
    return bits


def packed_size_bytes(num_frames: int, codebook_sizes: Sequence[int]) -> int:
    """``ceil(num_frames * sum_k bits_k / 8)``: the length of :func:`pack_codes` output."""
    frames = _as_int(num_frames, "num_frames")
    if frames < 0:
        raise BitstreamError(f"num_frames must be >= 0, got {frames}")
    return (frames * sum(_widths(codebook_sizes)) + 7) // 8


def check_code_range(codes: np.ndarray, codebook_sizes: Sequence[int]) -> None:
    """Raise BitstreamError unless ``0 <= codes[k] < codebook_sizes[k]`` for codes [K, N]."""
    if codes.size == 0:
        return
    lows, highs = codes.min(axis=1), codes.max(axis=1)
    for k, (low, high, size) in enumerate(zip(lows, highs, codebook_sizes)):
        if low < 0 or high >= size:
            bad = low if low < 0 else high
            raise BitstreamError(f"code {int(bad)} in codebook {k} is outside [0, {int(size)})")


def pack_codes(codes: np.ndarray, codebook_sizes: Sequence[int]) -> bytes:
    """Pack codes [K, N] frame-major at ``ceil(log2(size_k))`` bits each, most significant bit first.

    Example:
        >>> pack_codes(np.array([[1, 2], [3, 0]]), (4, 4)).hex()
        '78'
    """
    widths = _widths(codebook_sizes)
    if not isinstance(codes, np.ndarray) or codes.ndim != 2 or codes.shape[0] != len(widths):
        shape = getattr(codes, "shape", type(codes).__name__)
        raise BitstreamError(f"pack_codes expects codes [K={len(widths)}, N] as a numpy array, got {shape}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise BitstreamError(f"codes must have an integer dtype, got {codes.dtype}")
    check_code_range(codes, codebook_sizes)
    if codes.shape[1] == 0 or sum(widths) == 0:
        return bytes(packed_size_bytes(codes.shape[1], codebook_sizes))
    codes = codes.astype(np.int64, copy=False)
    columns = []
    for k, width in enumerate(widths):
        if width:
            shifts = np.arange(width - 1, -1, -1, dtype=np.int64)
            columns.append(((codes[k, :, None] >> shifts) & 1).astype(np.uint8))  # [N, width]
    return np.packbits(np.concatenate(columns, axis=1).reshape(-1)).tobytes()


def unpack_codes(data: bytes, codebook_sizes: Sequence[int], num_frames: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: exactly ``packed_size_bytes`` bytes -> codes [K, N] int64.

    Raises:
        BitstreamError: a wrong byte count, non-zero padding bits or a code past its codebook size.

    Example:
        >>> unpack_codes(bytes([0b01111000]), (4, 4), num_frames=2).tolist()
        [[1, 2], [3, 0]]
    """
    widths = _widths(codebook_sizes)
    expected = packed_size_bytes(num_frames, codebook_sizes)
    buffer = np.frombuffer(memoryview(data), dtype=np.uint8)
    if buffer.size != expected:
        problem = "truncated" if buffer.size < expected else "too long"
        raise BitstreamError(
            f"bitstream {problem}: {buffer.size} bytes, but {num_frames} frames of codebook sizes "
            f"{tuple(codebook_sizes)} ({sum(widths)} bits each) need exactly {expected} bytes"
        )
    codes = np.zeros((len(widths), int(num_frames)), dtype=np.int64)
    if expected == 0:
        return codes
    total_bits = int(num_frames) * sum(widths)
    bits = np.unpackbits(buffer)
    if bits[total_bits:].any():
        raise BitstreamError("bitstream corrupted: the padding bits after the last frame are not zero")
    frames = bits[:total_bits].reshape(int(num_frames), sum(widths))  # [N, frame_bits]
    column = 0
    for k, width in enumerate(widths):
        for _ in range(width):  # MSB first; each step shifts all N codes of codebook k
            codes[k] <<= 1
            codes[k] |= frames[:, column]
            column += 1
    check_code_range(codes, codebook_sizes)
    return codes


def _as_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise BitstreamError(f"{what} must be an integer, got {value!r}")
    return int(value)


def _widths(codebook_sizes: Sequence[int]) -> list[int]:
    if len(codebook_sizes) == 0:
        raise BitstreamError("codebook_sizes is empty: a token stream needs at least one codebook")
    return [bits_per_code(size) for size in codebook_sizes]


# ---- the file ---------------------------------------------------------------------------------------


def write_token_file(tokens: RuntimeTokens, *, model: str, fingerprint: str, sample_rate: int) -> bytes:
    """Serialise tokens as ``speechkit encode`` does (the same bytes for the same tokens and names).

    Args:
        tokens: one clip's tokens.
        model: the model name a decoder looks up (the bundle's ``model_name``).
        fingerprint: the weights fingerprint a decoder checks (the bundle's ``extra.fingerprint``).
        sample_rate: the codec's sample rate in Hz.

    Returns:
        The file's bytes.
    """
    payload = pack_codes(np.asarray(tokens.codes[0]), tokens.codebook_sizes)
    global_payload = b""
    if tokens.global_codes is not None:
        global_payload = pack_codes(np.asarray(tokens.global_codes).T, tokens.global_codebook_sizes)
    header = {
        "model": model,
        "kind": tokens.kind,
        "fingerprint": fingerprint,
        "sample_rate": int(sample_rate),
        "frame_rate": float(tokens.frame_rate),
        "codebook_sizes": list(tokens.codebook_sizes),
        "num_frames": tokens.num_frames,
        "num_samples": tokens.num_samples,
        "payload_bytes": len(payload),
        "global_codebook_sizes": list(tokens.global_codebook_sizes),
        "global_payload_bytes": len(global_payload),
    }
    encoded = json.dumps(header, separators=(",", ":")).encode()
    return _PREFIX.pack(MAGIC, FORMAT_VERSION, len(encoded)) + encoded + payload + global_payload


def read_token_file(data: bytes) -> tuple[dict[str, Any], RuntimeTokens]:
    """Parse a token file (version 1 or 2); returns (header, tokens [1, K, N]).

    Raises:
        BitstreamError: bad magic or version, a malformed header, a payload of the wrong length,
            corrupted padding or out-of-range codes.
    """
    if len(data) < _PREFIX.size:
        raise BitstreamError(f"bitstream too short ({len(data)} bytes) to hold a header")
    magic, version, header_length = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise BitstreamError("not a speechkit token file (bad magic)")
    if version not in READABLE_VERSIONS:
        raise BitstreamError(
            f"token file format version {version} is not supported (this runtime reads "
            f"{', '.join(map(str, READABLE_VERSIONS))})"
        )
    end = _PREFIX.size + header_length
    if len(data) < end:
        raise BitstreamError("bitstream truncated inside its header")
    try:
        header = json.loads(bytes(data[_PREFIX.size : end]).decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BitstreamError(f"token file header is not valid JSON: {err}") from err
    required = _HEADER_FIELDS + (_GLOBAL_FIELDS if version >= 2 else ())
    missing = [name for name in required if not isinstance(header, dict) or name not in header]
    if missing:
        raise BitstreamError(f"token file header lacks {missing}")
    global_bytes = header.get("global_payload_bytes", 0)
    global_sizes = header.get("global_codebook_sizes", [])
    sizes = header["codebook_sizes"]
    if not all(
        isinstance(n, int) and not isinstance(n, bool) for n in (header["payload_bytes"], global_bytes)
    ):
        raise BitstreamError("token file header has malformed payload sizes")
    if not isinstance(global_sizes, list) or not isinstance(sizes, list):
        raise BitstreamError("token file header has malformed codebook sizes")
    payload = data[end:]
    if len(payload) != header["payload_bytes"] + global_bytes:
        raise BitstreamError(
            f"bitstream payload is {len(payload)} bytes, header says {header['payload_bytes']} + "
            f"{global_bytes} global (truncated?)"
        )
    codes = unpack_codes(payload[: header["payload_bytes"]], sizes, header["num_frames"])
    global_codes = None
    if global_sizes:
        global_codes = unpack_codes(
            payload[header["payload_bytes"] :], global_sizes, num_frames=1
        ).T  # [1, G]
    tokens = RuntimeTokens(
        codes[None], header["frame_rate"], tuple(sizes), header["kind"], header["num_samples"],
        global_codes, tuple(global_sizes),
    )  # fmt: skip
    return header, tokens
