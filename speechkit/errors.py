"""Exceptions raised by speechkit.

Every error a user can provoke with bad input derives from :class:`SpeechkitError`, so an
application can catch one type; the subclasses say which kind of input was wrong.
"""

from __future__ import annotations


class SpeechkitError(Exception):
    """Base class of every error speechkit raises on purpose."""


class AudioError(SpeechkitError, ValueError):
    """Audio that cannot be used: unreadable file, empty, NaN/Inf, wrong rate or shape."""


class ConfigError(SpeechkitError, ValueError):
    """A model or training config that is malformed, has unknown or missing keys, or a bad version."""


class CheckpointError(SpeechkitError):
    """A checkpoint folder that is missing, truncated, corrupted or does not match its config."""


class BitstreamError(SpeechkitError, ValueError):
    """A token bitstream that is truncated, corrupted or was written by another model."""


class DataError(SpeechkitError):
    """Corpus synthesis failed: a missing system tool, a bad manifest, an empty split."""


class TextError(SpeechkitError, ValueError):
    """Text that cannot be spoken: empty, nothing pronounceable, or too long for one call."""
