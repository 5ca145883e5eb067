"""Bytes per step: naive logits all-gather vs the packed top-k candidates."""

from __future__ import annotations

import pytest
import torch

from arctic_kernels import topk_bytes_per_step, topk_bytes_table


def test_counts_for_llama3_vocab() -> None:
    row = topk_bytes_per_step(128256, 4, 8, batch=2, dtype=torch.bfloat16)
    assert row.naive_bytes == 2 * 128256 * 2  # every rank ends with all bf16 logits
    assert row.sharded_bytes == 2 * 8 * 4 * 8  # world * k int64 candidates per row
    assert row.ratio == pytest.approx(row.naive_bytes / row.sharded_bytes)
    assert topk_bytes_per_step(32000, 1, 2, dtype=torch.float32).naive_bytes == 128000


def test_table_covers_real_vocabs_and_k() -> None:
    rows = topk_bytes_table()
    assert {r["vocab"] for r in rows} == {32000, 128256, 151936}
    assert {r["k"] for r in rows} == {1, 4, 8}
    assert all(r["sharded_bytes"] < r["naive_bytes"] for r in rows)


@pytest.mark.parametrize("args", [(10, 11, 2), (10, 0, 2), (10, 1, 0)])
def test_impossible_sizes_are_refused(args: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match="k <= vocab"):
        topk_bytes_per_step(*args)
