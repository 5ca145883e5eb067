"""What the reference engine returns: the tokens per prompt and how speculation fared."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..acceptance import DraftCounts

# The per-source counts were their own class before the counters were unified; the name
# stays for callers that import it.
SourceStats = DraftCounts


@dataclass
class GenerationStats:
    """Counters of one `generate` call.

    A *step* is one engine iteration over the active requests: at most one proposer call,
    then one target forward per active request. ``draft_steps`` counts the per-request
    verifications that carried a non-empty draft.
    """

    steps: int = 0
    target_forwards: int = 0  # prefill forwards plus one verification forward per request-step
    generated_tokens: int = 0  # tokens in all outputs, the prefill's first tokens included
    # Drafts by source (``Draft.source``). Accepted tokens are counted before the output is
    # cut at EOS or max_new_tokens: they measure the proposer, not the output length.
    per_source: dict[str, DraftCounts] = field(default_factory=dict)
    wall_time_s: float = 0.0

    @property
    def total(self) -> DraftCounts:
        """Every source's drafts together."""
        return sum(self.per_source.values(), DraftCounts())

    @property
    def draft_steps(self) -> int:
        return self.total.drafts

    @property
    def drafted_tokens(self) -> int:
        return self.total.draft_tokens

    @property
    def accepted_tokens(self) -> int:
        return self.total.accepted_tokens

    @property
    def mean_acceptance_length(self) -> float:
        """Tokens emitted per verification that carried a draft (`DraftCounts`); 1.0
        without drafts."""
        return self.total.mean_acceptance_length

    @property
    def acceptance_rate(self) -> float:
        """Accepted / drafted tokens (0.0 when nothing was drafted)."""
        return self.total.acceptance_rate

    def record_draft(self, source: str, drafted: int, accepted: int) -> None:
        DraftCounts.check(drafted, accepted)  # before a new source's entry exists
        self.per_source.setdefault(source, DraftCounts()).record(drafted, accepted)


@dataclass
class GenerationResult:
    """Per prompt, in prompt order: the generated token ids (prompt excluded) and their
    text; ``texts`` is None when no tokenizer was given."""

    token_ids: list[list[int]]
    texts: list[str] | None
    stats: GenerationStats
