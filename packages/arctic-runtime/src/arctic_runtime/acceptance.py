"""How drafts fare: plain counts for reports, and per-position rates for decisions.

`DraftCounts` is the one counter every report shares (the reference engine's stats,
arctic-vllm's per-source and per-request metrics). `AcceptanceTracker` is what a proposer
decides with: the expected accepted length of a draft of length L.

A draft's tokens are accepted left to right, so position i is only *reached* when positions
0..i-1 were accepted. The tracker keeps, per position, the conditional rate
a_i = P(accept i | reached i) as decayed counts (recent steps weigh more: acceptance drifts
within a request), and the expected accepted length of an L-token draft is
sum_{i<L} prod_{j<=i} a_j.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DraftCounts:
    """Verified drafts and their accepted tokens; ``a + b`` sums two counts.

    ``mean_acceptance_length`` is the tokens emitted per verified draft: the accepted draft
    tokens plus the target's bonus token, the convention of the speculative-decoding papers
    (Leviathan et al. 2023, arXiv 2211.17192), where no speculation scores 1.0.
    """

    drafts: int = 0  # verifications that carried a draft
    draft_tokens: int = 0
    accepted_tokens: int = 0  # before the output is cut at EOS or a length limit

    @staticmethod
    def check(num_drafted: int, num_accepted: int) -> None:
        """Raise ValueError unless ``0 <= num_accepted <= num_drafted`` (so, before anything
        is counted, a caller recording into several counters can validate once)."""
        if not 0 <= num_accepted <= num_drafted:
            raise ValueError(
                f"num_accepted must be in 0..num_drafted={num_drafted}, got {num_accepted}"
            )

    def record(self, num_drafted: int, num_accepted: int) -> None:
        """Count one verified draft of ``num_drafted`` tokens, ``num_accepted`` accepted."""
        self.check(num_drafted, num_accepted)
        self.drafts += 1
        self.draft_tokens += num_drafted
        self.accepted_tokens += num_accepted

    @property
    def acceptance_rate(self) -> float:
        """Accepted / drafted tokens (0.0 before any draft token)."""
        return self.accepted_tokens / self.draft_tokens if self.draft_tokens else 0.0

    @property
    def mean_acceptance_length(self) -> float:
        """``1 + accepted_tokens / drafts`` (1.0 before any draft)."""
        return 1.0 + self.accepted_tokens / self.drafts if self.drafts else 1.0

    @property
    def drafted_tokens(self) -> int:
        """``draft_tokens`` under the name `SourceStats` gave it (kept for its readers)."""
        return self.draft_tokens

    def __add__(self, other: object) -> DraftCounts:
        if not isinstance(other, DraftCounts):
            return NotImplemented
        return DraftCounts(
            self.drafts + other.drafts,
            self.draft_tokens + other.draft_tokens,
            self.accepted_tokens + other.accepted_tokens,
        )


@dataclass
class AcceptanceTracker:
    """Decayed per-position (reached, accepted) counts with a prior."""

    num_positions: int
    decay: float = 0.98  # per recorded draft; ~50 drafts of memory
    prior_rate: float = 0.5  # the rate assumed before any evidence
    prior_weight: float = 2.0  # how many observations the prior is worth
    reached: list[float] = field(init=False)
    accepted: list[float] = field(init=False)
    num_records: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.num_positions < 1:
            raise ValueError(f"num_positions must be >= 1, got {self.num_positions}")
        if not 0.0 < self.decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1], got {self.decay}")
        if not 0.0 <= self.prior_rate <= 1.0:
            raise ValueError(f"prior_rate must be in [0, 1], got {self.prior_rate}")
        if self.prior_weight <= 0:
            raise ValueError(f"prior_weight must be > 0, got {self.prior_weight}")
        self.reached = [0.0] * self.num_positions
        self.accepted = [0.0] * self.num_positions

    def record(self, num_drafted: int, num_accepted: int) -> None:
        DraftCounts.check(num_drafted, num_accepted)
        d = self.decay
        self.reached = [r * d for r in self.reached]  # (a comprehension: 2x a loop here)
        self.accepted = [a * d for a in self.accepted]
        for i in range(min(num_drafted, self.num_positions)):
            if i > num_accepted:
                break
            self.reached[i] += 1.0
            if i < num_accepted:
                self.accepted[i] += 1.0
        self.num_records += 1

    def rates(self, prior: list[float] | None = None) -> list[float]:
        """Conditional rates; ``prior`` (per position) replaces ``prior_rate`` when given."""
        out = []
        for i in range(self.num_positions):
            p = self.prior_rate if prior is None else prior[i]
            w = self.prior_weight
            out.append((self.accepted[i] + w * p) / (self.reached[i] + w))
        return out

    def expected_accepted(self, length: int, prior: list[float] | None = None) -> float:
        """Expected accepted tokens of a ``length``-token draft (positions past the tracked
        ones reuse the last position's rate)."""
        rates = self.rates(prior)
        total, survive = 0.0, 1.0
        for i in range(length):
            survive *= rates[min(i, self.num_positions - 1)]
            total += survive
        return total
