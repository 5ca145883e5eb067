"""The drafter's vocab-parallel heads over vLLM's own tensor-parallel group."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("vllm.arctic")


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


def vocab_parallel_runner(speculator: Any, *, fp8: bool = False, group: Any | None = None) -> Any:
    """A draft runner splitting the heads over the TP group, or None at TP = 1."""
    group = group if group is not None else tp_group()
    if group is None:
        return None
    from arctic_runtime.tp_draft import VocabParallelDraftRunner

    runner = VocabParallelDraftRunner(speculator, group, fp8=fp8)
    logger.info(
        "arctic: drafter heads vocab-parallel over vLLM's TP group (shards %s)",
        runner.shard_sizes,
    )
    return runner
