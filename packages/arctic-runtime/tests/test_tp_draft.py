"""Vocab-parallel drafter heads over a real process group (gloo, 2 and 3 ranks) give the
same drafts as the unsharded speculator, with bf16 or already-FP8 heads; the same code takes
vLLM's TP group (NCCL on GPUs)."""

from __future__ import annotations

import copy
import socket
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from arctic_drafters import LSTMSpeculatorConfig, MLPSpeculatorConfig, build_speculator
from arctic_kernels import quantize_drafter
from arctic_runtime.tp_draft import VocabParallelDraftRunner, shard_sizes

CONFIGS = [
    MLPSpeculatorConfig(61, 20, 12),  # tied heads; vocab 61 splits unevenly
    MLPSpeculatorConfig(64, 20, 12, n_predict=4, tie_weights=False),
    LSTMSpeculatorConfig(61, 20, 12),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        for n, config in enumerate(CONFIGS):
            torch.manual_seed(n)  # every rank builds the same drafter and inputs
            spec = build_speculator(config).eval()
            hidden = torch.randn(5, config.hidden_size)
            last = torch.randint(0, config.vocab_size, (5,))
            want = spec.propose(hidden, last, config.n_predict)
            runner = VocabParallelDraftRunner(spec)
            assert sum(runner.shard_sizes) == config.vocab_size
            got = runner(hidden, last, config.n_predict)
            assert torch.equal(got, want), (rank, n, got, want)
            # Each rank holds only its shard of every head.
            assert runner.heads[0].weight.shape[0] == runner.shard_sizes[rank]
            # Heads already FP8 (loaded GPTQ layers) are sharded as they are, not re-rounded.
            fp8 = copy.deepcopy(spec)
            quantize_drafter(fp8, activation_scheme="none")
            want = fp8.propose(hidden, last, config.n_predict)
            runner = VocabParallelDraftRunner(fp8)
            assert torch.equal(runner(hidden, last, config.n_predict), want), (rank, n)
            assert runner.heads[0].weight_fp8.shape[0] == runner.shard_sizes[rank]
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world", [2, 3])
def test_vocab_parallel_drafts_equal_unsharded(world: int) -> None:
    # fork: the children need not re-import torch (see arctic-kernels' sharded_topk test).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
        mp.start_processes(
            _worker, args=(world, _free_port()), nprocs=world, join=True, start_method="fork"
        )


def test_shard_sizes():
    assert shard_sizes(10, 3) == [4, 3, 3]
    assert shard_sizes(8, 4) == [2, 2, 2, 2]
    with pytest.raises(ValueError, match="cannot split vocab 2 over 3 ranks"):
        shard_sizes(2, 3)
