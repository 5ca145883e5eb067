"""vLLM's own tensor-parallel group, over which arctic-runtime shards the drafter's heads."""

from __future__ import annotations

from typing import Any


def tp_group() -> Any | None:
    """vLLM's tensor-parallel process group when TP > 1 in this process, else None."""
    try:
        from vllm.distributed import parallel_state
    except ImportError:
        return None
    if not parallel_state.model_parallel_is_initialized():  # type: ignore[no-untyped-call]
        return None
    group = parallel_state.get_tp_group()
    if group.world_size <= 1:
        return None
    return group.device_group
