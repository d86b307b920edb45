"""RepQuant scale reparameterisation of post-LayerNorm activations, for per-tensor int8 activations.

RepQuant (Li, Liu, Zhang, Gu 2024, "RepQuant: Towards Accurate Post-Training Quantization of Large
Transformer Models via Scale Reparameterization", arXiv 2402.05628; the LayerNorm part first appeared
in RepQ-ViT, Li et al. ICCV 2023, section "Scale Reparameterization for Post-LayerNorm Activations")
decouples the quantiser used at calibration from the one used at inference. A LayerNorm output has
severe inter-channel variation (a few channels, those with a large ``gamma_c``, span many times the
range of the rest), so one per-tensor scale either clips them or spends most int8 steps on them and
rounds the quiet channels to a handful of levels. RepQuant calibrates a per-channel quantiser
(scale ``delta_c``, zero point ``z_c``), then rewrites the model so that every channel needs the same
scale and zero point: the per-tensor quantiser a runtime offers is then exactly the per-channel one.

The rewrite is exact in real arithmetic. With the LayerNorm output ``y_c = gamma_c * n_c + beta_c``
feeding ``Linear(W, b)`` and per-channel factors ``s_c > 0`` and shifts ``t_c``::

    y'_c  = (y_c - t_c) / s_c              gamma'_c = gamma_c / s_c,  beta'_c = (beta_c - t_c) / s_c
    W y + b = W' y' + b'                   W'[:, c] = W[:, c] * s_c,  b' = b + W t

This module picks ``s_c`` and ``t_c`` from calibrated per-channel ranges ``[lo_c, hi_c]`` (the
``percentile`` and ``100 - percentile`` of the channel over every calibration frame: the fine-grained
quantiser of the calibration phase; RepQuant learns a per-channel dual clip instead)::

    s_c = (hi_c - lo_c) / mean_k(hi_k - lo_k)      t_c = (hi_c + lo_c) / 2

so every channel's calibrated range becomes ``[-R / 2, R / 2]`` with ``R`` the mean range. Why these:

* ``s_c`` proportional to the range: a per-tensor int8 step on ``y'`` is ``s_c * R / 255`` on ``y_c``,
  i.e. the per-channel step ``(hi_c - lo_c) / 255``, for every channel at once. The paper sets the
  layer-wise scale to the mean of the channel-wise scales (``r_1 = delta / E[delta]``); a common factor
  on all ``s_c`` changes neither the activation grid nor a per-output-channel weight grid, so the mean
  only keeps ``y'`` and ``W'`` at their original magnitude (no float16 overflow, familiar ranges).
* ``t_c`` at the centre of the range: the paper aligns zero points to their mean (``r_2 = z - E[z]``);
  any common zero point is exact for an asymmetric quantiser (onnxruntime's default), and centring on
  0 is also exact for a symmetric one (onnxruntime ``ActivationSymmetric``, many NPUs), at no cost.
* ``strength`` alpha (``s_c ~ range_c ** alpha``, 1 by default as in the paper) is SmoothQuant's
  migration strength: full equalisation fits every channel's range to the calibration data, so a
  channel whose calibrated range is too tight clips on new audio. Measured on codec-rvq (torch
  fake-quant of the 14 LayerNorm outputs, error at the consuming Linear, 3 test clips): per-tensor int8
  -41 dB; alpha 1 calibrated on 4 clips -41.5 dB (clipping ate the gain), on 16 clips -47.5 dB;
  alpha 0.5 -46 dB with either. Calibrate on >= 16 clips, or use alpha 0.5 with few.

What is and is not reparameterised:

* A LayerNorm is rewritten only if, on the calibration runs, every use of its output is the input of
  an ``nn.Linear`` and each of those Linears only ever reads this LayerNorm (found by tracing the runs
  with a ``TorchFunctionMode``, not by module names). In :class:`speechkit.nn.conv.ConvNeXtBlock` that
  is ``norm -> pwconv1``; in the codec-rvq encoder/decoder also the final ``norm -> output/head``.
  Anything else (a residual add, a transpose, a weight-normalised Linear whose weight is recomputed,
  no affine) is skipped with the reason in the report.
* The post-GELU activation feeding ``pwconv2`` is not touched: a per-channel scale can move through a
  positively homogeneous activation (``relu(x / s) = relu(x) / s``), but ``GELU(x / s) != GELU(x) / s``
  and a shift does not commute with any nonlinearity, so the factors cannot be folded into
  ``pwconv1`` exactly.
* The cost moves to the weights: ``W'[:, c] = W[:, c] * s_c`` widens the input columns of the outlier
  channels, and a per-output-channel weight quantiser must cover them (as in SmoothQuant's migration).
  On codec-rvq that costs more than it saves at the decoder's last LayerNorm, whose Linear head
  predicts the iSTFT log-magnitude and phase (int8-static decoder SNR 26.1 -> 23.3 dB when only it is
  rewritten): exclude it there (``exclude=("decoder.norm",)``); ``bench/repquant_probe.py`` measures.

Measured on codec-rvq with onnxruntime int8-static (``bench/repquant_probe.py``, 4 test clips): the
14 foldable LayerNorms have a per-channel range spread of 9x median, 21x max (the paper reports 33x on
DeiT-S); with the head norm excluded, the decoder SNR is unchanged (26.1 dB) and the encoder's
first-codebook agreement with torch goes 89.8 -> 93.1 % calibrated on 16 clips but 94.0 -> 93.7 %
on 4, i.e. within what the calibration set alone moves it. At 8-bit activations these LayerNorm
outputs are not the codec's bottleneck; expect the gain at fewer activation bits or larger spreads.

Post-Softmax activations (RepQuant's second part, for the transformer graphs: ESC's window attention,
later TTS/ASR; the codec graphs have no softmax): attention probabilities follow a power law, so RepQuant
calibrates a log-sqrt(2) quantiser ``q = clamp(round(-2 * log2(p / delta)))``, which resolves both
the many tiny and the few large probabilities, and reparameterises it for inference into a log2
quantiser by splitting codes by parity: ``2^(-q / 2) = 2^(-floor(q / 2)) * (1 or sqrt(2))``, where the
``sqrt(2)`` of odd codes is folded into a per-code constant of the dequantisation, so ``p @ V`` becomes
bit shifts. That needs a custom quantiser for the attention matmul, not the onnxruntime QDQ MatMul,
and is left for those graphs.

Example:
    >>> from speechkit.nn.conv import ConvNeXtBlock
    >>> block = ConvNeXtBlock(8).eval()
    >>> with torch.no_grad():
    ...     _ = block.norm.weight.mul_(torch.tensor([20.0] + [1.0] * 7))  # one outlier channel
    >>> x = torch.randn(2, 8, 30)
    >>> before = block(x)
    >>> report = reparameterize_layernorm_activations(block, [x], lambda m, batch: m(batch))
    >>> [(r.name, r.consumers) for r in report.reparameterized]
    [('norm', ('pwconv1',))]
    >>> bool(torch.allclose(block(x), before, atol=1e-5))
    True
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from speechkit.errors import ConfigError

logger = logging.getLogger(__name__)

# Calls that read a tensor's metadata, not its values: they do not consume the LayerNorm output.
_METADATA_CALLS = frozenset({"size", "dim", "numel", "nelement", "__len__", "stride", "is_contiguous"})
_METADATA_PROPERTIES = frozenset({"shape", "dtype", "device", "ndim", "requires_grad", "is_cuda", "layout"})
# Calibration frames kept per LayerNorm (a random subset beyond this): bounds memory and percentile time.
_MAX_ROWS = 200_000


@dataclass(frozen=True)
class ReparameterizedNorm:
    """One LayerNorm whose output channels were given a common calibrated range.

    Attributes:
        name: the LayerNorm's module name in the model.
        consumers: names of the ``nn.Linear`` modules that read its output (their input columns
            were rescaled and their bias shifted).
        num_channels: C, the normalised (last) dimension.
        range_spread: max / min over channels of the calibrated range before the rewrite (after it
            every channel's range is ``target_range`` when ``strength`` is 1; the spread is
            ``range_spread ** (1 - strength)`` otherwise).
        target_range: R, the mean of the channel ranges before the rewrite.
        scale_min, scale_max: the smallest and largest factor ``s_c``.
    """

    name: str
    consumers: tuple[str, ...]
    num_channels: int
    range_spread: float
    target_range: float
    scale_min: float
    scale_max: float


@dataclass
class RepQuantReport:
    """What :func:`reparameterize_layernorm_activations` rewrote and what it skipped (and why)."""

    percentile: float
    num_calibration_inputs: int
    reparameterized: list[ReparameterizedNorm] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready form (for a bundle manifest or a benchmark record)."""
        return asdict(self)


class _NormTracer(TorchFunctionMode):
    """Records, for every LayerNorm, its calibration outputs and who reads them.

    LayerNorm outputs are registered by a forward hook; every torch call made while the mode is active
    is checked for registered tensors among its arguments. ``F.linear`` on a known Linear's weight is
    a foldable use; metadata reads are ignored; anything else blocks the LayerNorm.
    """

    def __init__(self, linear_names: dict[int, str]) -> None:
        super().__init__()
        self.linear_names = linear_names  # id(weight parameter) -> Linear module name
        self.live: dict[int, tuple[Tensor, str]] = {}  # id(output) -> (output kept alive, norm name)
        self.rows: dict[str, list[Tensor]] = defaultdict(list)  # norm name -> [N, C] float32 chunks
        self.consumers: dict[str, set[str]] = defaultdict(set)
        self.linear_sources: dict[str, set[str]] = defaultdict(set)  # Linear -> norms (or "") it reads
        self.blocked: dict[str, str] = {}

    def norm_hook(self, name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if isinstance(output, Tensor):
                # Stats first: the output is not registered yet, so these reads are not "uses".
                self.rows[name].append(output.detach().reshape(-1, output.shape[-1]).float().cpu())
                self.live[id(output)] = (output, name)

        return hook

    def end_run(self) -> None:
        self.live.clear()

    def _norm_of(self, value: Any) -> str | None:
        entry = self.live.get(id(value)) if isinstance(value, Tensor) else None
        return entry[1] if entry is not None and entry[0] is value else None

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.linear:
            weight = args[1] if len(args) > 1 else kwargs.get("weight")
            linear = self.linear_names.get(id(weight))
            source = self._norm_of(args[0] if args else kwargs.get("input"))
            if linear is not None:
                self.linear_sources[linear].add(source or "")
                if source is not None:
                    self.consumers[source].add(linear)
                    return func(*args, **kwargs)
        for value in _flat_tensors((args, kwargs)):
            norm = self._norm_of(value)
            if norm is not None and not _is_metadata(func) and norm not in self.blocked:
                self.blocked[norm] = (
                    f"output read by {getattr(func, '__name__', func)!s}, not only by Linears"
                )
        return func(*args, **kwargs)


def _is_metadata(func: Any) -> bool:
    name = getattr(func, "__name__", "")
    if name == "__get__":
        return getattr(getattr(func, "__self__", None), "__name__", "") in _METADATA_PROPERTIES
    return name in _METADATA_CALLS


def _flat_tensors(value: Any) -> Iterable[Tensor]:
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _flat_tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _flat_tensors(item)


def _default_run(model: nn.Module, batch: Any) -> Any:
    if isinstance(batch, dict):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


@torch.no_grad()
def reparameterize_layernorm_activations(
    model: nn.Module,
    calibration_inputs: Iterable[Any],
    run_fn: Callable[[nn.Module, Any], Any] | None = None,
    percentile: float = 99.99,
    strength: float = 1.0,
    exclude: Collection[str] = (),
) -> RepQuantReport:
    """Give every foldable LayerNorm output one common range, in place, without changing the function.

    Runs the calibration inputs through ``run_fn`` (in eval mode, no grad), finds each ``nn.LayerNorm``
    whose output is read only by ``nn.Linear`` layers that read nothing else, measures each output
    channel's ``[100 - percentile, percentile]`` range, and folds per-channel factors into the
    LayerNorm affine and the Linears' input columns and biases (see the module docstring). Afterwards a
    per-tensor activation quantiser on that output is as fine as a per-channel one.

    Args:
        model: any torch model; modified in place (deep-copy it first to keep the original).
        calibration_inputs: inputs for ``run_fn``, e.g. waveforms [1, T] for a codec.
        run_fn: ``run_fn(model, item)`` runs one calibration item through every graph to be quantised
            (e.g. ``lambda m, wav: m.decode_codes(m.encode_codes(wav))``); default ``model(item)``
            (a tuple/list is unpacked, a dict passed as keywords).
        percentile: upper percentile of the per-channel range (the lower one is ``100 - percentile``);
            100 gives min/max.
        strength: alpha in ``s_c ~ range_c ** alpha``: 1 equalises the ranges (the paper); below 1
            migrates only part of the spread into the weights (SmoothQuant's migration strength),
            which leaves headroom for channels whose calibrated range is too tight (few clips).
        exclude: LayerNorm names to leave alone (reported as skipped), e.g. ``("decoder.norm",)``
            for codec-rvq, whose iSTFT head is sensitive to its weights' int8 grid.

    Returns:
        A :class:`RepQuantReport`: the rewritten LayerNorms (with their range spread before) and the
        skipped ones with the reason.

    Raises:
        ConfigError: a percentile outside (50, 100], a strength outside [0, 1], or no calibration input.
    """
    if not 50.0 < percentile <= 100.0:
        raise ConfigError(f"percentile must be in (50, 100], got {percentile}")
    if not 0.0 <= strength <= 1.0:
        raise ConfigError(f"strength must be in [0, 1], got {strength}")
    run = run_fn or _default_run
    norms = {name: m for name, m in model.named_modules() if isinstance(m, nn.LayerNorm)}
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    tracer = _NormTracer({id(m.weight): name for name, m in linears.items()})
    handles = [m.register_forward_hook(tracer.norm_hook(name)) for name, m in norms.items()]
    was_training, count = model.training, 0
    model.eval()
    try:
        for item in calibration_inputs:
            with tracer:
                run(model, item)
            tracer.end_run()
            count += 1
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if count == 0:
        raise ConfigError("reparameterize_layernorm_activations got no calibration input")
    report = RepQuantReport(percentile=percentile, num_calibration_inputs=count)
    for name, norm in norms.items():
        reason = "excluded by the caller" if name in exclude else _skip_reason(name, norm, tracer, linears)
        if reason:
            report.skipped[name] = reason
            continue
        consumers = sorted(tracer.consumers[name])
        lo, hi = _channel_ranges(tracer.rows.pop(name), percentile)
        report.reparameterized.append(
            _fold(name, norm, [(c, linears[c]) for c in consumers], lo, hi, strength)
        )
    for entry in report.reparameterized:
        logger.info("repquant %s -> %s: range spread %.1fx", entry.name, entry.consumers, entry.range_spread)
    for name, reason in report.skipped.items():
        logger.info("repquant skipped %s: %s", name, reason)
    return report


def _skip_reason(name: str, norm: nn.LayerNorm, tracer: _NormTracer, linears: dict[str, nn.Linear]) -> str:
    if not tracer.rows.get(name):
        return "never ran on the calibration inputs"
    if name in tracer.blocked:
        return tracer.blocked[name]
    if not tracer.consumers.get(name):
        return "output not read by any Linear"
    if norm.weight is None or len(norm.normalized_shape) != 1:
        return "no per-channel affine over a single (last) dimension to fold into"
    for consumer in tracer.consumers[name]:
        others = tracer.linear_sources[consumer] - {name}
        if others:
            return f"{consumer} also reads other inputs, which the rescaled weight would change"
        if linears[consumer].in_features != norm.normalized_shape[0]:
            return f"{consumer} reads a different width than the LayerNorm"
    return ""


def _channel_ranges(chunks: list[Tensor], percentile: float) -> tuple[Tensor, Tensor]:
    """Per-channel (lo, hi) percentiles [C] of calibration frames [N, C], in float64."""
    rows = torch.cat(chunks)
    if rows.shape[0] > _MAX_ROWS:
        generator = torch.Generator().manual_seed(0)
        rows = rows[torch.randperm(rows.shape[0], generator=generator)[:_MAX_ROWS]]
    values = rows.double().numpy()
    lo = np.percentile(values, 100.0 - percentile, axis=0)
    hi = np.percentile(values, percentile, axis=0)
    return torch.from_numpy(lo), torch.from_numpy(hi)


def _fold(
    name: str,
    norm: nn.LayerNorm,
    consumers: list[tuple[str, nn.Linear]],
    lo: Tensor,
    hi: Tensor,
    strength: float,
) -> ReparameterizedNorm:
    """Fold s_c = range_c / mean range and t_c = centre_c into the LayerNorm and its Linears (float64)."""
    width = hi - lo
    # A constant channel (range 0) gets a tiny factor rather than a division by zero; its output is
    # (y - t) / s = 0 on the calibration data either way.
    width = width.clamp_min(max(float(width.max()), 1e-12) * 1e-6)
    target = width.mean()
    device = norm.weight.device
    powered = width**strength
    scale, shift = (powered / powered.mean()).to(device), ((hi + lo) / 2).to(device)  # [C] each
    gamma = norm.weight.detach().double()
    beta = norm.bias.detach().double() if norm.bias is not None else torch.zeros_like(gamma)
    norm.weight.copy_((gamma / scale).to(norm.weight.dtype))
    new_beta = (beta - shift) / scale
    if norm.bias is None:
        norm.bias = nn.Parameter(new_beta.to(norm.weight.dtype))
    else:
        norm.bias.copy_(new_beta.to(norm.bias.dtype))
    for _, linear in consumers:
        weight = linear.weight.detach().double()  # [out, C]
        bias = linear.bias.detach().double() if linear.bias is not None else torch.zeros_like(weight[:, 0])
        new_bias = bias + weight @ shift
        linear.weight.copy_((weight * scale).to(linear.weight.dtype))
        if linear.bias is None:
            linear.bias = nn.Parameter(new_bias.to(linear.weight.dtype))
        else:
            linear.bias.copy_(new_bias.to(linear.bias.dtype))
    return ReparameterizedNorm(
        name=name,
        consumers=tuple(c for c, _ in consumers),
        num_channels=int(width.numel()),
        range_spread=float(width.max() / width.min()),
        target_range=float(target),
        scale_min=float(scale.min()),
        scale_max=float(scale.max()),
    )
