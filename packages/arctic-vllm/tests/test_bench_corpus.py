"""arctic_vllm.bench's offline corpus and edits: the splits the tiny target's recipe trains on
and the workloads are drawn from, and the agent-style edits between two turns."""

from __future__ import annotations

import random

import pytest

from arctic_vllm.bench import apply_edits, humaneval_tasks, stdlib_files, stdlib_root


def test_humaneval_heldout_split_is_disjoint_from_train_and_together_all_of_it() -> None:
    train = {t.task_id for t in humaneval_tasks("train")}
    heldout = {t.task_id for t in humaneval_tasks("heldout")}
    every = [t.task_id for t in humaneval_tasks("all")]
    assert not train & heldout
    assert train | heldout == set(every)
    assert len(every) == 164
    # One task in four, by task number: a pure function of the id, the same on every machine.
    assert heldout == {f"HumanEval/{i}" for i in range(0, 164, 4)}


def test_stdlib_heldout_split_is_disjoint_from_train() -> None:
    train = {f.rel_path for f in stdlib_files("train")}
    heldout = {f.rel_path for f in stdlib_files("heldout")}
    assert not train & heldout
    assert len(heldout) > 20
    # About one file in 20 is held out.
    assert 0.02 < len(heldout) / (len(train) + len(heldout)) < 0.1
    assert all("test" not in path.split("/") for path in train | heldout)


def test_the_prose_workloads_source_is_in_neither_split() -> None:
    names = {f.rel_path for f in stdlib_files("train")} | {
        f.rel_path for f in stdlib_files("heldout")
    }
    assert (stdlib_root() / "pydoc_data" / "topics.py").is_file()
    assert "pydoc_data/topics.py" not in names


@pytest.mark.parametrize("split", ["", "test", "validation"])
def test_an_unknown_split_is_refused(split: str) -> None:
    with pytest.raises(ValueError, match="split must be"):
        stdlib_files(split)
    with pytest.raises(ValueError, match="split must be"):
        humaneval_tasks(split)


SOURCE = "\n".join(
    [
        "def total_count(items, limit=10):",
        "    result = 0",
        "    for item in items:",
        "        result += item * 3",
        "    if result > limit:",
        "        return limit",
        "    return result",
    ]
)


def test_edits_are_deterministic_per_seed() -> None:
    first = apply_edits(SOURCE, random.Random(7), 3)
    assert apply_edits(SOURCE, random.Random(7), 3) == first
    others = {apply_edits(SOURCE, random.Random(seed), 3) for seed in range(8)}
    assert len(others) > 1


def test_edits_change_the_text_and_zero_edits_keep_it() -> None:
    assert apply_edits(SOURCE, random.Random(0), 0) == SOURCE
    changed = [apply_edits(SOURCE, random.Random(seed), 2) != SOURCE for seed in range(20)]
    assert sum(changed) >= 18  # an edit can undo another only by chance


def test_a_negative_edit_count_is_refused() -> None:
    with pytest.raises(ValueError, match="n_edits must be >= 0"):
        apply_edits(SOURCE, random.Random(0), -1)
