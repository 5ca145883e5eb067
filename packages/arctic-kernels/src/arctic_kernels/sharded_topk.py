"""Top-k over vocab-sharded logits with one all-gather (tensor-parallel LM heads).

Each rank holds the logits of a contiguous vocab shard (shards may differ in size). Each
rank takes its local top-k, packs (value, global index) into ONE int64 per candidate, the
group all-gathers the (batch, k) candidates once into a preallocated tensor, and every rank
picks the global top-k from world * k candidates. Naively gathering the logits moves
batch * vocab values instead (see tp_bytes.py).

The packed key is `orderable(value) << 32 | (2**32 - 1 - global_index)`:
`orderable` maps float32 bits to an int32 that sorts like the float, so comparing keys
compares values first and, on equal values, prefers the LOWER global index. Keys are
unique, so the result is exact and deterministic: the same as a stable descending sort of
the full logits (`topk_reference`). torch.topk itself does not promise an order for ties.
Logits are compared as float32 (bfloat16 / float16 convert exactly); -0.0 equals 0.0.
NaN logits are not supported.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist

from arctic_kernels.exceptions import ShardingError

_LOW_MASK = (1 << 32) - 1
_PACKABLE = (torch.float32, torch.bfloat16, torch.float16)


def pack_value_index(values: torch.Tensor, global_index: torch.Tensor) -> torch.Tensor:
    """(value, global index) -> one int64 that orders by value, then by lower index."""
    v = values.float() + 0.0  # -0.0 + 0.0 = +0.0: one key for both zeros
    bits = v.view(torch.int32)
    # Negative floats order backwards as integers: flip their magnitude bits.
    ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    return (ordered.to(torch.int64) << 32) | (_LOW_MASK - global_index.to(torch.int64))


def unpack_value_index(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of pack_value_index: (float32 values, int64 global indices)."""
    ordered = (keys >> 32).to(torch.int32)
    bits = ordered ^ ((ordered >> 31) & 0x7FFFFFFF)
    return bits.view(torch.float32), _LOW_MASK - (keys & _LOW_MASK)


def local_topk_keys(local_logits: torch.Tensor, k: int, offset: int) -> torch.Tensor:
    """The k best packed keys of this shard, (B, k); padded with int64 min if shard < k."""
    batch, local_vocab = local_logits.shape
    index = torch.arange(offset, offset + local_vocab, device=local_logits.device)
    keys = pack_value_index(local_logits, index.expand(batch, local_vocab))
    take = min(k, local_vocab)
    best = keys.topk(take, dim=-1, sorted=False).values if take else keys[:, :0]
    if take == k:
        return best
    pad = torch.full((batch, k - take), torch.iinfo(torch.int64).min, device=keys.device)
    return torch.cat([best, pad], dim=-1)


def _gather_all(local: torch.Tensor, group: dist.ProcessGroup | None) -> torch.Tensor:
    world = dist.get_world_size(group)
    out = torch.empty((world, *local.shape), dtype=local.dtype, device=local.device)
    if dist.get_backend(group) == dist.Backend.NCCL:
        dist.all_gather_into_tensor(out, local, group=group)
    else:
        # gloo has no all_gather_into_tensor; gathering into views of `out` avoids a copy.
        dist.all_gather(list(out.unbind(0)), local, group=group)
    return out  # (world, B, k)


def shard_offsets(shard_sizes: Sequence[int]) -> list[int]:
    """Start of each rank's shard in the global vocab."""
    offsets, start = [], 0
    for size in shard_sizes:
        offsets.append(start)
        start += size
    return offsets


def gather_shard_sizes(
    local_vocab: int, device: torch.device, group: dist.ProcessGroup | None = None
) -> list[int]:
    """All ranks' shard sizes (one all-gather; do it once, not per step)."""
    mine = torch.tensor([local_vocab], dtype=torch.int64, device=device)
    return [int(s) for s in _gather_all(mine, group).flatten()]


def sharded_topk(
    local_logits: torch.Tensor,
    k: int,
    group: dist.ProcessGroup | None = None,
    *,
    shard_sizes: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Global top-k (values float32, global indices int64), both (B, k), on every rank.

    local_logits: (B, V_rank), this rank's contiguous vocab shard, in rank order.
    shard_sizes: every rank's V_rank; pass it (it is fixed for a model) to keep the step to
    ONE all-gather; when None it is gathered first (a second, tiny collective).
    Values are sorted descending; ties go to the lowest global index.
    """
    if local_logits.dim() != 2:
        raise ShardingError(
            f"local_logits must be (batch, local_vocab), got {tuple(local_logits.shape)}"
        )
    if local_logits.dtype not in _PACKABLE:
        raise TypeError(f"local_logits must be one of {_PACKABLE}, got {local_logits.dtype}")
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    if shard_sizes is None:
        shard_sizes = gather_shard_sizes(local_logits.shape[1], local_logits.device, group)
    if len(shard_sizes) != world or shard_sizes[rank] != local_logits.shape[1]:
        raise ShardingError(
            f"shard_sizes={list(shard_sizes)} does not match world size {world} and this "
            f"rank's ({rank}) local vocab {local_logits.shape[1]}"
        )
    vocab = sum(shard_sizes)
    if not 1 <= k <= vocab:
        raise ShardingError(f"k must be in [1, vocab={vocab}], got {k}")
    if vocab > _LOW_MASK:
        raise ShardingError(f"vocab {vocab} does not fit the 32-bit index of the packed key")
    local = local_topk_keys(local_logits, k, shard_offsets(shard_sizes)[rank])  # (B, k)
    gathered = _gather_all(local, group)  # (world, B, k)
    candidates = gathered.permute(1, 0, 2).reshape(local.shape[0], world * k)
    best = candidates.topk(k, dim=-1, sorted=True).values  # keys are unique: exact order
    return unpack_value_index(best)


def topk_reference(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of full (B, V) logits by stable descending sort: ties -> lowest index."""
    values = logits.float() + 0.0
    order = torch.sort(values, dim=-1, descending=True, stable=True)
    return order.values[:, :k], order.indices[:, :k]
