"""Exceptions raised by speechkit_rt, the torch-free runtime.

The runtime does not import ``speechkit``, so it has its own small hierarchy: an application catches
:class:`SpeechkitRtError` for anything the runtime refuses on purpose.
"""

from __future__ import annotations


class SpeechkitRtError(Exception):
    """Base class of every error speechkit_rt raises on purpose."""


class BundleError(SpeechkitRtError, ValueError):
    """A bundle that cannot be trusted or used: bad manifest, unknown version, missing, extra or tampered file.

    The message names the file (or manifest key) and the problem, e.g.
    ``"sha256 mismatch for decoder.onnx: bundle tampered or corrupted"``.
    """


class AudioError(SpeechkitRtError, ValueError):
    """Audio that cannot be used: unreadable or malformed WAV, empty, NaN/Inf, silence, absurd sample rate.

    The messages match ``speechkit.errors.AudioError``'s for the same input, e.g.
    ``"audio contains 3 NaN or Inf samples"``.
    """


class BitstreamError(SpeechkitRtError, ValueError):
    """A token file or tokens that are truncated, corrupted, or were made by another model."""
