"""Patch: one in-process engine's teardown destroying another's distributed state (see
LEDGER).

In-process engines (VLLM_ENABLE_V1_MULTIPROCESSING=0, as tests and notebooks use) share the
process's torch.distributed world and vLLM's model-parallel groups: a second engine built
while the first is alive reuses them. `EngineCore.shutdown` nevertheless tears them down
(`cleanup_dist_env_and_memory`), so when the first engine is collected after the second
exists (``llm = LLM(...)`` run twice: the old object dies only once the new one is built),
the live engine fails on its next step with "pipeline model parallel group is not
initialized". Measured with the plugin disabled and no speculation: vLLM's own behaviour.
The same happened in this project's test suite when an older engine was finalized while
the next one was starting (vLLM collects garbage during start-up): the module order
test_sampling_features -> test_sampling_lossless failed so without this patch.

Here live EngineCores are counted per process; a shutdown tears the shared state down only
when it is the first shutdown of the last live one. With one engine per process (vLLM's default multiprocess engine
core) nothing changes.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from . import is_patched, patch_attribute

logger = logging.getLogger("vllm.arctic")

_lock = threading.Lock()
_live: set[int] = set()  # id() of EngineCores constructed and not yet shut down
_closing = threading.local()


def apply() -> bool:
    from vllm.v1.engine import core

    if is_patched(core.EngineCore, "shutdown"):
        return False

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        # Live from the start: vLLM collects garbage while an engine starts (gc.collect /
        # freeze), and an older engine's finalizer shutting down then must not tear down
        # the state this one has just initialised.
        with _lock:
            _live.add(id(self))
        try:
            original_init(self, *args, **kwargs)
        except BaseException:
            with _lock:
                _live.discard(id(self))
            raise

    def shutdown(self: Any) -> Any:
        with _lock:
            was_live = id(self) in _live
            _live.discard(id(self))
            others = len(_live)
        # Only the last live engine's first shutdown tears the shared state down: a repeated
        # shutdown (an explicit one, then the object's finalizer, possibly after a newer
        # engine was built) must not destroy what the newer engine uses.
        _closing.keep = others if was_live else -1
        try:
            return original_shutdown(self)
        finally:
            _closing.keep = 0

    def cleanup_dist_env_and_memory(*args: Any, **kwargs: Any) -> Any:
        keep = getattr(_closing, "keep", 0)
        if keep > 0:
            logger.info(
                "arctic: an in-process engine shut down while %d other(s) live in this "
                "process: their shared distributed state is left in place",
                keep,
            )
            return None
        if keep < 0:
            return None  # this engine was shut down before
        return original_cleanup(*args, **kwargs)

    original_init = patch_attribute(core.EngineCore, "__init__", __init__)
    original_shutdown = patch_attribute(core.EngineCore, "shutdown", shutdown)
    original_cleanup = patch_attribute(
        core, "cleanup_dist_env_and_memory", cleanup_dist_env_and_memory
    )
    return True
