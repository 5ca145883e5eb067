"""What the reference engine returns: the tokens per prompt and how speculation fared."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SourceStats:
    """Drafts of one source (``Draft.source``) that were verified."""

    drafts: int = 0  # verification steps that carried a draft of this source
    drafted_tokens: int = 0
    accepted_tokens: int = 0

    @property
    def acceptance_rate(self) -> float:
        """Accepted / drafted tokens (0.0 before any draft)."""
        return self.accepted_tokens / self.drafted_tokens if self.drafted_tokens else 0.0


@dataclass
class GenerationStats:
    """Counters of one `generate` call.

    A *step* is one engine iteration over the active requests: at most one proposer call,
    then one target forward per active request. ``draft_steps`` counts the per-request
    verifications that carried a non-empty draft.
    """

    steps: int = 0
    target_forwards: int = 0  # prefill forwards plus one verification forward per request-step
    draft_steps: int = 0
    # Tokens the verifier accepted, before the output is cut at EOS or max_new_tokens: this
    # measures the proposer, not the output length.
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    generated_tokens: int = 0  # tokens in all outputs, the prefill's first tokens included
    per_source: dict[str, SourceStats] = field(default_factory=dict)
    wall_time_s: float = 0.0

    @property
    def mean_acceptance_length(self) -> float:
        """Tokens emitted per verification that carried a draft: accepted drafts plus the
        bonus token, i.e. ``accepted_tokens / draft_steps + 1`` (the convention of the
        speculative-decoding papers, where no speculation scores 1.0). 1.0 without drafts."""
        return self.accepted_tokens / self.draft_steps + 1.0 if self.draft_steps else 1.0

    @property
    def acceptance_rate(self) -> float:
        """Accepted / drafted tokens (0.0 when nothing was drafted)."""
        return self.accepted_tokens / self.drafted_tokens if self.drafted_tokens else 0.0

    def record_draft(self, source: str, drafted: int, accepted: int) -> None:
        self.draft_steps += 1
        self.drafted_tokens += drafted
        self.accepted_tokens += accepted
        per_source = self.per_source.setdefault(source, SourceStats())
        per_source.drafts += 1
        per_source.drafted_tokens += drafted
        per_source.accepted_tokens += accepted


@dataclass
class GenerationResult:
    """Per prompt, in prompt order: the generated token ids (prompt excluded) and their
    text; ``texts`` is None when no tokenizer was given."""

    token_ids: list[list[int]]
    texts: list[str] | None
    stats: GenerationStats
