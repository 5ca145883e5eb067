"""Is speculative sampling lossless? A chi-square test of homogeneity between two samplers.

Speculative sampling (arXiv 2211.17192) must leave the distribution of generated tokens
unchanged at temperature > 0. Generating N seeded samples with and without speculation and
comparing the two histograms of each token position (or of whole short sequences) with
Pearson's chi-square homogeneity test checks exactly that; identical-by-eye histograms are
no evidence. Categories whose expected count is below ``min_expected`` in either sample are
pooled into one "other" cell (the chi-square approximation needs expected counts of ~5).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import torch

_OTHER = object()


@dataclass(frozen=True)
class HomogeneityResult:
    statistic: float  # Pearson's X^2
    dof: int  # (cells - 1) for two samples
    p_value: float  # P(X^2 >= statistic) under "same distribution"
    cells: int  # categories after pooling

    def rejects(self, alpha: float) -> bool:
        return self.p_value < alpha


def chi_square_homogeneity(
    a: Iterable[Hashable], b: Iterable[Hashable], *, min_expected: float = 5.0
) -> HomogeneityResult:
    """Pearson's chi-square test that samples ``a`` and ``b`` come from one distribution."""
    if min_expected <= 0:
        raise ValueError(f"min_expected must be > 0, got {min_expected!r}")
    count_a, count_b = Counter(a), Counter(b)
    n_a, n_b = sum(count_a.values()), sum(count_b.values())
    if n_a == 0 or n_b == 0:
        raise ValueError(f"both samples must be non-empty, got sizes {n_a} and {n_b}")
    share_a, share_b = n_a / (n_a + n_b), n_b / (n_a + n_b)
    table: dict[object, list[int]] = {}
    for category in sorted(set(count_a) | set(count_b), key=repr):
        pair = [count_a[category], count_b[category]]
        total = pair[0] + pair[1]
        # A category is its own cell only if both expected counts are large enough.
        key = category if min(total * share_a, total * share_b) >= min_expected else _OTHER
        cell = table.setdefault(key, [0, 0])
        cell[0] += pair[0]
        cell[1] += pair[1]
    if len(table) < 2:
        return HomogeneityResult(0.0, 0, 1.0, len(table))
    statistic = 0.0
    for observed_a, observed_b in table.values():
        total = observed_a + observed_b
        for observed, share in ((observed_a, share_a), (observed_b, share_b)):
            expected = total * share
            statistic += (observed - expected) ** 2 / expected
    dof = len(table) - 1
    return HomogeneityResult(statistic, dof, chi_square_survival(statistic, dof), len(table))


def chi_square_survival(statistic: float, dof: int) -> float:
    """P(X >= statistic) for X ~ chi-square with ``dof`` degrees of freedom."""
    if dof < 1:
        raise ValueError(f"dof must be >= 1, got {dof}")
    if statistic <= 0:
        return 1.0
    value = torch.special.gammaincc(
        torch.tensor(dof / 2.0, dtype=torch.float64),
        torch.tensor(statistic / 2.0, dtype=torch.float64),
    )
    return float(value)


def positions(sequences: Sequence[Sequence[int]], index: int | slice) -> list[Hashable]:
    """Token ``index`` (an int), or the tuple of tokens in ``index`` (a slice), of each
    sequence: the samples one homogeneity test compares."""
    if isinstance(index, slice):
        return [tuple(s[index]) for s in sequences]
    return [s[index] for s in sequences]
