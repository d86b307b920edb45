"""The one registry from a config ``kind`` to its model class, and ``speechkit.load``.

Model classes are named by import path so that importing speechkit stays cheap: a family's code is
imported the first time one of its checkpoints is loaded. A model class exposes:

- ``config_class``: its :class:`~speechkit.config.ModelConfig` subclass,
- ``__init__(config)``: builds the network from the config alone,
- ``task_api()``: wraps the (eval-mode) model in its numpy-in/numpy-out task API object.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from torch import nn

from speechkit.config import ModelConfig
from speechkit.errors import ConfigError

MODEL_CLASSES: dict[str, str] = {
    "causal_rvq_codec": "speechkit.codec.causal_rvq_codec:CausalRVQCodec",
    "esc_codec": "speechkit.codec.esc:ESCCodec",
    "mel_rvq_codec": "speechkit.codec.mel_rvq:MelRVQCodec",
    "rvq_codec": "speechkit.codec.rvq_codec:RVQCodec",
    "single_codec": "speechkit.codec.single_codec:SingleCodec",
    "mobilespeech_tts": "speechkit.tts.mobilespeech:MobileSpeech",
    "tts_aligner": "speechkit.tts.aligner:DurationAligner",
    "fbd_ar_tts": "speechkit.tts.ar_tts:ForwardBackwardTTS",
    "ebranchformer_asr": "speechkit.asr.model:EBranchformerASR",
    "speech2c_pretrain": "speechkit.asr.speech2c:Speech2CPretrainer",
    "ecapa_tdnn": "speechkit.speaker.ecapa:ECAPATDNN",
    "msdd_diarizer": "speechkit.speaker.msdd:MSDD",
}


def model_class(kind: str) -> type[nn.Module]:
    """The model class registered for ``kind``.

    Example:
        >>> model_class("mel_rvq_codec").__name__
        'MelRVQCodec'
    """
    target = MODEL_CLASSES.get(kind)
    if target is None:
        raise ConfigError(f"unknown model kind {kind!r}; known kinds: {sorted(MODEL_CLASSES)}")
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Parse a config dict of any registered kind (strict)."""
    if not isinstance(data, dict) or "kind" not in data:
        raise ConfigError("config has no 'kind' field")
    return model_class(data["kind"]).config_class.from_dict(data)


def build_model(config: ModelConfig) -> nn.Module:
    """Instantiate the registered model for ``config`` (random weights)."""
    return model_class(config.KIND)(config)


def load(name_or_path: str | Path) -> Any:
    """Load a checkpoint by shipped name or folder path and return its task API object.

    Args:
        name_or_path: a name listed by ``speechkit models`` or a folder holding config.json and
            model.safetensors.

    Returns:
        The task API (e.g. a codec with ``encode``/``decode``), model in eval mode.

    Example:
        >>> codec = load("mel-rvq-demo")
        >>> codec.sample_rate
        16000
    """
    from speechkit.checkpoint import load_model, resolve_checkpoint

    model = load_model(resolve_checkpoint(name_or_path))
    return model.task_api()
