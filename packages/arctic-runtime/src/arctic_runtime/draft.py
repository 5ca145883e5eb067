"""What a proposer returns for one request: a path or a tree of draft tokens."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .exceptions import DraftShapeError

# The draft sources the runtime knows; metrics are keyed by them.
SUFFIX = "suffix"
DRAFTER = "drafter"


@dataclass(frozen=True)
class Draft:
    """Draft tokens for one request, to be verified by one target pass.

    A path has ``parents is None``: token i follows token i-1 (token 0 follows the request's
    last token). A tree has ``parents[i] < i`` for every node, -1 meaning "after the
    request's last token"; nodes are in topological order.
    """

    token_ids: tuple[int, ...]
    source: str  # SUFFIX or DRAFTER: who proposed it (metrics, hybrid feedback)
    score: float  # expected number of accepted draft tokens, as the proposer estimates it
    parents: tuple[int, ...] | None = None
    # (n, V) draft distributions q(. | prefix) the tokens were sampled from, for lossless
    # rejection sampling; None for deterministic drafts (suffix, greedy drafter).
    probs: torch.Tensor | None = None
    # Suffix drafts: the length of the context suffix the draft was matched on (0: unknown,
    # or not a suffix draft). Acceptance rises with it: the cost-aware planner's curves are
    # kept per match-length bucket (arctic_runtime.acceptance_curves).
    match_len: int = 0

    def __post_init__(self) -> None:
        n = len(self.token_ids)
        if self.parents is not None:
            if len(self.parents) != n:
                raise DraftShapeError(
                    f"parents has {len(self.parents)} entries for {n} draft tokens"
                )
            for i, p in enumerate(self.parents):
                if not -1 <= p < i:
                    raise DraftShapeError(
                        f"parents[{i}] = {p}: a parent must be -1 or an earlier node"
                    )
        if self.probs is not None and (self.probs.dim() != 2 or self.probs.shape[0] != n):
            raise DraftShapeError(
                f"probs must be ({n}, vocab) for {n} draft tokens, got {tuple(self.probs.shape)}"
            )

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def is_tree(self) -> bool:
        return self.parents is not None and any(p != i - 1 for i, p in enumerate(self.parents))

    def truncated(self, max_tokens: int) -> Draft:
        """The first ``max_tokens`` nodes (a prefix of a topological order stays a tree)."""
        if max_tokens >= len(self):
            return self
        probs = None if self.probs is None else self.probs[:max_tokens]
        parents = None if self.parents is None else self.parents[:max_tokens]
        # The score is an expected accepted length; a shorter draft cannot expect more.
        return Draft(
            self.token_ids[:max_tokens],
            self.source,
            min(self.score, float(max_tokens)),
            parents,
            probs,
            self.match_len,
        )

    @staticmethod
    def path(token_ids: Sequence[int], source: str, score: float) -> Draft:
        return Draft(tuple(int(t) for t in token_ids), source, float(score))
