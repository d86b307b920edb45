"""speechkit_rt: the torch-free runtime for speechkit bundles. Imports numpy (and onnxruntime) only.

Public names load lazily (PEP 562), so ``import speechkit_rt.features`` (which the SDK uses) does not
pull in onnxruntime::

    from speechkit_rt import CodecRuntime, read_wav, write_wav
    with CodecRuntime.open("codec-rvq.zip") as codec:
        wav, sample_rate = read_wav("speech.wav")
        tokens = codec.encode(wav, sample_rate, codec.num_codebooks_for(1.5))
        audio = codec.decode(tokens)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Bundle": "speechkit_rt.bundle",
    "ASRRuntime": "speechkit_rt.asr",
    "CodecRuntime": "speechkit_rt.codec",
    "StreamingCodecRuntime": "speechkit_rt.streaming",
    "TTSRuntime": "speechkit_rt.tts",
    "SpeakerRuntime": "speechkit_rt.speaker",
    "DiarizationDecoderRuntime": "speechkit_rt.speaker",
    "RuntimeTokens": "speechkit_rt.token_file",
    "read_token_file": "speechkit_rt.token_file",
    "write_token_file": "speechkit_rt.token_file",
    "read_wav": "speechkit_rt.audio_io",
    "write_wav": "speechkit_rt.audio_io",
    "resample": "speechkit_rt.audio_io",
    "SpeechkitRtError": "speechkit_rt.errors",
    "BundleError": "speechkit_rt.errors",
    "AudioError": "speechkit_rt.errors",
    "BitstreamError": "speechkit_rt.errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'speechkit_rt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
