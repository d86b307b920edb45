"""Mixed precision: which hardware runs bf16 fast, and the autocast context the trainer wraps steps in.

bf16 keeps fp32's exponent range, so unlike fp16 it needs no loss scaling; the trainer therefore
supports only bf16 and fp32. On CPUs without native bf16 (no AMX, no AVX512-BF16) autocast emulates
it and is slower than fp32, so ``"auto"`` only turns it on where the hardware has it.

Example:
    >>> import torch
    >>> resolve_precision(torch.device("cpu"), "fp32")
    'fp32'
    >>> with autocast_context(torch.device("cpu"), "bf16"):
    ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
    torch.bfloat16
"""

from __future__ import annotations

import contextlib
import functools
import platform
from pathlib import Path

import torch

from speechkit.errors import ConfigError

_CPUINFO = Path("/proc/cpuinfo")
_BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


@functools.lru_cache(maxsize=1)
def _cpuinfo_fields() -> dict[str, str]:
    """First value of each ``key : value`` line of /proc/cpuinfo (empty off Linux)."""
    fields: dict[str, str] = {}
    try:
        text = _CPUINFO.read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_flags() -> frozenset[str]:
    """The CPU feature flags listed in /proc/cpuinfo (empty when it cannot be read).

    Example:
        >>> isinstance(cpu_flags(), frozenset)
        True
    """
    return frozenset(_cpuinfo_fields().get("flags", "").split())


def cpu_model_name() -> str:
    """The CPU model as the OS names it, e.g. ``"Intel(R) Xeon(R) Platinum 8480+"``.

    Example:
        >>> len(cpu_model_name()) > 0
        True
    """
    return _cpuinfo_fields().get("model name") or platform.processor() or platform.machine() or "unknown cpu"


def cpu_supports_bf16() -> bool:
    """True when the CPU computes bf16 natively (AMX or AVX512-BF16).

    Reads /proc/cpuinfo flags; where that file does not exist (macOS, Windows) falls back to
    oneDNN's own check.

    Example:
        >>> cpu_supports_bf16() in (True, False)
        True
    """
    flags = cpu_flags()
    if flags:
        return bool(flags & _BF16_CPU_FLAGS)
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(device: torch.device, precision: str) -> str:
    """The precision a run on ``device`` actually uses: ``"bf16"`` or ``"fp32"``.

    Args:
        device: the training device.
        precision: ``"auto"``, ``"bf16"`` or ``"fp32"``. ``"bf16"`` forces bf16 on CPU even without
            native support (slow, but matches a GPU run's numerics); on CUDA it requires support.

    Returns:
        ``"bf16"`` or ``"fp32"``.

    Example:
        >>> resolve_precision(torch.device("cpu"), "auto") in ("bf16", "fp32")
        True
    """
    if precision == "fp32":
        return "fp32"
    if precision not in ("auto", "bf16"):
        raise ConfigError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    if device.type == "cuda":
        supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        if precision == "bf16" and not supported:
            raise ConfigError(f"precision='bf16' but {device} does not support bf16; use 'auto' or 'fp32'")
        return "bf16" if supported else "fp32"
    if device.type == "cpu":
        return "bf16" if precision == "bf16" or cpu_supports_bf16() else "fp32"
    # Other backends (mps, xpu): bf16 only when asked for.
    return "bf16" if precision == "bf16" else "fp32"


def autocast_context(device: torch.device, precision: str) -> torch.autocast | contextlib.nullcontext[None]:
    """The autocast context for one training or evaluation step.

    Args:
        device: the device the step runs on.
        precision: ``"auto"``, ``"bf16"`` or ``"fp32"`` (see :func:`resolve_precision`).

    Returns:
        ``torch.autocast(device.type, dtype=torch.bfloat16)`` when the step runs in bf16, otherwise a
        context that does nothing.

    Example:
        >>> with autocast_context(torch.device("cpu"), "fp32"):
        ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
        torch.float32
    """
    if resolve_precision(device, precision) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
