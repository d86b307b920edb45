"""Speech recognition: E-Branchformer encoder, joint CTC/attention decoder over characters with DeCRED
intermediate classifiers, Speech2C pre-training, chunk streaming, and the task API.

    asr = speechkit.load("asr")          # or SpeechRecognizer(EBranchformerASR(config))
    transcript = asr.transcribe(wav, sample_rate)

Modules: ``text`` (vocabulary, normaliser), ``frontend`` (log-mel, SpecAugment, subsampling),
``encoder``, ``decoder`` (+ DeCRED heads), ``decred`` (combinations), ``model`` (config, losses),
``speech2c`` (pre-training), ``decoding``, ``api``, ``streaming``, ``transcript``, ``scoring``.
"""

from __future__ import annotations

from speechkit.asr.api import SpeechRecognizer
from speechkit.asr.decoding import DecodingOptions
from speechkit.asr.model import ASRConfig, EBranchformerASR
from speechkit.asr.streaming import RecognizerStream, TranscriptUpdate
from speechkit.asr.text import CharVocabulary, normalize_text
from speechkit.asr.transcript import Transcript, Word

__all__ = [
    "ASRConfig",
    "CharVocabulary",
    "DecodingOptions",
    "EBranchformerASR",
    "RecognizerStream",
    "SpeechRecognizer",
    "Transcript",
    "TranscriptUpdate",
    "Word",
    "normalize_text",
]
