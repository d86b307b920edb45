"""DeCRED decoding: next-token probabilities re-estimated from intermediate and final decoder layers.

Polok et al. 2024 (section 2.2) combine the distributions of the auxiliary classifiers and the final
one in two ways, both implemented here on log-probabilities [..., V] listed intermediate-first:

- ``"linear"``: interpolation of probabilities, ``p = sum_l w_l p_l``;
- ``"log_linear"``: a product of experts, ``p ∝ exp(sum_l w_l log p_l)`` (renormalised);
- ``"final"``: the last layer alone (the baseline).

Weights are normalised to sum to one; the default gives every head the same weight.

Example:
    >>> a = torch.tensor([0.5, 0.5]).log(); b = torch.tensor([0.9, 0.1]).log()
    >>> [round(v, 4) for v in combine_layer_log_probs([a, b], "linear").exp().tolist()]
    [0.7, 0.3]
    >>> p = combine_layer_log_probs([a, b], "log_linear").exp()
    >>> round(float(p[0]), 4) == round(3 / 4, 4)
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from speechkit.errors import ConfigError

MODES = ("final", "linear", "log_linear")


def combine_layer_log_probs(
    layer_log_probs: Sequence[Tensor], mode: str = "log_linear", weights: Sequence[float] | None = None
) -> Tensor:
    """Combine per-head log-probs (intermediate heads first, final last) into one [..., V] log-prob.

    Args:
        layer_log_probs: one normalised log-prob tensor per head, all of the same shape.
        mode: ``"final"``, ``"linear"`` or ``"log_linear"`` (see the module docstring).
        weights: one non-negative weight per head (default uniform); normalised to sum 1.

    Returns:
        log-probabilities [..., V] that sum to one over V.
    """
    if mode not in MODES:
        raise ConfigError(f"DeCRED mode must be one of {MODES}, got {mode!r}")
    if mode == "final" or len(layer_log_probs) == 1:
        return layer_log_probs[-1]
    if weights is None:
        weights = [1.0] * len(layer_log_probs)
    if len(weights) != len(layer_log_probs) or min(weights) < 0 or sum(weights) <= 0:
        raise ConfigError(f"need {len(layer_log_probs)} non-negative DeCRED weights, got {list(weights)}")
    stacked = torch.stack(list(layer_log_probs))  # [L, ..., V]
    w = torch.tensor(weights, dtype=stacked.dtype, device=stacked.device)
    w = (w / w.sum()).view(-1, *([1] * (stacked.dim() - 1)))
    if mode == "linear":
        return torch.logsumexp(stacked + w.clamp_min(1e-30).log(), dim=0)
    return (stacked * w).sum(0).log_softmax(-1)
