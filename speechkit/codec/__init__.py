"""Neural audio codecs: the shared audio tokenizers of speechkit, and their task API."""

from speechkit.codec.api import Codec

__all__ = ["Codec"]
