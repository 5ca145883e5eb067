"""Lossless speculation through real vLLM: vLLM's built-in methods against no speculation."""

from __future__ import annotations

import pytest

from arctic_vllm.bench import (
    BATCH_SIZES,
    BUILTIN_METHODS,
    TINY_MODEL,
    Engine,
    assert_same_outputs,
    run_all_batch_sizes,
)

pytestmark = pytest.mark.vllm


def test_baseline_generates_and_counts_no_drafts(baseline, requests_):
    for batch_size, result in baseline.items():
        assert len(result.outputs) == len(requests_)
        # Greedy may stop at EOS early, but every request produces something.
        assert all(len(out) > 0 for out in result.outputs), batch_size
        assert all(
            len(out) <= req.max_tokens for out, req in zip(result.outputs, requests_, strict=True)
        )
        assert result.counters.num_drafts == 0


@pytest.mark.parametrize("method", ["ngram", "suffix"])
def test_builtin_method_is_lossless_and_accepts_drafts(method, baseline, requests_):
    with Engine(TINY_MODEL, BUILTIN_METHODS[method]) as engine:
        results = run_all_batch_sizes(engine, requests_)
    assert_same_outputs(method, results, baseline, [r.name for r in requests_])
    for batch_size in BATCH_SIZES:
        counters = results[batch_size].counters
        assert counters.num_drafts > 0
        assert 0 < counters.num_accepted_tokens <= counters.num_draft_tokens
        # Copy-heavy prompts: drafts must pay off well beyond one token per step.
        assert counters.mean_acceptance_length > 1.5, counters
