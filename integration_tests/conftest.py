"""Fixtures for end-to-end tests through real vLLM (CPU backend) on the bundled tiny model."""

from __future__ import annotations

import pytest

from arctic_vllm.bench import (
    TINY_MODEL,
    Engine,
    Request,
    RunResult,
    agentic_edit_requests,
    humaneval_requests,
    run_all_batch_sizes,
)

BATCH_SIZES = (1, 4)


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(TINY_MODEL)


@pytest.fixture(scope="session")
def requests_(tokenizer) -> list[Request]:
    """Copy-heavy agentic edits and HumanEval prompts: 8 requests, two batches of 4."""
    edits = agentic_edit_requests(tokenizer, sessions=2, turns=2, max_chunk_tokens=120)
    return edits + humaneval_requests(tokenizer, n=4, max_tokens=64)


@pytest.fixture(scope="session")
def baseline(requests_) -> dict[int, RunResult]:
    """Greedy outputs without speculation, at batch 1 and batch 4."""
    with Engine(TINY_MODEL, None) as engine:
        return run_all_batch_sizes(engine, requests_)
