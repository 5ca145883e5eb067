"""Bytes communicated per decoding step by tensor-parallel top-k: naive vs `sharded_topk`."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

PACKED_BYTES = 8  # one int64 per candidate: float32 value bits + 32-bit global index
REAL_VOCABS = {"Llama-2 (32000)": 32000, "Llama-3 (128256)": 128256, "Qwen2 (151936)": 151936}


@dataclass(frozen=True)
class TopkBytes:
    """Bytes every rank receives from an all-gather (its own part included)."""

    vocab: int
    k: int
    world_size: int
    batch: int
    dtype: str
    naive_bytes: int  # all-gather of the logits: batch * vocab values
    sharded_bytes: int  # all-gather of world * k packed candidates per row
    ratio: float  # naive / sharded


def topk_bytes_per_step(
    vocab: int, k: int, world_size: int, batch: int = 1, dtype: torch.dtype = torch.bfloat16
) -> TopkBytes:
    """Gathered bytes per rank for one step. Unequal shards do not change the totals."""
    if min(vocab, k, world_size, batch) < 1 or k > vocab:
        raise ValueError(
            f"need 1 <= k <= vocab and positive sizes, got {vocab=} {k=} {world_size=} {batch=}"
        )
    itemsize = torch.empty((), dtype=dtype).element_size()
    naive = batch * vocab * itemsize
    ours = batch * world_size * k * PACKED_BYTES
    return TopkBytes(
        vocab, k, world_size, batch, str(dtype).removeprefix("torch."), naive, ours, naive / ours
    )


def topk_bytes_table(
    world_sizes: tuple[int, ...] = (2, 4, 8),
    ks: tuple[int, ...] = (1, 4, 8),
    batch: int = 1,
    dtype: torch.dtype = torch.bfloat16,
) -> list[dict[str, object]]:
    """Rows for the real vocab sizes, as plain dicts (JSON-ready)."""
    return [
        asdict(topk_bytes_per_step(vocab, k, world, batch, dtype))
        for vocab in REAL_VOCABS.values()
        for world in world_sizes
        for k in ks
    ]
