"""In-process engines one after another, and two alive at once, in one process.

vLLM's EngineCore.shutdown tore down the torch.distributed state every in-process engine
shares, so an engine collected after a newer one was built (``llm = LLM(...)`` twice)
broke the live one: "pipeline model parallel group is not initialized" (vLLM's own, with
or without arctic; arctic_vllm.patches, engine_core_teardown).
"""

from __future__ import annotations

import gc

import pytest

from arctic_vllm.bench.harness import ARCTIC_METHODS, TINY_MODEL, configure_cpu_env

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def _llm(spec):
    configure_cpu_env()
    from vllm import LLM

    return LLM(model=str(TINY_MODEL), speculative_config=spec, enforce_eager=True,
               max_model_len=256, dtype="float32")  # fmt: skip


def _tokens(llm) -> list[int]:
    from vllm import SamplingParams

    out = llm.generate([[1, 2, 3, 1, 2, 3, 1, 2]], SamplingParams(temperature=0.0, max_tokens=8),
                       use_tqdm=False)  # fmt: skip
    return list(out[0].outputs[0].token_ids)


def test_an_engine_rebuilt_over_a_live_one_keeps_working():
    spec = ARCTIC_METHODS["arctic-suffix"]
    llm = _llm(spec)
    first = _tokens(llm)
    llm = _llm(spec)  # the first engine is collected only now, after the second exists
    gc.collect()
    assert _tokens(llm) == first
    del llm
    gc.collect()
    third = _llm(None)  # and after both are gone, a fresh one starts
    assert _tokens(third) == first
    del third
    gc.collect()
