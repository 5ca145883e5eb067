"""The draft loop with vocab-parallel LM heads: each tensor-parallel rank scores its vocab
shard and one all-gather per head picks the global argmax (arctic-kernels' sharded_topk).

Every rank runs the (small) state update itself; only the heads, the largest part of a
drafter (vocab x inner_dim each), are split, so each rank holds and multiplies 1/world of
them. The group is the engine's own tensor-parallel group (no second process group).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from arctic_drafters import Speculator, tied_index
from arctic_kernels import Fp8Linear, Int8Linear, sharded_topk


def shard_sizes(vocab: int, world: int) -> list[int]:
    """Contiguous shards, the first ``vocab % world`` one token larger."""
    if world < 1 or vocab < world:
        raise ValueError(f"cannot split vocab {vocab} over {world} ranks")
    base, extra = divmod(vocab, world)
    return [base + (1 if r < extra else 0) for r in range(world)]


class VocabParallelDraftRunner:
    """Callable like ``Speculator.propose``: (B, H) states, (B,) tokens, n -> (B, n) tokens."""

    def __init__(
        self,
        speculator: Speculator,
        group: dist.ProcessGroup | None = None,
        *,
        fp8: bool = False,
    ) -> None:
        self.speculator = speculator
        self.group = group
        rank, world = dist.get_rank(group), dist.get_world_size(group)
        vocab = speculator.config.vocab_size
        self.shard_sizes = shard_sizes(vocab, world)
        start = sum(self.shard_sizes[:rank])
        stop = start + self.shard_sizes[rank]
        heads: list[torch.nn.Module] = []
        for head in speculator.head:
            if isinstance(head, Fp8Linear | Int8Linear):
                # Already quantized (e.g. GPTQ layers loaded from a file): sharded as stored.
                heads.append(head.rows(start, stop))
                continue
            if not isinstance(head, torch.nn.Linear):
                raise TypeError(
                    f"vocab-parallel heads need nn.Linear, Fp8Linear or Int8Linear heads, "
                    f"got {type(head).__name__}"
                )
            shard = torch.nn.Linear(
                head.in_features, stop - start, bias=head.bias is not None,
                device=head.weight.device, dtype=head.weight.dtype,
            )  # fmt: skip
            with torch.no_grad():
                shard.weight.copy_(head.weight[start:stop])
                if head.bias is not None:
                    shard.bias.copy_(head.bias[start:stop])
            heads.append(Fp8Linear.from_linear(shard) if fp8 else shard)
        self.heads = torch.nn.ModuleList(heads)

    @torch.no_grad()
    def __call__(
        self, hidden_states: torch.Tensor, last_tokens: torch.Tensor, n: int
    ) -> torch.Tensor:
        spec = self.speculator
        state, cell = spec.initial_state(hidden_states)
        tokens = last_tokens
        out = []
        for i in range(n):
            state, cell = spec.step(i, state, cell, tokens)
            local = self.heads[tied_index(i, spec.config.tie_weights)](state)  # (B, V/world)
            _, index = sharded_topk(local, 1, self.group, shard_sizes=self.shard_sizes)
            tokens = index[:, 0]
            out.append(tokens)
        return torch.stack(out, 1)
