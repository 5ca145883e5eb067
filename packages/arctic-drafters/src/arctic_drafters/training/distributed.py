"""Processes, devices and precision for training: torch.distributed under ``torchrun``.

One process per device. ``torchrun --nproc-per-node N arctic-train train ...`` sets
``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``; without them training runs in one process. The
drafter is replicated by DDP (gradients all-reduced: NCCL on CUDA, gloo on the CPU). The
frozen target is replicated too, or, when it does not fit one device, sharded with FSDP2
(``torch.distributed.fsdp.fully_shard`` per decoder layer: each layer's weights are gathered
for its forward and freed after it).

Defaults: CUDA (``cuda:LOCAL_RANK``) when present, else the CPU; bf16 autocast on CUDA
(the drafter's weights and optimizer stay float32; the target is loaded in bf16), float32
on the CPU, where bf16 is only faster on CPUs with AMX.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "bf16", "fp32")


@dataclass(frozen=True)
class Runtime:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    autocast_dtype: torch.dtype | None  # None: full float32

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def target_dtype(self) -> torch.dtype:
        """The target's weights: bf16 under bf16 autocast (half the memory), else float32."""
        return self.autocast_dtype or torch.float32

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.autocast_dtype is None:
            yield
            return
        with torch.autocast(self.device.type, dtype=self.autocast_dtype):
            yield

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def describe(self) -> str:
        precision = "fp32" if self.autocast_dtype is None else "bf16 autocast"
        return f"{self.world_size} process(es), {self.device.type}, {precision}"


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def init_runtime(device: str = "auto", precision: str = "auto") -> Runtime:
    """This process's place in the run (torchrun's environment), its device and precision;
    starts the process group when there are several processes."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    world = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but torch sees no CUDA device")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        where = torch.device("cuda", local_rank)
    else:
        where = torch.device("cpu")
    if precision == "auto":
        bf16 = use_cuda and torch.cuda.is_bf16_supported()
    else:
        bf16 = precision == "bf16"
    if world > 1 and not dist.is_initialized():
        if use_cuda:
            dist.init_process_group("nccl", device_id=where)
        else:
            dist.init_process_group("gloo")
    return Runtime(rank, world, local_rank, where, torch.bfloat16 if bf16 else None)


def shutdown_runtime(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap_drafter(drafter: torch.nn.Module, runtime: Runtime) -> torch.nn.Module:
    """The drafter on its device, in DDP when there are several processes (every rank then
    starts from rank 0's weights: DDP broadcasts them)."""
    drafter.to(runtime.device)
    if not runtime.distributed:
        return drafter
    from torch.nn.parallel import DistributedDataParallel

    ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    return DistributedDataParallel(drafter, device_ids=ids)


def _decoder_layers(model: Any) -> torch.nn.ModuleList:
    layers = getattr(model.base_model, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ValueError(
            f"--shard-target shards a model by its base model's `layers`; "
            f"{type(model).__name__} has none (replicate it: drop --shard-target)"
        )
    return layers


def place_target(model: Any, runtime: Runtime, shard: bool = False) -> Any:
    """The frozen target on this process's device: replicated, or (``shard``, several
    processes) sharded by FSDP2 over all of them, one unit per decoder layer plus the base
    model (embeddings, final norm). The LM head stays whole: only the KL term reads it."""
    model.eval().requires_grad_(False)
    if not (shard and runtime.distributed):
        return model.to(runtime.device)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(runtime.device.type, (runtime.world_size,))
    for layer in _decoder_layers(model):
        fully_shard(layer, mesh=mesh)
    fully_shard(model.base_model, mesh=mesh)
    head = model.get_output_embeddings()
    if head is not None:
        head.to(runtime.device)
    return model
