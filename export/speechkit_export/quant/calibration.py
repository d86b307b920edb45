"""Collect each layer's input second-moment matrix ``H = X X^T`` by running calibration data through a model.

Every ``nn.Linear`` and ``nn.Conv1d`` (weight-normalised ones included) gets a forward hook that turns
its input into columns of X, one column per output position, matching the matrix view of its weight:

* Linear, input [..., D]: each of the ``prod(...)`` input vectors is a column (D = in_features).
* Conv1d, input [B, C_in, T], weight [C_out, C_in / groups, K]: the input is padded as the layer pads
  it and unfolded so each output position's receptive field is a column of length
  ``D = C_in / groups * K`` (channel-major, tap fastest: the order of ``weight.reshape(C_out, -1)``).
  A grouped conv (depthwise included) has one H per conv group, stored as [groups, D, D]; output
  channel r belongs to group ``r // (C_out / groups)``.

* ConvTranspose1d, input [B, C_in, T], weight [C_in, C_out, K = M * s]: viewed in its polyphase form
  (``quant.conv_transpose``), rows (output channel, phase), columns ``D = C_in * M`` lagged inputs.
  Other transposed convs (groups, dilation, padding, K not a multiple of s) are not supported.
Sums are accumulated in float64.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.errors import ConfigError
from speechkit_export.quant.conv_transpose import polyphase_columns, supports_conv_transpose

logger = logging.getLogger(__name__)

Calibration = Callable[[nn.Module], Any] | Iterable[Any]
"""Calibration data: an iterable of batches (a tensor -> model(x), a tuple/list -> model(*batch), a dict
-> model(**batch)), or a callable that runs the model itself, ``run(model)``."""


@dataclass
class HessianStats:
    """Accumulated ``sum x x^T`` of one layer's inputs.

    Args:
        sum_outer: float64 [D, D], or [groups, D, D] for a grouped Conv1d.
        num_samples: number of columns x accumulated (per conv group for a grouped Conv1d).
    """

    sum_outer: Tensor
    num_samples: int = 0

    def mean(self) -> Tensor:
        """``H / N``: the average outer product, float64, same shape as ``sum_outer``."""
        if self.num_samples == 0:
            raise ConfigError("no calibration sample reached this layer: it never ran during calibration")
        return self.sum_outer / self.num_samples

    def per_row(self, out_channels: int) -> Tensor:
        """The mean H for each output row: [D, D] if shared, else [C_out, D, D] (grouped convs)."""
        mean = self.mean()
        if mean.dim() == 2:
            return mean
        return mean.repeat_interleave(out_channels // mean.shape[0], dim=0)


def supports(module: nn.Module) -> bool:
    """True for the layer kinds whose H this module collects: nn.Linear, nn.Conv1d and the
    ConvTranspose1d that ``supports_conv_transpose`` accepts."""
    return isinstance(module, (nn.Linear, nn.Conv1d)) or supports_conv_transpose(module)


def conv1d_columns(conv: nn.Conv1d, x: Tensor) -> Tensor:
    """Receptive fields of a Conv1d input as columns, grouped: [B, C_in, T] -> [groups, D, B * T_out].

    ``conv.weight.reshape(C_out, -1)[r] @ columns[group of r]`` gives output channel r (bias aside).

    Example:
        >>> conv = nn.Conv1d(4, 6, kernel_size=3, padding=1, groups=2, bias=False)
        >>> x = torch.randn(2, 4, 5)
        >>> cols = conv1d_columns(conv, x)
        >>> cols.shape
        torch.Size([2, 6, 10])
        >>> w = conv.weight.reshape(2, 3, 6)  # [groups, C_out / groups, D]
        >>> y = (w @ cols).reshape(6, 2, 5).transpose(0, 1)
        >>> torch.allclose(y, conv(x), atol=1e-6)
        True
    """
    if x.dim() == 2:  # unbatched input [C_in, T]
        x = x.unsqueeze(0)
    (kernel,), (stride,), (dilation,) = conv.kernel_size, conv.stride, conv.dilation
    if conv.padding_mode != "zeros":
        x = F.pad(x, conv._reversed_padding_repeated_twice, mode=conv.padding_mode)
    elif conv.padding == "same":
        total = dilation * (kernel - 1)
        x = F.pad(x, (total // 2, total - total // 2))  # PyTorch puts the odd pad sample on the right
    elif conv.padding != "valid":
        x = F.pad(x, (conv.padding[0], conv.padding[0]))
    batch, channels, _ = x.shape
    # [B, C_in * K, T_out]: unfold on a height-1 image; rows are channel-major, tap fastest.
    patches = F.unfold(x.unsqueeze(2), (1, kernel), dilation=(1, dilation), stride=(1, stride))
    groups = conv.groups
    patches = patches.reshape(batch, groups, channels // groups * kernel, -1)
    return patches.permute(1, 2, 0, 3).reshape(groups, channels // groups * kernel, -1)


def layer_columns(module: nn.Module, x: Tensor) -> Tensor:
    """A layer's input as columns of X, [groups, D, N] (groups = 1 except for grouped convs)."""
    if isinstance(module, nn.Conv1d):
        return conv1d_columns(module, x)
    if isinstance(module, nn.ConvTranspose1d):
        return polyphase_columns(module, x)
    return x.reshape(-1, x.shape[-1]).T.unsqueeze(0)


def _run(model: nn.Module, calibration: Calibration) -> None:
    if callable(calibration):
        calibration(model)
        return
    if isinstance(calibration, Tensor):
        raise ConfigError("calibration must be an iterable of batches (e.g. [x]) or a callable, not a tensor")
    for batch in calibration:
        if isinstance(batch, dict):
            model(**batch)
        elif isinstance(batch, (tuple, list)):
            model(*batch)
        else:
            model(batch)


def collect_hessians(
    model: nn.Module,
    calibration: Calibration,
    modules: dict[str, nn.Module] | None = None,
) -> dict[str, HessianStats]:
    """Run calibration data through ``model`` (eval mode, no grad) and accumulate H for each layer.

    Args:
        model: the model; every submodule's train/eval flag is restored afterwards.
        calibration: batches or a callable (see ``Calibration``).
        modules: name -> layer to watch; default every nn.Linear and nn.Conv1d of the model.

    Returns:
        name -> HessianStats (float64 ``sum x x^T`` and the sample count).

    Example:
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> stats = collect_hessians(model, [torch.randn(5, 3)])
        >>> stats["0"].sum_outer.shape, stats["2"].num_samples
        (torch.Size([3, 3]), 5)
    """
    if modules is None:
        modules = {name: m for name, m in model.named_modules() if supports(m)}
    for name, module in modules.items():
        if not supports(module):
            raise ConfigError(
                f"layer {name!r} is a {type(module).__name__}: only Linear, Conv1d and plain "
                "ConvTranspose1d are supported"
            )
    stats: dict[str, HessianStats] = {}
    handles = []

    def make_hook(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], _output: Any) -> None:
            columns = layer_columns(module, args[0].detach()).to(torch.float64)
            outer = columns @ columns.transpose(1, 2)
            outer = outer[0] if outer.shape[0] == 1 and not _grouped(module) else outer
            entry = stats.get(name)
            if entry is None:
                stats[name] = HessianStats(sum_outer=outer, num_samples=columns.shape[2])
            else:
                entry.sum_outer += outer
                entry.num_samples += columns.shape[2]

        return hook

    modes = {module: module.training for module in model.modules()}
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        model.eval()
        with torch.no_grad():
            _run(model, calibration)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    for name in modules:
        if name not in stats:
            logger.warning("layer %s never ran during calibration", name)
    return stats


def _grouped(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv1d) and module.groups > 1
