"""Acceptance of a drafter against the target's greedy continuations.

Under greedy verification a draft of n tokens made at position t (state h_t, last token
x_{t+1}) keeps its longest prefix equal to the target's greedy tokens x_{t+2} ...; on a greedy
continuation those are exactly the stored tokens, so acceptance is measured without running
the target again. Every continuation position is a draft point (the usual offline estimate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..exceptions import DatasetError, IncompatibleTargetError
from ..speculator import Speculator
from .distributed import Runtime
from .hidden import HiddenStates
from .positions import gather_points, select_points
from .shards import SequenceStore, TokenShards


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


def _prefix_matches(
    drafter: Speculator, hidden: torch.Tensor, last: torch.Tensor, truth: torch.Tensor, n: int
) -> torch.Tensor:
    """(N, n) 1 where the draft's first i+1 tokens all equal the target's."""
    draft = drafter.propose(hidden.to(next(drafter.parameters()).dtype), last, n)
    return torch.cumprod((draft == truth).long(), dim=1)


@torch.no_grad()
def evaluate_online(
    drafter: Speculator,
    store: SequenceStore,
    states: Any,
    runtime: Runtime,
    n: int | None = None,
    batch_sequences: int = 16,
) -> AcceptanceReport:
    """``evaluate_acceptance`` with the target in the loop (``TargetStates``), a batch of
    sequences at a time, so memory does not grow with the held-out set; the processes split
    the sequences and add up their counts. Ragged (chat) data is fine."""
    n = drafter.config.n_predict if n is None else n
    if store.vocab_size != drafter.config.vocab_size:
        raise IncompatibleTargetError(
            f"shards vocab_size {store.vocab_size} != drafter vocab_size {drafter.config.vocab_size}"
        )
    drafter.to(runtime.device).eval()
    mine = torch.arange(runtime.rank, len(store), runtime.world_size)
    sums = torch.zeros(n + 1, dtype=torch.float64, device=runtime.device)  # per position, count
    # Every process runs the same number of target forwards (a sharded target needs it).
    rounds = -(-len(store) // (runtime.world_size * batch_sequences))
    for r in range(rounds):
        chunk = mine[r * batch_sequences : (r + 1) * batch_sequences]
        chunk = chunk if len(chunk) else torch.zeros(1, dtype=torch.int64)  # a dummy forward
        batch = store.batch(chunk)
        tokens = batch.tokens.to(runtime.device)
        with runtime.autocast():
            hidden = states(tokens, batch.attention_mask.to(runtime.device))
        if r * batch_sequences >= len(mine):
            continue
        rows, t = select_points(batch, n, draft=True)
        points = gather_points(tokens, hidden, rows, t, n)
        prefix = _prefix_matches(
            drafter, points.hidden.float(), points.inputs[:, 0], points.targets, n
        )
        sums[:n] += prefix.sum(0).double()
        sums[n] += prefix.shape[0]
    runtime.all_reduce_sum(sums)
    count = int(sums[n])
    if count == 0:
        raise DatasetError(f"continuations too short for {n}-token drafts")
    per_position = (sums[:n] / count).tolist()
    return AcceptanceReport(
        per_position=per_position, mean_accepted=float(sum(per_position)), positions=count
    )


def acceptance_table(report: AcceptanceReport) -> str:
    """The held-out acceptance as a Markdown table (what ``arctic-train`` prints)."""
    heads = len(report.per_position)
    header = "| " + " | ".join(f"acc@{i + 1}" for i in range(heads))
    header += " | mean accepted | tokens/step | draft points |"
    rule = "|" + "---|" * (heads + 3)
    row = "| " + " | ".join(f"{a:.3f}" for a in report.per_position)
    row += f" | {report.mean_accepted:.3f} | {report.tokens_per_step:.3f} | {report.positions} |"
    return "\n".join([header, rule, row])
