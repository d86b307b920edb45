"""Audio tokenizers: vector quantizers, residual VQ, the ``Tokens`` type and bit packing.

Shared by every family that turns audio into discrete codes or back: codecs (RVQ, single-codebook,
cross-scale), TTS and music token decoders, and ASR pre-training on k-means or codec pseudo-codes.
"""

from __future__ import annotations

from speechkit.tokenizers.bitpacking import (
    bitrate,
    bits_per_code,
    check_code_range,
    pack_codes,
    packed_size_bytes,
    unpack_codes,
)
from speechkit.tokenizers.kmeans import kmeans, nearest_code, sample_vectors
from speechkit.tokenizers.residual_vq import ResidualQuantizerOutput, ResidualVQ
from speechkit.tokenizers.tokens import Tokens
from speechkit.tokenizers.vector_quantizer import QuantizerOutput, VectorQuantizer

__all__ = [
    "QuantizerOutput",
    "ResidualQuantizerOutput",
    "ResidualVQ",
    "Tokens",
    "VectorQuantizer",
    "bitrate",
    "bits_per_code",
    "check_code_range",
    "kmeans",
    "nearest_code",
    "pack_codes",
    "packed_size_bytes",
    "sample_vectors",
    "unpack_codes",
]
