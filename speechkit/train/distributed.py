"""Process-group plumbing for ``torchrun``: who am I, which device, and the few collectives the trainer needs.

Launch a recipe on one machine with ``torchrun --standalone --nproc_per_node=N script.py`` and on several
with ``torchrun --nnodes=M --nproc_per_node=N --rdzv_backend=c10d --rdzv_endpoint=HOST:PORT script.py``;
torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT, which
:meth:`DistributedContext.from_env` reads. Without WORLD_SIZE the run is a single process and no process
group is created. The model code never sees any of this (see STYLE.md: no distributed state in models).

Example:
    >>> ctx = DistributedContext.from_env({}).init()
    >>> ctx.rank, ctx.world_size, ctx.is_main
    (0, 1, True)
    >>> ctx.all_reduce_mean({"loss": 2.0})
    {'loss': 2.0}
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import math
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from speechkit.errors import ConfigError

logger = logging.getLogger(__name__)


class DistributedContext:
    """This process's place in a (possibly single-process) torchrun job.

    Args:
        rank: global rank.
        world_size: number of processes.
        local_rank: rank on this machine; picks the CUDA device.
        local_world_size: processes on this machine (for the ledger's node count).
        device: force a device (e.g. ``"cpu"`` on a GPU machine); None = ``cuda:LOCAL_RANK`` when CUDA
            is available, else CPU.
        timeout_minutes: collective timeout; a rank waiting at a barrier while rank 0 evaluates counts
            against it, so raise it for long evaluations.
    """

    def __init__(
        self,
        *,
        rank: int = 0,
        world_size: int = 1,
        local_rank: int = 0,
        local_world_size: int | None = None,
        device: str | torch.device | None = None,
        timeout_minutes: float = 30.0,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
            raise ConfigError(
                f"bad process placement: rank={rank}, world_size={world_size}, local_rank={local_rank}"
            )
        self._rank, self._world_size, self._local_rank = rank, world_size, local_rank
        self.local_world_size = local_world_size or world_size
        if device is None:
            device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
        self._device = torch.device(device)
        self.timeout_minutes = timeout_minutes
        self._owns_group = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: object) -> DistributedContext:
        """Read torchrun's variables from ``environ`` (default ``os.environ``).

        Args:
            environ: the environment to read.
            **kwargs: ``device`` / ``timeout_minutes``, passed on.

        Returns:
            A context; call :meth:`init` before training.

        Example:
            >>> env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}
            >>> env |= {"MASTER_ADDR": "node0", "MASTER_PORT": "29500"}
            >>> ctx = DistributedContext.from_env(env, device="cpu")
            >>> ctx.rank, ctx.world_size, ctx.is_main
            (1, 2, False)
        """
        env = os.environ if environ is None else environ
        if "WORLD_SIZE" not in env:
            return cls(**kwargs)  # type: ignore[arg-type]
        values = {}
        for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
            raw = env.get(name, "0" if name != "LOCAL_WORLD_SIZE" else env["WORLD_SIZE"])
            try:
                values[name] = int(raw)
            except ValueError as err:
                raise ConfigError(f"environment variable {name}={raw!r} is not an integer") from err
        if values["WORLD_SIZE"] > 1:
            missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in env]
            if missing:
                raise ConfigError(f"WORLD_SIZE>1 but {missing} not set; launch with torchrun")
        return cls(
            rank=values["RANK"],
            world_size=values["WORLD_SIZE"],
            local_rank=values["LOCAL_RANK"],
            local_world_size=values["LOCAL_WORLD_SIZE"],
            **kwargs,  # type: ignore[arg-type]
        )

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size

    @property
    def local_rank(self) -> int:
        return self._local_rank

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def is_main(self) -> bool:
        """True on rank 0, which logs, evaluates and writes shared files."""
        return self._rank == 0

    @property
    def is_distributed(self) -> bool:
        return self._world_size > 1

    @property
    def num_nodes(self) -> int:
        return max(1, self._world_size // max(1, self.local_world_size))

    @property
    def backend(self) -> str:
        """``"nccl"`` on CUDA, ``"gloo"`` on CPU."""
        return "nccl" if self._device.type == "cuda" else "gloo"

    def init(self) -> DistributedContext:
        """Set the CUDA device and join the process group (idempotent; nothing to join when single).

        Returns:
            self, for chaining.
        """
        if self._device.type == "cuda":
            torch.cuda.set_device(self._device)
        if self.is_distributed and not dist.is_initialized():
            kwargs: dict[str, object] = {}
            if self.backend == "nccl":
                kwargs["device_id"] = self._device  # eager NCCL init: barriers know their device
            dist.init_process_group(
                backend=self.backend,
                init_method="env://",
                rank=self._rank,
                world_size=self._world_size,
                timeout=datetime.timedelta(minutes=self.timeout_minutes),
                **kwargs,
            )
            self._owns_group = True
            logger.info("rank %d/%d joined the %s process group", self._rank, self._world_size, self.backend)
        return self

    def _check_group(self) -> None:
        if not dist.is_initialized():
            raise RuntimeError("DistributedContext.init() must run before collectives when WORLD_SIZE > 1")

    def barrier(self) -> None:
        """Wait for every rank (no-op when single)."""
        if not self.is_distributed:
            return
        self._check_group()
        if self.backend == "nccl":
            dist.barrier(device_ids=[self._device.index or 0])
        else:
            dist.barrier()

    def all_reduce_sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` (on :attr:`device`) over ranks in place and return it."""
        if self.is_distributed:
            self._check_group()
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_reduce_mean(self, values: Mapping[str, float]) -> dict[str, float]:
        """Average a dict of floats over ranks. Every rank must pass the same keys.

        Args:
            values: name -> number on this rank.

        Returns:
            name -> mean over ranks (a plain copy when single).
        """
        names = sorted(values)
        if not self.is_distributed or not names:
            return {name: float(values[name]) for name in names}
        packed = torch.tensor([float(values[n]) for n in names], dtype=torch.float64, device=self._device)
        self.all_reduce_sum_(packed)
        return dict(zip(names, (packed / self._world_size).tolist(), strict=True))

    def broadcast_(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        """Overwrite ``tensor`` with rank ``src``'s copy, in place."""
        if self.is_distributed:
            self._check_group()
            dist.broadcast(tensor, src=src)
        return tensor

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Copy rank 0's buffers of ``module`` to every rank (no-op when single)."""
        if self.is_distributed:
            for buffer in module.buffers():
                self.broadcast_(buffer.data)

    def shutdown(self) -> None:
        """Leave the process group this context created (call once at the end of the script)."""
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()
        self._owns_group = False


class ShardedInfiniteSampler(Sampler[int]):
    """Endless, seeded stream of dataset indices, sharded by rank and resumable at any sample.

    Epoch ``e`` draws one permutation of all indices from ``seed + e`` (the same on every rank), pads
    it by wrapping to a multiple of ``world_size`` and gives rank ``r`` every ``world_size``-th index
    from ``r``, as ``DistributedSampler`` does; epochs follow each other without end. The position is
    one number, the samples this rank has consumed (``start``), so resuming skips indices, not data.

    Args:
        num_samples: dataset length.
        rank: this process's rank.
        world_size: number of processes.
        seed: permutation seed.
        shuffle: permute each epoch (False: 0, 1, 2, ... in every epoch).
        start: samples of this rank's stream already consumed.

    Example:
        >>> a = ShardedInfiniteSampler(5, rank=0, world_size=2, seed=0)
        >>> b = ShardedInfiniteSampler(5, rank=1, world_size=2, seed=0)
        >>> sorted(_take(a, 3) + _take(b, 3))[:5]
        [0, 1, 2, 3, 4]
        >>> _take(ShardedInfiniteSampler(5, rank=0, world_size=2, start=4), 2) == _take(a, 6)[4:]
        True
    """

    def __init__(
        self,
        num_samples: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        start: int = 0,
    ) -> None:
        if num_samples < 1:
            raise ConfigError("cannot sample from an empty dataset")
        self.num_samples, self.rank, self.world_size = num_samples, rank, world_size
        self.seed, self.shuffle, self.start = seed, shuffle, start
        self.shard_size = math.ceil(num_samples / world_size)

    def position(self, consumed: int) -> tuple[int, int]:
        """(epoch, index within this rank's shard) after ``consumed`` samples."""
        return divmod(consumed, self.shard_size)

    def _shard(self, epoch: int) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(self.num_samples, generator=generator)
        else:
            order = torch.arange(self.num_samples)
        total = self.shard_size * self.world_size
        order = order.repeat(math.ceil(total / self.num_samples))[:total]
        return order[self.rank : total : self.world_size].tolist()

    def __iter__(self) -> Iterator[int]:
        epoch, offset = self.position(self.start)
        while True:
            yield from self._shard(epoch)[offset:]
            epoch, offset = epoch + 1, 0


def sharded_train_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
    start: int = 0,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    num_workers: int = 0,
) -> DataLoader:
    """Endless DataLoader over this rank's shard (:class:`ShardedInfiniteSampler`), resumable at ``start``.

    Args:
        dataset: map-style dataset.
        batch_size: items per batch (every batch is full).
        rank: this process's rank.
        world_size: number of processes.
        seed: shuffling seed (the same on every rank).
        start: samples of this rank's stream already consumed.
        collate_fn: batch builder (default: torch's default collate).
        num_workers: worker processes.

    Returns:
        A loader whose iterator never ends.

    Example:
        >>> loader = sharded_train_loader(list(range(10)), batch_size=4)
        >>> batches = iter(loader)
        >>> [len(next(batches)) for _ in range(3)]
        [4, 4, 4]
    """
    sampler = ShardedInfiniteSampler(len(dataset), rank=rank, world_size=world_size, seed=seed, start=start)
    # The loader draws its worker base seed from this generator rather than the global one, so creating
    # it does not shift the training random stream (exact resume), and workers get seeds fixed by position.
    generator = torch.Generator().manual_seed((seed * 1_000_003 + rank * 7_919 + start) % 2**62)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate_fn,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=True,
        generator=generator,
    )


def rescale_consumed(consumed: int, old_world_size: int, new_world_size: int) -> int:
    """Per-rank sample count after resuming a run with a different number of processes.

    The global number of samples seen is kept; epochs then split at (nearly) the same point.

    Example:
        >>> rescale_consumed(100, 2, 4)
        50
    """
    return consumed * old_world_size // new_world_size


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a batch (tensors, dicts, lists, tuples, named tuples, dataclasses) to ``device``.

    Example:
        >>> move_to_device({"x": [torch.ones(1)]}, torch.device("cpu"))["x"][0].device.type
        'cpu'
    """
    non_blocking = device.type == "cuda"  # pinned host memory copies asynchronously
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        return {key: move_to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(move_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        fields = {
            f.name: move_to_device(getattr(batch, f.name), device)
            for f in dataclasses.fields(batch)
            if f.init
        }
        return dataclasses.replace(batch, **fields)
    return batch


@contextlib.contextmanager
def sigterm_handler(on_signal: Callable[[], None]) -> Iterator[None]:
    """Within the context, SIGTERM calls ``on_signal()`` instead of killing the process.

    torchrun forwards SIGTERM to its workers and schedulers send it before a kill, so the trainer can
    finish its step and checkpoint. Outside the main thread (where Python cannot set handlers) this
    does nothing.

    Example:
        >>> with sigterm_handler(lambda: None):
        ...     pass
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        logger.warning("SIGTERM received")
        on_signal()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _take(sampler: Sampler[int], count: int) -> list[int]:
    iterator = iter(sampler)
    return [next(iterator) for _ in range(count)]
