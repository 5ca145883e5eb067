"""Acceptance of a drafter against the target's greedy continuations.

Under greedy verification a draft of n tokens made at position t (state h_t, last token
x_{t+1}) keeps its longest prefix equal to the target's greedy tokens x_{t+2} ...; on a greedy
continuation those are exactly the stored tokens, so acceptance is measured without running
the target again. Every continuation position is a draft point (the usual offline estimate).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..exceptions import DatasetError, IncompatibleTargetError
from ..speculator import Speculator
from .datagen import TokenShards
from .hidden import HiddenStates


@dataclass(frozen=True)
class AcceptanceReport:
    per_position: list[float]  # P(first i+1 draft tokens all accepted), i = 0 .. n-1
    mean_accepted: float  # E[accepted draft tokens] per draft
    positions: int  # draft points measured

    @property
    def tokens_per_step(self) -> float:
        """Tokens emitted per target forward: the accepted drafts plus the target's own."""
        return 1.0 + self.mean_accepted


@torch.no_grad()
def evaluate_acceptance(
    drafter: Speculator,
    shards: TokenShards,
    states: HiddenStates,
    n: int | None = None,
    batch_size: int = 4096,
) -> AcceptanceReport:
    """Per-position acceptance and mean accepted length of ``n``-token greedy drafts."""
    n = drafter.config.n_predict if n is None else n
    if shards.vocab_size != drafter.config.vocab_size:
        raise IncompatibleTargetError(
            f"shards vocab_size {shards.vocab_size} != drafter vocab_size {drafter.config.vocab_size}"
        )
    tokens, hidden = shards.tokens, states.hidden
    if tuple(hidden.shape[:2]) != tuple(tokens.shape):
        raise DatasetError("hidden states do not match the token shards; recompute them")
    # The first draft follows the prompt: state at P-1, last token x_P (the first generated).
    lo, hi = shards.prompt_len - 1, tokens.shape[1] - n - 2
    if hi < lo:
        raise DatasetError(f"continuations too short for {n}-token drafts")
    t = torch.arange(lo, hi + 1)
    seq = torch.arange(tokens.shape[0])
    seq, t = seq.repeat_interleave(t.numel()), t.repeat(tokens.shape[0])
    drafter.eval()
    accepted = []
    for start in range(0, seq.numel(), batch_size):
        s, p = seq[start : start + batch_size], t[start : start + batch_size]
        draft = drafter.propose(
            hidden[s, p].to(next(drafter.parameters()).dtype), tokens[s, p + 1], n
        )
        truth = tokens[s[:, None], p[:, None] + 2 + torch.arange(n)]
        accepted.append(torch.cumprod((draft == truth).long(), dim=1))  # (B, n) prefix matches
    prefix = torch.cat(accepted).double()
    return AcceptanceReport(
        per_position=prefix.mean(0).tolist(),
        mean_accepted=float(prefix.sum(1).mean()),
        positions=int(prefix.shape[0]),
    )
