"""Token decoders shared by the generative families (TTS, music, enhancement): sampling, masked
parallel decoding and (later) autoregressive decoding with codebook patterns."""

from __future__ import annotations

from speechkit.decoders.masked import cosine_schedule, iterative_decode, random_mask
from speechkit.decoders.sampling import filter_logits, sample_tokens

__all__ = ["cosine_schedule", "filter_logits", "iterative_decode", "random_mask", "sample_tokens"]
