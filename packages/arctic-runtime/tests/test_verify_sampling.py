"""Rejection sampling is lossless: its output tokens are distributed as the target's.

The statistical tests run one batch of N seeded trials through `verify_sampling` and compare
the first output token with p_0 and, among trials that accepted draft token 0, the second
output token with p_1, by a chi-square test at alpha = 1e-3. The same test rejects two
plausible wrong rules, so it has the power to see a real bug.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist

import pytest
import torch

from arctic_runtime.draft import DRAFTER, SUFFIX, Draft
from arctic_runtime.exceptions import DraftShapeError, TargetShapeError, TensorDtypeError
from arctic_runtime.reference import (
    PAD_TOKEN,
    verify_greedy,
    verify_sampling,
    verify_sampling_draft,
)

TRIALS = 40_000
VOCAB = 8
MAX_DRAFT = 2
ALPHA = 1e-3


def chi_square_critical(dof: int, alpha: float = ALPHA) -> float:
    """Upper alpha quantile of chi-square(dof), Wilson-Hilferty (relative error < 1% here)."""
    z = NormalDist().inv_cdf(1.0 - alpha)
    return dof * (1.0 - 2.0 / (9.0 * dof) + z * math.sqrt(2.0 / (9.0 * dof))) ** 3


def test_chi_square_critical_matches_tables() -> None:
    # Tabulated upper 0.001 quantiles of chi-square for 6, 7 and 10 degrees of freedom.
    for dof, table in ((6, 22.458), (7, 24.322), (10, 29.588)):
        assert chi_square_critical(dof) == pytest.approx(table, rel=0.01)


def chi_square(tokens: torch.Tensor, probs: torch.Tensor) -> tuple[float, float, int]:
    """(statistic, critical value, emitted impossible tokens) of ``tokens`` against ``probs``.

    Tokens with probability 0 are left out of the statistic (their expected count is 0) and
    counted separately: a single one disproves the distribution.
    """
    counts = torch.bincount(tokens, minlength=VOCAB).double()
    expected = probs.double() * tokens.numel()
    possible = probs > 0
    statistic = float(((counts - expected)[possible] ** 2 / expected[possible]).sum())
    return statistic, chi_square_critical(int(possible.sum()) - 1), int(counts[~possible].sum())


def make_target(seed: int) -> torch.Tensor:
    """(MAX_DRAFT+1, VOCAB) fixed target distributions, one token impossible at position 0."""
    logits = torch.randn(MAX_DRAFT + 1, VOCAB, generator=torch.Generator().manual_seed(seed))
    probs = torch.softmax(1.5 * logits, dim=-1)
    probs[0, VOCAB - 1] = 0.0
    return probs / probs.sum(dim=-1, keepdim=True)


def make_trials(
    target: torch.Tensor, deterministic: bool, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Draft tokens (padded with junk), lengths in 0..MAX_DRAFT and q for TRIALS requests."""
    gen = torch.Generator().manual_seed(seed)
    num_draft = torch.randint(0, MAX_DRAFT + 1, (TRIALS,), generator=gen)
    if deterministic:
        # Any draft chosen independently of the verifier's randomness must be handled; one
        # leaning towards the target's likely tokens (as a good suffix match does) gets
        # accepted often enough to test the second token too.
        lean = target[:MAX_DRAFT] ** 2
        tokens = torch.multinomial(lean, TRIALS, replacement=True, generator=gen).T
        q = None
    else:
        q = torch.softmax(torch.randn(MAX_DRAFT, VOCAB, generator=gen), dim=-1)
        q[0, 2] = 0.0  # the draft never proposes a token the target likes
        q = q / q.sum(dim=-1, keepdim=True)
        tokens = torch.multinomial(q, TRIALS, replacement=True, generator=gen).T
        q = q.expand(TRIALS, MAX_DRAFT, VOCAB)
    padding = torch.arange(MAX_DRAFT) >= num_draft[:, None]
    tokens = torch.where(padding, torch.tensor(-7), tokens)  # never read as a token
    return tokens, num_draft, q


Rule = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Generator],
    tuple[torch.Tensor, torch.Tensor, torch.Tensor],
]


def run_trials(
    rule: Rule, deterministic: bool, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(target, draft tokens, num_draft, num_accepted, output tokens) of TRIALS requests."""
    target = make_target(seed)
    tokens, num_draft, q = make_trials(target, deterministic, seed + 1)
    p = target.expand(TRIALS, MAX_DRAFT + 1, VOCAB)
    num_accepted, output, num_output = rule(
        tokens, num_draft, p, q, torch.Generator().manual_seed(seed + 2)
    )
    assert torch.equal(num_output, num_accepted + 1)
    return target, tokens, num_draft, num_accepted, output


@pytest.mark.parametrize("deterministic", [False, True], ids=["sampled-q", "one-hot-q"])
def test_output_is_distributed_as_target(deterministic: bool) -> None:
    target, tokens, num_draft, num_accepted, output = run_trials(
        verify_sampling, deterministic, seed=1234
    )

    statistic, critical, impossible = chi_square(output[:, 0], target[0])
    assert impossible == 0 and statistic < critical, (statistic, critical, impossible)
    # Token 0 equals draft token 0 exactly when it was accepted: the rejection distribution
    # max(0, p - q) is zero at any token that can be rejected.
    drafted = num_draft >= 1
    assert torch.equal(num_accepted >= 1, drafted & (output[:, 0] == tokens[:, 0]))
    second = output[num_accepted >= 1, 1]
    assert second.numel() > 5000  # enough trials to test the second token
    statistic, critical, impossible = chi_square(second, target[1])
    assert impossible == 0 and statistic < critical, (statistic, critical, impossible)

    assert (num_accepted <= num_draft).all()
    positions = torch.arange(MAX_DRAFT + 1)
    assert (output[positions > num_accepted[:, None]] == PAD_TOKEN).all()
    accepted = positions[:MAX_DRAFT] < num_accepted[:, None]
    assert torch.equal(output[:, :MAX_DRAFT][accepted], tokens[accepted])


def always_accept(
    tokens: torch.Tensor,
    num_draft: torch.Tensor,
    p: torch.Tensor,
    q: torch.Tensor | None,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Wrong: trust the draft (what greedy verification does with sampled drafts)."""
    num_accepted = num_draft.clone()
    bonus = torch.multinomial(p[torch.arange(len(num_draft)), num_draft], 1, generator=gen)
    output = torch.cat([tokens, torch.full_like(tokens[:, :1], PAD_TOKEN)], dim=1)
    output[torch.arange(MAX_DRAFT + 1) >= num_draft[:, None]] = PAD_TOKEN
    output.scatter_(1, num_draft[:, None], bonus)
    return num_accepted, output, num_accepted + 1


def resample_from_target(
    tokens: torch.Tensor,
    num_draft: torch.Tensor,
    p: torch.Tensor,
    q: torch.Tensor | None,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Wrong: the right acceptance test, but on rejection sample from p, not max(0, p - q)."""
    num_accepted, output, num_output = verify_sampling(tokens, num_draft, p, q, gen)
    rejected = num_accepted < num_draft
    rows = torch.arange(len(num_draft))
    fresh = torch.multinomial(p[rows, num_accepted], 1, generator=gen).squeeze(1)
    output[rows[rejected], num_accepted[rejected]] = fresh[rejected]
    return num_accepted, output, num_output


@pytest.mark.parametrize("deterministic", [False, True], ids=["sampled-q", "one-hot-q"])
@pytest.mark.parametrize("wrong_rule", [always_accept, resample_from_target])
def test_chi_square_detects_wrong_rules(wrong_rule: Rule, deterministic: bool) -> None:
    target, _, _, _, output = run_trials(wrong_rule, deterministic, seed=1234)
    # The chi-square statistic alone, over possible tokens, must reject the wrong rule.
    statistic, critical, _ = chi_square(output[:, 0], target[0])
    assert statistic > critical, (statistic, critical)


def test_same_generator_state_same_output() -> None:
    target = make_target(5).expand(64, MAX_DRAFT + 1, VOCAB)
    tokens, num_draft, q = make_trials(make_target(5), deterministic=False, seed=6)
    tokens, num_draft, q = tokens[:64], num_draft[:64], None if q is None else q[:64]
    first = verify_sampling(tokens, num_draft, target, q, torch.Generator().manual_seed(9))
    again = verify_sampling(tokens, num_draft, target, q, torch.Generator().manual_seed(9))
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)


def test_one_hot_target_is_greedy() -> None:
    gen = torch.Generator().manual_seed(3)
    batch, max_draft = 50, 4
    argmax = torch.randint(0, 3, (batch, max_draft + 1), generator=gen)
    tokens = torch.randint(0, 3, (batch, max_draft), generator=gen)
    num_draft = torch.randint(0, max_draft + 1, (batch,), generator=gen)
    p = torch.nn.functional.one_hot(argmax, VOCAB).float()
    for q in (None, torch.softmax(torch.randn(batch, max_draft, VOCAB, generator=gen), -1)):
        got = verify_sampling(tokens, num_draft, p, q, gen)
        want = verify_greedy(tokens, num_draft, argmax)
        for a, b in zip(got, want, strict=True):
            assert torch.equal(a, b)


def test_draft_wrapper_and_certain_outcomes() -> None:
    gen = torch.Generator().manual_seed(0)
    p = torch.full((4, VOCAB), 1.0 / VOCAB)
    p[0] = torch.nn.functional.one_hot(torch.tensor(5), VOCAB).float()  # draft token 0 certain
    p[1, 2] = 0.0  # draft token 1 impossible under the target: always rejected
    p[1] = p[1] / p[1].sum()
    for draft in (
        Draft.path([5, 2, 1], SUFFIX, 1.0),
        Draft((5, 2, 1), DRAFTER, 1.0, probs=torch.full((3, VOCAB), 1.0 / VOCAB)),
    ):
        for _ in range(20):
            accepted, output = verify_sampling_draft(draft, p, gen)
            assert accepted == 1 and output[0] == 5 and output[1] not in (2, PAD_TOKEN)
            assert len(output) == 2
    with pytest.raises(DraftShapeError, match="path drafts only"):
        verify_sampling_draft(Draft((1, 2), SUFFIX, 1.0, parents=(-1, -1)), p[:3], gen)


def test_rejects_bad_inputs() -> None:
    gen = torch.Generator()
    tokens, num_draft = torch.zeros(2, 3, dtype=torch.long), torch.tensor([3, 1])
    p, q = torch.full((2, 4, VOCAB), 1.0 / VOCAB), torch.full((2, 3, VOCAB), 1.0 / VOCAB)
    with pytest.raises(TargetShapeError, match=r"target_probs must be \(2, 4, vocab\)"):
        verify_sampling(tokens, num_draft, p[:, :3], q, gen)
    with pytest.raises(DraftShapeError, match=r"draft_probs must be \(2, 3, 8\).*\(2, 3, 7\)"):
        verify_sampling(tokens, num_draft, p, q[..., :7], gen)
    with pytest.raises(DraftShapeError, match=r"num_draft must lie in \[0, 3\]"):
        verify_sampling(tokens, torch.tensor([4, 0]), p, q, gen)
    bad = tokens.clone()
    bad[1, 0], bad[1, 2] = VOCAB, VOCAB  # [1, 2] is padding (num_draft 1) and is fine
    with pytest.raises(DraftShapeError, match=r"draft_tokens\[1, 0\] = 8 is outside"):
        verify_sampling(bad, num_draft, p, q, gen)
    with pytest.raises(TensorDtypeError, match="target_probs must be floating"):
        verify_sampling(tokens, num_draft, p.long(), q, gen)
