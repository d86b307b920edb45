"""The compressed token file: magic, version, JSON header, packed codes (EnCodec's shape of format).

Layout (all integers big-endian)::

    b"SKTK"  magic (4 bytes)
    u8       format version (1)
    u32      header length H
    H bytes  UTF-8 JSON header: model name, kind, weights fingerprint, sample_rate, frame_rate,
             codebook_sizes, num_frames, num_samples, payload_bytes
    payload  codes [K, T] packed frame-major at ceil(log2(size_k)) bits each (see bitpacking)

The payload is exactly the nominal bitrate; the header is a fixed cost of about 250 bytes per file.
Reading checks the magic, the version, the header fields and the payload length, and a decoder
checks the kind and fingerprint, so a truncated file or one written by another model is refused with
a :class:`~speechkit.errors.BitstreamError`.

Example:
    >>> import numpy as np
    >>> from speechkit.tokenizers.tokens import Tokens
    >>> tokens = Tokens(np.arange(6).reshape(1, 2, 3), 50.0, (8, 8), kind="rvq_codec",
    ...                 extras={"num_samples": np.array([960])})
    >>> data = write_bitstream(tokens, model="codec-rvq", fingerprint="abc", sample_rate=16000)
    >>> header, back = read_bitstream(data)
    >>> header["model"], back.codes.tolist(), int(back.extras["num_samples"][0])
    ('codec-rvq', [[[0, 1, 2], [3, 4, 5]]], 960)
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from speechkit.errors import BitstreamError
from speechkit.tokenizers.bitpacking import pack_codes, unpack_codes
from speechkit.tokenizers.tokens import Tokens

MAGIC = b"SKTK"
FORMAT_VERSION = 1
_PREFIX = struct.Struct(">4sBI")
_HEADER_FIELDS = (
    "model", "kind", "fingerprint", "sample_rate", "frame_rate", "codebook_sizes", "num_frames",
    "num_samples", "payload_bytes",
)  # fmt: skip


def write_bitstream(tokens: Tokens, *, model: str, fingerprint: str, sample_rate: int) -> bytes:
    """Serialise one clip's tokens (batch of one) with what a decoder needs to check and use them."""
    if tokens.codes.shape[0] != 1:
        raise BitstreamError(f"a bitstream holds one clip, got a batch of {tokens.codes.shape[0]}")
    unknown = sorted(set(tokens.extras) - {"num_samples"})
    if unknown:
        raise BitstreamError(f"this format cannot store token extras {unknown}")
    payload = pack_codes(tokens.codes[0], tokens.codebook_sizes)
    num_samples = tokens.extras.get("num_samples")
    header = {
        "model": model,
        "kind": tokens.kind,
        "fingerprint": fingerprint,
        "sample_rate": int(sample_rate),
        "frame_rate": tokens.frame_rate,
        "codebook_sizes": list(tokens.codebook_sizes),
        "num_frames": tokens.num_frames,
        "num_samples": None if num_samples is None else int(np.asarray(num_samples).reshape(-1)[0]),
        "payload_bytes": len(payload),
    }
    encoded = json.dumps(header, separators=(",", ":")).encode()
    return _PREFIX.pack(MAGIC, FORMAT_VERSION, len(encoded)) + encoded + payload


def read_bitstream(data: bytes) -> tuple[dict[str, Any], Tokens]:
    """Parse a bitstream; returns (header, Tokens [1, K, T]). Raises BitstreamError when malformed."""
    if len(data) < _PREFIX.size:
        raise BitstreamError(f"bitstream too short ({len(data)} bytes) to hold a header")
    magic, version, header_length = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise BitstreamError("not a speechkit token file (bad magic)")
    if version != FORMAT_VERSION:
        raise BitstreamError(f"token file format version {version} is not supported (this speechkit reads 1)")
    end = _PREFIX.size + header_length
    if len(data) < end:
        raise BitstreamError("bitstream truncated inside its header")
    try:
        header = json.loads(data[_PREFIX.size : end].decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BitstreamError(f"token file header is not valid JSON: {err}") from err
    missing = [name for name in _HEADER_FIELDS if not isinstance(header, dict) or name not in header]
    if missing:
        raise BitstreamError(f"token file header lacks {missing}")
    payload = data[end:]
    if len(payload) != header["payload_bytes"]:
        raise BitstreamError(
            f"bitstream payload is {len(payload)} bytes, header says {header['payload_bytes']} (truncated?)"
        )
    codes = unpack_codes(payload, header["codebook_sizes"], header["num_frames"])
    extras = {} if header["num_samples"] is None else {"num_samples": np.array([header["num_samples"]])}
    tokens = Tokens(
        codes[None], header["frame_rate"], tuple(header["codebook_sizes"]), header["kind"], extras
    )
    return header, tokens
