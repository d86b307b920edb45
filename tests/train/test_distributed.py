"""distributed: torchrun environment parsing, single-process collectives, the sharded resumable sampler."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from speechkit.errors import ConfigError
from speechkit.train import DistributedContext
from speechkit.train.distributed import ShardedInfiniteSampler, move_to_device, rescale_consumed


def test_single_process_without_world_size():
    ctx = DistributedContext.from_env({}, device="cpu").init()
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.is_distributed) == (0, 1, True, False)
    assert ctx.device == torch.device("cpu") and ctx.backend == "gloo"
    ctx.barrier()
    assert ctx.all_reduce_mean({"b": 2, "a": 1.5}) == {"a": 1.5, "b": 2.0}
    ctx.shutdown()


def test_torchrun_environment_is_read():
    env = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}
    env |= {"MASTER_ADDR": "node0", "MASTER_PORT": "29500"}
    ctx = DistributedContext.from_env(env, device="cpu")
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.num_nodes, ctx.is_main) == (3, 8, 1, 2, False)


def test_bad_environment_raises():
    with pytest.raises(ConfigError, match="MASTER_ADDR"):
        DistributedContext.from_env({"RANK": "0", "WORLD_SIZE": "2"})
    with pytest.raises(ConfigError, match="RANK"):
        DistributedContext.from_env({"RANK": "x", "WORLD_SIZE": "1"})


def _take(sampler, count):
    return list(itertools.islice(iter(sampler), count))


def test_sampler_shards_are_disjoint_and_cover_an_epoch():
    shards = [_take(ShardedInfiniteSampler(12, rank=r, world_size=3, seed=1), 4) for r in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(12))  # a partition of the epoch
    padded = [_take(ShardedInfiniteSampler(10, rank=r, world_size=3, seed=1), 4) for r in range(3)]
    assert {i for shard in padded for i in shard} == set(range(10))  # 12 slots: 10 indices + 2 wrapped


def test_sampler_resumes_anywhere_and_reshuffles_each_epoch():
    full = _take(ShardedInfiniteSampler(7, rank=1, world_size=2, seed=4), 20)
    for start in (0, 3, 4, 9):
        assert (
            _take(ShardedInfiniteSampler(7, rank=1, world_size=2, seed=4, start=start), 5)
            == full[start : start + 5]
        )
    assert full[:4] != full[4:8]  # epochs are different permutations
    assert rescale_consumed(12, 2, 4) == 6


def test_move_to_device_keeps_structure():
    @dataclasses.dataclass(frozen=True)
    class Batch:
        audio: torch.Tensor
        names: list[str]

    moved = move_to_device({"b": Batch(torch.ones(2), ["a"]), "t": (torch.zeros(1), 3)}, torch.device("cpu"))
    assert isinstance(moved["b"], Batch) and moved["b"].names == ["a"] and moved["t"][1] == 3
