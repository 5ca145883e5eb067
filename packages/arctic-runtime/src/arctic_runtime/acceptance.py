"""Running per-position acceptance rates: what a draft of length L is expected to earn.

A draft's tokens are accepted left to right, so position i is only *reached* when positions
0..i-1 were accepted. We keep, per position, the conditional rate a_i = P(accept i | reached
i) as decayed counts (recent steps weigh more: acceptance drifts within a request), and the
expected accepted length of an L-token draft is sum_{i<L} prod_{j<=i} a_j.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
        if not 0 <= num_accepted <= num_drafted:
            raise ValueError(
                f"num_accepted must be in 0..num_drafted={num_drafted}, got {num_accepted}"
            )
        d = self.decay
        for i in range(self.num_positions):
            self.reached[i] *= d
            self.accepted[i] *= d
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
