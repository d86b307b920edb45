"""Training state on disk without pickle: tensors in safetensors, everything else in JSON.

A state is a folder ``run_dir/checkpoints/last/``::

    state.json               step, sampler position, wall hours, config, optimizer/scheduler structure
    model.safetensors        model state dict (raw weights)
    ema.safetensors          EMA state dict (when EMA is on)
    optimizer.safetensors    optimizer and scheduler tensors (AdamW moments, step counts)
    rng_rank{R}.safetensors  each rank's torch/CUDA/numpy/random generator state

Optimizer and scheduler state dicts are split by :func:`split_tensors`: each tensor goes to the
safetensors file under its path (``optimizer.state.3.exp_avg``) and the JSON keeps a
``{"__tensor__": path}`` reference; tuples and non-string dict keys are tagged so the round trip is exact.

Writes are atomic: the folder is written as ``.last.tmp`` and renamed into place; the previous state is
moved to ``.last.old`` first and deleted last, so a kill at any moment leaves a complete state that
:func:`find_training_state` finds. ``best`` (weights only) is written the same way.

Example:
    >>> import torch
    >>> tensors = {}
    >>> meta = split_tensors({"state": {0: {"m": torch.ones(2)}}, "betas": (0.9, 0.99)}, "opt", tensors)
    >>> sorted(tensors), join_tensors(meta, tensors)["betas"]
    (['opt.state.0.m'], (0.9, 0.99))
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from speechkit.errors import CheckpointError
from speechkit.train.distributed import DistributedContext
from speechkit.train.ema import ModelEMA

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CHECKPOINT_DIR, LAST, BEST = "checkpoints", "last", "best"
STATE_FILE, MODEL_FILE, EMA_FILE, OPTIMIZER_FILE = (
    "state.json",
    "model.safetensors",
    "ema.safetensors",
    "optimizer.safetensors",
)


def _rng_file(rank: int) -> str:
    return f"rng_rank{rank}.safetensors"


def split_tensors(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-ready copy of ``obj`` with every tensor moved into ``tensors`` (keyed by its path).

    Args:
        obj: nested dicts/lists/tuples of tensors, numbers, strings, bools and None.
        prefix: path of ``obj``; tensor keys extend it with ``.key``.
        tensors: filled with path -> tensor.

    Returns:
        The JSON structure; :func:`join_tensors` inverts it.
    """
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        if all(isinstance(key, str) for key in obj):
            return {key: split_tensors(value, f"{prefix}.{key}", tensors) for key, value in obj.items()}
        items = []
        for key, value in obj.items():
            if not isinstance(key, (int, float, str, bool)):
                raise CheckpointError(f"cannot store dict key {key!r} at {prefix} in JSON")
            items.append([key, split_tensors(value, f"{prefix}.{key}", tensors)])
        return {"__items__": items}
    if isinstance(obj, tuple):
        return {"__tuple__": [split_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [split_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise CheckpointError(f"cannot store {type(obj).__name__} at {prefix} without pickle")


def join_tensors(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Invert :func:`split_tensors`."""
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            try:
                return tensors[obj["__tensor__"]]
            except KeyError as err:
                raise CheckpointError(f"training state lacks tensor {obj['__tensor__']!r}") from err
        if set(obj) == {"__items__"}:
            return {key: join_tensors(value, tensors) for key, value in obj["__items__"]}
        if set(obj) == {"__tuple__"}:
            return tuple(join_tensors(v, tensors) for v in obj["__tuple__"])
        return {key: join_tensors(value, tensors) for key, value in obj.items()}
    if isinstance(obj, list):
        return [join_tensors(v, tensors) for v in obj]
    return obj


def _saveable(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors with no two sharing storage (safetensors refuses shared storage)."""
    out, seen = {}, set()
    for name, tensor in state.items():
        tensor = tensor.detach().cpu().contiguous()
        pointer = tensor.untyped_storage().data_ptr()
        if pointer in seen and tensor.numel() > 0:
            tensor = tensor.clone()  # tied weights: store each name separately
        seen.add(pointer)
        out[name] = tensor
    return out


def _write_tensors(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    save_file(_saveable(tensors), str(path), metadata=metadata)
    _fsync(path)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n")
    _fsync(path)


def _fsync(path: Path, directory: bool = False) -> None:
    """Flush a file (or a folder's entries, where the OS allows it) to disk before it is published."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if directory:
            return  # folders cannot be opened on some systems (Windows)
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"cannot read {path}: {err}") from err


def read_state_json(directory: str | Path) -> dict[str, Any]:
    """The ``state.json`` of a saved state, checked for the format version."""
    path = Path(directory) / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read training state {path}: {err}") from err
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported format_version {data.get('format_version')!r}")
    return data


def capture_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This process's generator states (torch, CUDA, numpy, random) as (tensors, JSON metadata).

    Example:
        >>> state = capture_rng_state()
        >>> first = torch.rand(2)
        >>> restore_rng_state(*state)
        >>> torch.equal(torch.rand(2), first)
        True
    """
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["cuda"] = torch.cuda.get_rng_state()
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["numpy"] = torch.from_numpy(keys.astype(np.int64))
    version, internal, gauss_next = random.getstate()
    tensors["python"] = torch.tensor(internal, dtype=torch.int64)
    meta = {"numpy": [name, int(pos), int(has_gauss), float(gauss)], "python": [version, gauss_next]}
    return tensors, meta


def restore_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["cuda"])
    name, pos, has_gauss, gauss = meta["numpy"]
    np.random.set_state((name, tensors["numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, gauss_next = meta["python"]
    random.setstate((version, tuple(tensors["python"].tolist()), gauss_next))


def seed_generators(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's global generator and ``random`` with ``seed``.

    Example:
        >>> seed_generators(1)
        >>> first = np.random.rand()
        >>> seed_generators(1)
        >>> bool(first == np.random.rand())
        True
    """
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _publish(tmp: Path, final: Path) -> None:
    """Swap ``tmp`` into ``final`` so that some complete folder exists at every instant."""
    old = final.with_name(f".{final.name}.old")
    if final.exists():
        if old.exists():
            shutil.rmtree(old)  # stale: ``final`` is complete
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)
    _fsync(final.parent, directory=True)


def save_training_state(
    run_dir: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    ema: ModelEMA | None,
    meta: dict[str, Any],
    dist: DistributedContext,
) -> Path:
    """Write ``run_dir/checkpoints/last`` atomically. Every rank must call it (it has barriers).

    Rank 0 writes the model, EMA, optimizer and JSON; every rank writes its own generator state.

    Args:
        run_dir: the run folder.
        model: the unwrapped model.
        optimizer: its optimizer.
        scheduler: its learning-rate scheduler.
        ema: the EMA, if any.
        meta: JSON-ready run facts (step, sampler position, config ...), stored in ``state.json``.
        dist: the process context.

    Returns:
        The ``last`` folder.

    Example:
        >>> import tempfile
        >>> model = nn.Linear(2, 1)
        >>> optimizer = torch.optim.AdamW(model.parameters())
        >>> scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        >>> objects = dict(model=model, optimizer=optimizer, scheduler=scheduler, ema=None)
        >>> with tempfile.TemporaryDirectory() as run_dir:
        ...     folder = save_training_state(run_dir, **objects, meta={"step": 7}, dist=DistributedContext())
        ...     load_training_state(find_training_state(run_dir), **objects)["step"]
        7
    """
    root = Path(run_dir) / CHECKPOINT_DIR
    final, tmp = root / LAST, root / f".{LAST}.tmp"
    if dist.is_main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    dist.barrier()
    rng_tensors, rng_meta = capture_rng_state()
    _write_tensors(tmp / _rng_file(dist.rank), rng_tensors, {"meta": json.dumps(rng_meta)})
    if dist.is_main:
        _write_tensors(tmp / MODEL_FILE, model.state_dict(), {"format": "pt"})
        if ema is not None:
            _write_tensors(tmp / EMA_FILE, ema.state_dict(), {"format": "pt"})
        tensors: dict[str, torch.Tensor] = {}
        state = dict(meta)
        state["format_version"] = FORMAT_VERSION
        state["optimizer"] = split_tensors(optimizer.state_dict(), "optimizer", tensors)
        state["scheduler"] = split_tensors(scheduler.state_dict(), "scheduler", tensors)
        state["has_ema"] = ema is not None
        _write_tensors(tmp / OPTIMIZER_FILE, tensors)
        _write_json(tmp / STATE_FILE, state)  # last: a folder without state.json is never loaded
    dist.barrier()
    if dist.is_main:
        _publish(tmp, final)
    dist.barrier()
    return final


def save_weights(
    directory: str | Path, *, model: nn.Module, ema: ModelEMA | None, meta: dict[str, Any]
) -> Path:
    """Write model (and EMA) weights and ``state.json`` atomically, e.g. the ``best`` checkpoint (rank 0)."""
    final = Path(directory)
    tmp = final.with_name(f".{final.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    _write_tensors(tmp / MODEL_FILE, model.state_dict(), {"format": "pt"})
    if ema is not None:
        _write_tensors(tmp / EMA_FILE, ema.state_dict(), {"format": "pt"})
    _write_json(tmp / STATE_FILE, {**meta, "format_version": FORMAT_VERSION, "has_ema": ema is not None})
    _publish(tmp, final)
    return final


def find_training_state(run_dir: str | Path) -> Path | None:
    """The newest complete ``last`` state in ``run_dir``, or None for a fresh run.

    Falls back to ``.last.old`` when a kill struck between the two renames of a save.

    Example:
        >>> find_training_state("no/such/run") is None
        True
    """
    root = Path(run_dir) / CHECKPOINT_DIR
    for candidate in (root / LAST, root / f".{LAST}.old"):
        if (candidate / STATE_FILE).is_file():
            return candidate
    return None


def _load_module_state(module: nn.Module, path: Path) -> None:
    state = _read_tensors(path)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not match the model: {err}") from err


def load_training_state(
    directory: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    ema: ModelEMA | None,
) -> dict[str, Any]:
    """Load a state written by :func:`save_training_state` into freshly built objects (in place).

    Generator states are not touched here; see :func:`read_rng_state`.

    Returns:
        The ``state.json`` contents.

    Raises:
        CheckpointError: missing or unreadable files, or weights that do not fit the model.
    """
    directory = Path(directory)
    state = read_state_json(directory)
    _load_module_state(model, directory / MODEL_FILE)
    if ema is not None:
        if state.get("has_ema"):
            ema.load_state_dict(_read_tensors(directory / EMA_FILE))
        else:
            logger.warning("%s has no EMA; starting the EMA from the loaded weights", directory)
            ema.load_state_dict(
                {k: v.float() if v.is_floating_point() else v for k, v in model.state_dict().items()}
            )
    tensors = _read_tensors(directory / OPTIMIZER_FILE)
    try:
        optimizer.load_state_dict(join_tensors(state["optimizer"], tensors))
        scheduler.load_state_dict(join_tensors(state["scheduler"], tensors))
    except (KeyError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{directory}: optimizer/scheduler state does not fit: {err}") from err
    return state


def read_rng_state(directory: str | Path, rank: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """This rank's saved generator state (for :func:`restore_rng_state`); None when the state has none."""
    path = Path(directory) / _rng_file(rank)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads((handle.metadata() or {})["meta"])
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read generator state {path}: {err}") from err
    return _read_tensors(path), meta
