"""Seeded requests whose prompt is chunked on the CPU: vLLM's generator rewind, by state."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from arctic_vllm.patches.cpu_seeded_prefill import bookkeeping_by_state, save_discarded_states


def test_vllms_rewind_still_needs_offsets():
    """vLLM's own rewind asks a CPU generator for its offset, which raises; when this fails,
    upstream rewinds CPU generators another way and the patch can go."""
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    from arctic_vllm import patches

    patches.apply_all()
    original = GPUModelRunner._bookkeeping_sync.__wrapped__
    assert {"set_offset", "get_offset"} <= set(original.__code__.co_names)
    with pytest.raises(RuntimeError, match="CPU Generator does not use offset"):
        torch.Generator().manual_seed(0).get_offset()


def _vllms_rewind(runner):
    """What vLLM's _bookkeeping_sync does to the generators of discarded rows."""
    for i in np.nonzero(runner.discard_request_mask.np[: runner.input_batch.num_reqs])[0]:
        gen = runner.input_batch.generators.get(int(i))
        if gen is not None:
            gen.set_offset(gen.get_offset() - 4)
    return "bookkept"


def test_a_discarded_draw_leaves_no_trace_in_the_seeded_stream():
    kept, discarded = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    runner = SimpleNamespace(
        input_batch=SimpleNamespace(num_reqs=3, generators={0: kept, 2: discarded}),
        discard_request_mask=SimpleNamespace(np=np.array([False, True, True])),
    )
    with pytest.raises(RuntimeError, match="does not use offset"):
        _vllms_rewind(runner)  # unpatched: the engine dies here
    saved = save_discarded_states(runner)
    assert set(saved) == {2}  # row 1 has no generator (unseeded)
    for gen in (kept, discarded):
        torch.rand(4, generator=gen)  # the step's sampling draws from every row
    assert bookkeeping_by_state(runner, _vllms_rewind, saved) == "bookkept"
    assert runner.input_batch.generators == {0: kept, 2: discarded}
    fresh = torch.Generator().manual_seed(2)
    assert torch.equal(torch.rand(4, generator=discarded), torch.rand(4, generator=fresh))
    moved = torch.Generator().manual_seed(1)
    torch.rand(4, generator=moved)
    assert torch.equal(torch.rand(4, generator=kept), torch.rand(4, generator=moved))


def test_without_discarded_cpu_rows_vllm_runs_untouched():
    calls = []
    runner = SimpleNamespace(
        input_batch=SimpleNamespace(num_reqs=1, generators={0: torch.Generator()}),
        discard_request_mask=SimpleNamespace(np=np.array([False])),
    )
    bookkeeping_by_state(runner, lambda r, x: calls.append(x), {}, "arg")
    assert calls == ["arg"]
