"""Patch: rewinding a seeded request's generator after a discarded prefill chunk, on the
CPU (see LEDGER).

When a prompt is split across steps (chunked prefill), vLLM samples a token for the partial
prompt, throws it away, and rewinds the request's generator so the seeded stream is as if
that draw never happened: `gen.set_offset(gen.get_offset() - 4)` in
`GPUModelRunner._bookkeeping_sync`. Offsets exist only for CUDA's Philox generators; a CPU
generator (mt19937) raises "CPU Generator does not use offset", which kills the engine on
the CPU backend whenever a seeded request's prompt is chunked, with or without speculation
(measured: 2,000 seeded requests of 64 tokens with max_num_seqs=256).

Here the rewind is done by state instead: before sampling, `sample_tokens` saves the state
of each CPU generator whose row will be discarded; `_bookkeeping_sync` runs with those
generators out of its sight and then restores the saved states. The stream is exactly the
one vLLM's rewind produces on CUDA: the discarded draw leaves no trace.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import is_patched, patch_attribute

_SAVED = "_arctic_saved_generator_states"


def _discarded_cpu_generators(runner: Any) -> dict[int, Any]:
    batch = runner.input_batch
    rows = np.nonzero(runner.discard_request_mask.np[: batch.num_reqs])[0]
    found = {}
    for row in rows:
        gen = batch.generators.get(int(row))
        if gen is not None and gen.device.type == "cpu":
            found[int(row)] = gen
    return found


def save_discarded_states(runner: Any) -> dict[int, Any]:
    """Before sampling: the state of each CPU generator whose row this step discards."""
    return {row: gen.get_state() for row, gen in _discarded_cpu_generators(runner).items()}


def bookkeeping_by_state(
    runner: Any, original: Any, saved: dict[int, Any] | None, *args: Any, **kwargs: Any
) -> Any:
    """vLLM's `_bookkeeping_sync` with the discarded CPU generators out of its sight (its
    offset rewind skips rows without one), then rewound to their saved states."""
    hidden = _discarded_cpu_generators(runner)
    if not hidden:
        return original(runner, *args, **kwargs)
    generators = runner.input_batch.generators
    for row in hidden:
        del generators[row]
    try:
        return original(runner, *args, **kwargs)
    finally:
        for row, gen in hidden.items():
            if saved is not None and row in saved:
                gen.set_state(saved[row])
            generators[row] = gen


def apply() -> bool:
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    if is_patched(GPUModelRunner, "_bookkeeping_sync"):
        return False

    def sample_tokens(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(self, "execute_model_state", None) is not None:
            setattr(self, _SAVED, save_discarded_states(self))
        try:
            return original_sample_tokens(self, *args, **kwargs)
        finally:
            setattr(self, _SAVED, None)

    def _bookkeeping_sync(self: Any, *args: Any, **kwargs: Any) -> Any:
        saved = getattr(self, _SAVED, None)
        return bookkeeping_by_state(self, original_bookkeeping, saved, *args, **kwargs)

    original_sample_tokens = patch_attribute(GPUModelRunner, "sample_tokens", sample_tokens)
    original_bookkeeping = patch_attribute(GPUModelRunner, "_bookkeeping_sync", _bookkeeping_sync)
    return True
