"""The compressed token file: magic, version, JSON header, packed codes (EnCodec's shape of format).

Layout (all integers big-endian)::

    b"SKTK"  magic (4 bytes)
    u8       format version (2; version 1 files are still read)
    u32      header length H
    H bytes  UTF-8 JSON header: model name, kind, weights fingerprint, sample_rate, frame_rate,
             codebook_sizes, num_frames, num_samples, payload_bytes, and (version 2)
             global_codebook_sizes, global_payload_bytes
    payload  codes [K, T] packed frame-major at ceil(log2(size_k)) bits each (see bitpacking)
    global   version 2: the G per-utterance global codes (``extras["global_codes"]`` [1, G], e.g.
             Single-Codec's speaker/acoustic embedding) packed as one frame of G codes; empty when
             ``global_codebook_sizes`` is ``[]``

The payload is exactly the nominal bitrate; the header is a fixed cost of about 280 bytes per file.
Version 1 (no global section) differs from version 2 only by lacking the two global header fields.
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
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
_PREFIX = struct.Struct(">4sBI")
_HEADER_FIELDS = (
    "model", "kind", "fingerprint", "sample_rate", "frame_rate", "codebook_sizes", "num_frames",
    "num_samples", "payload_bytes",
)  # fmt: skip
_GLOBAL_FIELDS = ("global_codebook_sizes", "global_payload_bytes")  # version 2 on
_EXTRAS = {"num_samples", "global_codes", "global_codebook_sizes"}


def write_bitstream(tokens: Tokens, *, model: str, fingerprint: str, sample_rate: int) -> bytes:
    """Serialise one clip's tokens (batch of one) with what a decoder needs to check and use them."""
    if tokens.codes.shape[0] != 1:
        raise BitstreamError(f"a bitstream holds one clip, got a batch of {tokens.codes.shape[0]}")
    unknown = sorted(set(tokens.extras) - _EXTRAS)
    if unknown:
        raise BitstreamError(f"this format cannot store token extras {unknown}")
    payload = pack_codes(tokens.codes[0], tokens.codebook_sizes)
    global_sizes, global_payload = _pack_global(tokens.extras)
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
        "global_codebook_sizes": list(global_sizes),
        "global_payload_bytes": len(global_payload),
    }
    encoded = json.dumps(header, separators=(",", ":")).encode()
    return _PREFIX.pack(MAGIC, FORMAT_VERSION, len(encoded)) + encoded + payload + global_payload


def read_bitstream(data: bytes) -> tuple[dict[str, Any], Tokens]:
    """Parse a bitstream; returns (header, Tokens [1, K, T]). Raises BitstreamError when malformed."""
    if len(data) < _PREFIX.size:
        raise BitstreamError(f"bitstream too short ({len(data)} bytes) to hold a header")
    magic, version, header_length = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise BitstreamError("not a speechkit token file (bad magic)")
    if version not in READABLE_VERSIONS:
        raise BitstreamError(
            f"token file format version {version} is not supported (this speechkit reads "
            f"{', '.join(map(str, READABLE_VERSIONS))})"
        )
    end = _PREFIX.size + header_length
    if len(data) < end:
        raise BitstreamError("bitstream truncated inside its header")
    try:
        header = json.loads(data[_PREFIX.size : end].decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BitstreamError(f"token file header is not valid JSON: {err}") from err
    required = _HEADER_FIELDS + (_GLOBAL_FIELDS if version >= 2 else ())
    missing = [name for name in required if not isinstance(header, dict) or name not in header]
    if missing:
        raise BitstreamError(f"token file header lacks {missing}")
    global_bytes = header.get("global_payload_bytes", 0)
    global_sizes = header.get("global_codebook_sizes", [])
    byte_counts_ok = all(isinstance(n, int) for n in (header["payload_bytes"], global_bytes))
    if not byte_counts_ok or not isinstance(global_sizes, list):
        raise BitstreamError("token file header has malformed payload sizes or global codebook sizes")
    payload = data[end:]
    if len(payload) != header["payload_bytes"] + global_bytes:
        raise BitstreamError(
            f"bitstream payload is {len(payload)} bytes, header says {header['payload_bytes']} + "
            f"{global_bytes} global (truncated?)"
        )
    codes = unpack_codes(payload[: header["payload_bytes"]], header["codebook_sizes"], header["num_frames"])
    extras = {} if header["num_samples"] is None else {"num_samples": np.array([header["num_samples"]])}
    if global_sizes:
        global_codes = unpack_codes(payload[header["payload_bytes"] :], global_sizes, num_frames=1)
        extras["global_codes"] = global_codes.T  # [1, G]
        extras["global_codebook_sizes"] = tuple(global_sizes)
    tokens = Tokens(
        codes[None], header["frame_rate"], tuple(header["codebook_sizes"]), header["kind"], extras
    )
    return header, tokens


def _pack_global(extras: dict[str, Any]) -> tuple[tuple[int, ...], bytes]:
    """(sizes, packed bytes) of ``extras["global_codes"]`` [1, G]; ((), b"") when there are none."""
    if "global_codes" not in extras:
        if "global_codebook_sizes" in extras:
            raise BitstreamError("token extras have 'global_codebook_sizes' but no 'global_codes'")
        return (), b""
    if "global_codebook_sizes" not in extras:
        raise BitstreamError("token extras have 'global_codes' but no 'global_codebook_sizes'")
    sizes = tuple(int(size) for size in extras["global_codebook_sizes"])
    codes = np.asarray(extras["global_codes"])
    if codes.ndim != 2 or codes.shape != (1, len(sizes)):
        raise BitstreamError(
            f"extras['global_codes'] must be [1, G={len(sizes)}] to be written, got shape {codes.shape}"
        )
    return sizes, pack_codes(codes.T, sizes)  # one "frame" of G codes
