"""speechkit: an edge audio and speech SDK.

Codec, TTS, ASR, speaker and music models share one set of parts (features, network blocks,
vector-quantizer tokenizers, token decoders); exporters turn them into quantized ONNX and Core ML
bundles that the torch-free runtime (``speechkit_rt``) runs on device.

Example:
    >>> import speechkit
    >>> codec = speechkit.load("mel-rvq-demo")
    >>> codec.sample_rate
    16000
"""

from __future__ import annotations

from speechkit.errors import (
    AudioError,
    BitstreamError,
    CheckpointError,
    ConfigError,
    DataError,
    SpeechkitError,
)
from speechkit.registry import load

__version__ = "0.1.0"

__all__ = [
    "AudioError",
    "BitstreamError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "SpeechkitError",
    "load",
    "__version__",
]
