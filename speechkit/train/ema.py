"""Exponential moving average of a model's weights, the copy usually evaluated and shipped.

The EMA averages parameters, ``ema = decay * ema + (1 - decay) * param``, in fp32 whatever the model's
dtype (Polyak & Juditsky 1992; the usual trick for GANs and codecs). Buffers are copied, not averaged:
batch-norm statistics and vector-quantizer codebooks kept by EMA are already running averages, and
the averaged weights must be evaluated with the codebooks the model actually uses.

Example:
    >>> import torch
    >>> model = torch.nn.Linear(2, 1)
    >>> ema = ModelEMA(model, decay=0.9)
    >>> with torch.no_grad():
    ...     _ = model.weight.add_(1.0)
    >>> ema.update(model)
    >>> bool((ema.state_dict()["weight"] < model.weight).all())
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import torch
from torch import nn

from speechkit.errors import CheckpointError, ConfigError


class ModelEMA:
    """Shadow copy of a model's state dict, updated after each optimizer step.

    Args:
        model: the (unwrapped, not DDP) model to follow; the shadow starts equal to its weights and
            lives on the same device.
        decay: weight of the old average per update, in (0, 1); 0.999 averages over ~1000 steps.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        # Tied weights appear once per name in the state dict; average each name (identical values).
        self._param_names = {name for name, _ in model.named_parameters(remove_duplicate=False)}
        self.shadow: dict[str, torch.Tensor] = {}
        for name, tensor in model.state_dict().items():
            tensor = tensor.detach()
            self.shadow[name] = tensor.float().clone() if tensor.is_floating_point() else tensor.clone()

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step toward ``model``'s current weights (call after optimizer.step).

        Args:
            model: the model this EMA was built from.
        """
        for name, tensor in model.state_dict().items():
            shadow = self.shadow[name]
            if name in self._param_names and shadow.is_floating_point():
                shadow.lerp_(tensor.detach().to(shadow.dtype), 1.0 - self.decay)
            else:
                shadow.copy_(tensor)
        self.num_updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged state: name -> tensor (fp32 for floating-point entries), ready for safetensors."""
        return dict(self.shadow)

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore the average saved by :meth:`state_dict` (same keys required).

        Raises:
            CheckpointError: when keys or shapes differ from the model's.
        """
        missing, unknown = sorted(set(self.shadow) - set(state)), sorted(set(state) - set(self.shadow))
        if missing or unknown:
            raise CheckpointError(
                f"EMA state does not match the model: missing {missing}, unexpected {unknown}"
            )
        for name, tensor in state.items():
            if tensor.shape != self.shadow[name].shape:
                expected = tuple(self.shadow[name].shape)
                raise CheckpointError(
                    f"EMA state {name!r} has shape {tuple(tensor.shape)}, model has {expected}"
                )
            self.shadow[name].copy_(tensor)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite ``model``'s weights with the average (cast to the model's dtypes), e.g. before saving."""
        current = model.state_dict()
        model.load_state_dict({name: self.shadow[name].to(current[name].dtype) for name in current})

    @contextlib.contextmanager
    def applied_to(self, model: nn.Module) -> Iterator[nn.Module]:
        """Context in which ``model`` holds the averaged weights; the raw weights come back after.

        Example:
            >>> import torch
            >>> model = torch.nn.Linear(2, 1)
            >>> ema = ModelEMA(model, decay=0.5)
            >>> raw = model.weight.detach().clone()
            >>> with torch.no_grad():
            ...     _ = model.weight.zero_()
            >>> ema.update(model)
            >>> with ema.applied_to(model):
            ...     torch.allclose(model.weight, raw / 2)
            True
            >>> bool((model.weight == 0).all())
            True
        """
        backup = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                model.load_state_dict(backup)
