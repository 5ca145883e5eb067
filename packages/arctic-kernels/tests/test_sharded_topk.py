"""sharded_topk: packing, and the multi-process result against a stable full sort (gloo)."""

from __future__ import annotations

import socket
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from arctic_kernels import pack_value_index, sharded_topk, topk_reference, unpack_value_index
from arctic_kernels.exceptions import ShardingError
from arctic_kernels.sharded_topk import local_topk_keys


def test_packed_keys_order_by_value_then_lower_index() -> None:
    values = torch.tensor([-3.0, -0.0, 0.0, 1.5, 1.5, float("-inf"), float("inf"), -1e-30, 1e-30])
    index = torch.tensor([5, 6, 2, 9, 3, 0, 1, 7, 8])
    keys = pack_value_index(values, index)
    order = keys.argsort(descending=True)
    # inf; 1.5 at index 3 before index 9; 1e-30; the two zeros (equal), index 2 first; ...
    assert index[order].tolist() == [1, 3, 9, 8, 2, 6, 7, 5, 0]
    back_values, back_index = unpack_value_index(keys)
    assert torch.equal(back_index, index)
    assert torch.equal(back_values, values + 0.0)  # -0.0 comes back as 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_pack_round_trips_every_value(dtype: torch.dtype) -> None:
    values = (torch.randn(1000) * 1e4).to(dtype)
    index = torch.randint(0, 2**32 - 1, (1000,))
    got_values, got_index = unpack_value_index(pack_value_index(values, index))
    assert torch.equal(got_values, values.float()) and torch.equal(got_index, index)


def test_local_shard_smaller_than_k_is_padded_with_keys_that_never_win() -> None:
    keys = local_topk_keys(torch.tensor([[1.0, -5.0]]), k=4, offset=10)
    assert keys.shape == (1, 4)
    assert (
        keys[0, 2:] < pack_value_index(torch.tensor(float("-inf")), torch.tensor(2**32 - 1))
    ).all()


def test_reference_breaks_ties_by_lowest_index_and_matches_topk_values() -> None:
    logits = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0]])
    values, index = topk_reference(logits, 3)
    assert index.tolist() == [[1, 2, 4]] and values.tolist() == [[3.0, 3.0, 3.0]]
    x = torch.randn(4, 300)
    assert torch.equal(topk_reference(x, 8)[0], x.topk(8).values)
    assert torch.equal(topk_reference(x, 8)[1], x.topk(8).indices)  # no ties: same indices


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _shard_sizes(vocab: int, world: int) -> list[int]:
    # Unequal on purpose: the first vocab % world ranks take one more.
    return [vocab // world + (r < vocab % world) for r in range(world)]


# (vocab, batch, k, dtype, tie-heavy): vocab not divisible by 2 or 4; shards smaller than k.
CASES = [
    (1001, 3, 1, torch.float32, False),
    (1001, 3, 8, torch.float32, False),
    (1001, 2, 4, torch.bfloat16, False),
    (517, 4, 8, torch.float32, True),
    (517, 2, 16, torch.float16, True),
    (7, 2, 5, torch.float32, True),
    (6, 1, 6, torch.float32, False),
]


def _worker(rank: int, world: int, port: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        for n, (vocab, batch, k, dtype, ties) in enumerate(CASES):
            gen = torch.Generator().manual_seed(n)  # every rank builds the same full logits
            if ties:  # few distinct values: most of the top-k are ties across shards
                full = torch.randint(-3, 3, (batch, vocab), generator=gen).to(dtype)
            else:
                full = torch.randn(batch, vocab, generator=gen).to(dtype)
            sizes = _shard_sizes(vocab, world)
            start = sum(sizes[:rank])
            local = full[:, start : start + sizes[rank]]
            # With sizes passed: one all-gather; without: sizes are gathered first.
            for shard_sizes in (sizes, None):
                values, index = sharded_topk(local, k, shard_sizes=shard_sizes)
                ref_values, ref_index = topk_reference(full, k)
                assert torch.equal(values, ref_values), (rank, n, values, ref_values)
                assert torch.equal(index, ref_index), (rank, n, index, ref_index)
                assert torch.equal(full.float().gather(1, index), values)
        with pytest.raises(ShardingError, match="shard_sizes"):
            sharded_topk(torch.zeros(1, 3), 1, shard_sizes=[4] * world)
        with pytest.raises(ShardingError, match="k must be"):
            sharded_topk(torch.zeros(1, 3), 3 * world + 1, shard_sizes=[3] * world)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world", [2, 4])
def test_sharded_topk_equals_full_topk_on_gloo(world: int) -> None:
    # fork, not spawn: the children need not re-import torch (spawn: 15-35 s here, fork: <1 s).
    # Python >= 3.12 warns that fork in a threaded process may deadlock; the children only run
    # small single-threaded torch ops and gloo, which is safe here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
        mp.start_processes(
            _worker, args=(world, _free_port()), nprocs=world, join=True, start_method="fork"
        )
