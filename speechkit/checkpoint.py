"""Checkpoint folders: ``config.json`` + ``model.safetensors`` + ``card.json``.

Nothing is ever unpickled. The card records what the checkpoint is (task, data, training ledger,
measured metrics) and the sha256 of the weights, which loading verifies, so a truncated or altered
weight file is refused with a clear :class:`~speechkit.errors.CheckpointError`.

Shipped checkpoints live in ``speechkit/checkpoints/<name>/`` and are found by name.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from speechkit.config import read_json
from speechkit.errors import CheckpointError, ConfigError

logger = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).resolve().parent / "checkpoints"
CONFIG_FILE, WEIGHTS_FILE, CARD_FILE = "config.json", "model.safetensors", "card.json"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(
    model: nn.Module,
    directory: str | Path,
    card: dict[str, Any] | None = None,
    weights_dtype: torch.dtype = torch.float32,
) -> Path:
    """Write a model (which must have ``.config``) as a checkpoint folder.

    Args:
        model: a registered model.
        directory: output folder (created).
        card: extra card fields (task, data, ledger, metrics ...); the weights' sha256, parameter
            count, size and storage dtype are filled in.
        weights_dtype: storage type of floating-point tensors; float16 halves a shipped checkpoint
            and loading casts back to the model's float32.

    Returns:
        The folder.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.save(directory / CONFIG_FILE)
    state = {
        k: (v.to(weights_dtype) if v.is_floating_point() else v).detach().contiguous().cpu()
        for k, v in model.state_dict().items()
    }
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"kind": model.config.KIND})
    card = dict(card or {})
    card.update(
        kind=model.config.KIND,
        parameters=sum(p.numel() for p in model.parameters()),
        size_bytes=(directory / WEIGHTS_FILE).stat().st_size,
        weights_dtype=str(weights_dtype).removeprefix("torch."),
        weights_sha256=sha256_file(directory / WEIGHTS_FILE),
    )
    (directory / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    return directory


def load_model(directory: str | Path) -> nn.Module:
    """Rebuild a model from a checkpoint folder (strict) and return it in eval mode."""
    from speechkit.registry import build_model, config_from_dict

    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {directory}")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise CheckpointError(f"checkpoint {directory} has no {name}")
    try:
        config = config_from_dict(read_json(directory / CONFIG_FILE))
    except ConfigError as err:
        raise CheckpointError(f"checkpoint {directory}: bad config: {err}") from err
    card = read_card(directory)
    expected = card.get("weights_sha256")
    if expected and sha256_file(directory / WEIGHTS_FILE) != expected:
        raise CheckpointError(
            f"checkpoint {directory}: {WEIGHTS_FILE} does not match the sha256 in {CARD_FILE} "
            "(corrupted, truncated or altered)"
        )
    try:
        state = load_file(str(directory / WEIGHTS_FILE))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {directory}: cannot read {WEIGHTS_FILE}: {err}") from err
    model = build_model(config)
    _load_state_strict(model, state, directory)
    # Identity of the weights, written into token files so a decoder can refuse foreign tokens.
    model.checkpoint_name = directory.name
    model.fingerprint = (expected or sha256_file(directory / WEIGHTS_FILE))[:16]
    return model.eval()


def _load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], directory: Path) -> None:
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {directory}: weights do not match the config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    for key, tensor in state.items():
        if own[key].shape != tensor.shape:
            raise CheckpointError(
                f"checkpoint {directory}: {key} has shape {tuple(tensor.shape)}, config expects "
                f"{tuple(own[key].shape)}"
            )
    model.load_state_dict(state, strict=True)


def read_card(directory: str | Path) -> dict[str, Any]:
    """The checkpoint's card (empty dict when it has none)."""
    path = Path(directory) / CARD_FILE
    if not path.exists():
        return {}
    try:
        return read_json(path)
    except ConfigError as err:
        raise CheckpointError(str(err)) from err


@dataclass(frozen=True)
class ShippedCheckpoint:
    """A checkpoint that ships inside the package."""

    name: str
    path: Path
    card: dict[str, Any]

    @property
    def task(self) -> str:
        return str(self.card.get("task", "?"))

    @property
    def size_bytes(self) -> int:
        return (self.path / WEIGHTS_FILE).stat().st_size

    @property
    def headline(self) -> str:
        metrics = self.card.get("headline_metrics", {})
        return ", ".join(f"{k} {v}" for k, v in metrics.items())


def shipped_checkpoints() -> list[ShippedCheckpoint]:
    """Every checkpoint shipped in ``speechkit/checkpoints``, sorted by name.

    Example:
        >>> "mel-rvq-demo" in [c.name for c in shipped_checkpoints()]
        True
    """
    if not SHIPPED_DIR.is_dir():
        return []
    return [
        ShippedCheckpoint(path.name, path, read_card(path))
        for path in sorted(SHIPPED_DIR.iterdir())
        if (path / CONFIG_FILE).is_file()
    ]


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """Folder of a shipped checkpoint name or of an existing path."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    shipped = {c.name: c.path for c in shipped_checkpoints()}
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    raise CheckpointError(
        f"no checkpoint named or found at {name_or_path!r}; shipped names: {sorted(shipped)}"
    )
