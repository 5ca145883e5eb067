"""arctic_vllm.bench's workloads: token-id requests built from held-out data, deterministic
per seed, with any tokenizer."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from arctic_vllm.bench import (
    EDIT,
    FILE,
    WORKLOADS,
    agentic_edit_requests,
    build_workload,
    humaneval_requests,
    humaneval_tasks,
    prose_requests,
)


class CharTokenizer:
    """A tokenizer without the tiny target's special tokens: one id per character."""

    unk_token_id = None

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        assert not add_special_tokens
        return {"input_ids": [ord(c) for c in text]}

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int | None]:
        return [None for _ in tokens]

    def decode(self, ids: list[int]) -> str:
        return "".join(map(chr, ids))


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_agentic_edit_requests_are_deterministic_per_seed(tiny_tokenizer: Any) -> None:
    first = agentic_edit_requests(tiny_tokenizer, sessions=2, turns=2, seed=3)
    assert agentic_edit_requests(tiny_tokenizer, sessions=2, turns=2, seed=3) == first
    other = agentic_edit_requests(tiny_tokenizer, sessions=2, turns=2, seed=4)
    assert [r.prompt_ids for r in other] != [r.prompt_ids for r in first]


def test_agentic_edit_requests_re_emit_an_edited_file_each_turn(tiny_tokenizer: Any) -> None:
    requests = agentic_edit_requests(tiny_tokenizer, sessions=2, turns=3, max_chunk_tokens=120)
    file_id, edit_id = tiny_tokenizer.convert_tokens_to_ids([FILE, EDIT])
    assert [r.name for r in requests] == [f"edit-s{s}-t{t}" for s in range(2) for t in range(3)]
    for r in requests:
        # <|file|>{version}<|edit|>: the target continues by re-emitting the file.
        assert r.prompt_ids[0] == file_id and r.prompt_ids[-1] == edit_id
        assert r.max_tokens == len(r.prompt_ids) - 2 + 8
        if r.name.endswith("-t0"):  # the file as cut; later turns grow or shrink by edits
            assert len(r.prompt_ids) - 2 <= 120
    for s in range(2):
        turns = [r.prompt_ids for r in requests if r.name.startswith(f"edit-s{s}-")]
        assert all(a != b for a, b in pairwise(turns))


def test_a_tokenizer_without_the_markers_gets_them_as_text() -> None:
    tokenizer = CharTokenizer()
    requests = agentic_edit_requests(tokenizer, sessions=1, turns=2, max_chunk_tokens=400)
    assert len(requests) == 2
    for r in requests:
        text = tokenizer.decode(r.prompt_ids)
        assert text.startswith(FILE) and text.endswith(EDIT)
        assert r.max_tokens == len(r.prompt_ids) - len(FILE) - len(EDIT) + 8


def test_humaneval_requests_are_held_out_tasks() -> None:
    heldout = [t.task_id for t in humaneval_tasks("heldout")]
    requests = humaneval_requests(CharTokenizer(), n=5, max_tokens=32)
    assert [r.name for r in requests] == heldout[:5]
    assert all(r.max_tokens == 32 for r in requests)
    # No trailing newline token (out of distribution for the tiny target: see humaneval_prompt).
    assert all(r.prompt_ids[-1] != ord("\n") for r in requests)


def test_prose_requests_are_deterministic_per_seed() -> None:
    tokenizer = CharTokenizer()
    first = prose_requests(tokenizer, n=3, prompt_tokens=64, seed=1)
    assert prose_requests(tokenizer, n=3, prompt_tokens=64, seed=1) == first
    assert len({r.name for r in first}) == 3
    assert all(r.name.startswith("prose-") and 0 < len(r.prompt_ids) <= 64 for r in first)


def test_build_workload_names_the_choices_of_an_unknown_one() -> None:
    assert set(WORKLOADS) == {"agentic-edit", "humaneval", "prose"}
    with pytest.raises(ValueError, match=r"unknown workload 'chat'.*agentic-edit"):
        build_workload("chat", CharTokenizer())
    assert build_workload("humaneval", CharTokenizer(), n=2) == humaneval_requests(
        CharTokenizer(), n=2
    )
