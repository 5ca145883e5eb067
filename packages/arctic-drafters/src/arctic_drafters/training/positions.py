"""Which positions of a batch of sequences train or evaluate an n-head drafter.

Head i reads the target's state at t and the token at t+1+i and predicts the token at t+2+i
(arXiv 2404.19124). Training uses every t whose targets t+2 .. t+1+n all lie in the target's
continuation: t in [P-2, L-n-2] for prompt length P and sequence length L. A draft (for
evaluation) follows a state the target has produced after the prompt: t in [P-1, L-n-2].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .shards import SequenceBatch


def _bounds(
    lengths: torch.Tensor, prompt_lens: torch.Tensor, n: int, first: int
) -> tuple[torch.Tensor, torch.Tensor]:
    lo = (prompt_lens - first).clamp_min(0)
    hi = lengths - n - 2
    return lo, hi


def count_points(lengths: torch.Tensor, prompt_lens: torch.Tensor, n: int, *, draft: bool) -> int:
    """How many positions ``select_points`` returns, from the lengths alone."""
    lo, hi = _bounds(lengths, prompt_lens, n, 1 if draft else 2)
    return int((hi - lo + 1).clamp_min(0).sum())


def select_points(
    batch: SequenceBatch, n: int, *, draft: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, t): the positions of ``batch`` in row-major order."""
    lo, hi = _bounds(batch.lengths, batch.prompt_lens, n, 1 if draft else 2)
    t = torch.arange(batch.tokens.shape[1])
    mask = (t[None, :] >= lo[:, None]) & (t[None, :] <= hi[:, None])  # (B, T)
    rows, cols = mask.nonzero(as_tuple=True)
    return rows, cols


@dataclass(frozen=True)
class Points:
    hidden: torch.Tensor  # (N, H) the target's state at t
    inputs: torch.Tensor  # (N, n) tokens t+1 .. t+n (what head i reads)
    targets: torch.Tensor  # (N, n) tokens t+2 .. t+n+1 (what head i predicts)
    next_states: torch.Tensor | None  # (N, n, H) the target's states that predict targets


def gather_points(
    tokens: torch.Tensor,
    states: torch.Tensor,
    rows: torch.Tensor,
    t: torch.Tensor,
    n: int,
    *,
    with_next_states: bool = False,
) -> Points:
    """``tokens`` (B, T) and ``states`` (B, T, H) at the positions (rows, t)."""
    device = states.device
    rows, t = rows.to(device), t.to(device)
    offsets = t[:, None] + 1 + torch.arange(n, device=device)  # (N, n): t+1 .. t+n
    return Points(
        hidden=states[rows, t],
        inputs=tokens[rows[:, None], offsets],
        targets=tokens[rows[:, None], offsets + 1],
        next_states=states[rows[:, None], offsets] if with_next_states else None,
    )
