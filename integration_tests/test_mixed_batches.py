"""Greedy and sampled requests in one batch, through real vLLM with our methods.

The batch below once crashed vLLM's CPU rejection sampler under any speculative method
(`index -930510574 is out of bounds for dimension 1 with size 8192`: a top-k read from
uninitialised memory; see arctic_vllm.patches, cpu_expand) and changed the greedy rows
beside sampled ones. Now every request completes, greedy rows equal no speculation, and a
seeded request gives the same tokens when sent again to the same engine.
"""

from __future__ import annotations

from typing import Any

import pytest

from arctic_vllm.bench import (
    ARCTIC_METHODS,
    TINY_MODEL,
    Engine,
    first_divergence,
    read_spec_counters,
)

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

SAMPLED_MAX_TOKENS = 24
# (prompt index, SamplingParams keywords): the reported crash batch, then variants.
SAMPLED: list[tuple[int, dict[str, Any]]] = [
    (0, {"temperature": 1.0, "n": 2, "seed": 42}),
    (1, {"temperature": 1.0, "n": 4, "top_k": 20, "seed": 7}),
    (2, {"temperature": 1.0, "top_p": 0.9, "seed": 3}),
    (3, {"temperature": 0.7, "n": 3, "top_k": 5, "top_p": 0.5, "seed": 11}),
    (4, {"temperature": 1.3, "top_k": 1, "seed": 5}),  # top_k=1: greedy by another road
    (5, {"temperature": 0.5, "n": 2, "seed": 13, "frequency_penalty": 0.5}),
]
METHODS = {
    "arctic-suffix": ARCTIC_METHODS["arctic-suffix"],
    "arctic-hybrid": dict(ARCTIC_METHODS["arctic-hybrid"], hybrid_drafter_cost=0.0),
}


def _batch(requests_: list[Any]) -> tuple[list[Any], list[Any]]:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    prompts, params = [], []
    for r in requests_:  # every greedy request, interleaved with the sampled ones
        prompts.append(TokensPrompt(prompt_token_ids=list(r.prompt_ids)))
        params.append(SamplingParams(temperature=0.0, max_tokens=r.max_tokens))
    for index, kwargs in SAMPLED:
        prompts.insert(
            2 * index + 1, TokensPrompt(prompt_token_ids=list(requests_[index].prompt_ids))
        )
        params.insert(2 * index + 1, SamplingParams(max_tokens=SAMPLED_MAX_TOKENS, **kwargs))
    return prompts, params


def _run(engine: Engine, requests_: list[Any]) -> list[list[tuple[int, ...]]]:
    prompts, params = _batch(requests_)
    outs = engine.llm.generate(prompts, params, use_tqdm=False)
    return [[tuple(c.token_ids) for c in o.outputs] for o in outs]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_mixed_batch_completes_greedy_rows_unchanged_seeded_rows_reproducible(
    method, requests_, baseline
):
    with Engine(TINY_MODEL, METHODS[method], max_num_seqs=32) as engine:
        before = read_spec_counters(engine.llm)
        first = _run(engine, requests_)
        counters = read_spec_counters(engine.llm) - before
        again = _run(engine, requests_)  # the global suffix cache now holds the first run
    assert counters.num_accepted_tokens > 0, counters
    _, params = _batch(requests_)
    greedy = iter(baseline[1].outputs)
    for i, (choices, p) in enumerate(zip(first, params, strict=True)):
        assert len(choices) == p.n, (i, p)
        if p.temperature == 0.0:
            want = next(greedy)
            assert list(choices[0]) == want, (
                f"{method}: greedy row {i} diverges at token "
                f"{first_divergence(list(choices[0]), want)}"
            )
        else:
            assert all(0 < len(c) <= SAMPLED_MAX_TOKENS for c in choices), (i, choices)
            assert all(0 <= t < 8192 for c in choices for t in c)
    assert again == first, f"{method}: a seeded or greedy request changed when sent again"
