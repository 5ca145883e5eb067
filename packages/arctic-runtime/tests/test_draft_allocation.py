"""best_lengths: the exact throughput optimum, checked against brute force."""

from __future__ import annotations

import itertools
import random

import pytest

from arctic_runtime import best_lengths, expected_throughput


def _curve(rng: random.Random, n: int) -> list[float]:
    alive, out = 1.0, []
    for _ in range(n):
        alive *= rng.uniform(0.2, 1.0)
        out.append(alive)
    return out


def _brute_force(survival, caps, **cost):
    return max(
        expected_throughput(survival, lengths, **cost)
        for lengths in itertools.product(*(range(c + 1) for c in caps))
    )


@pytest.mark.parametrize("seed", range(60))
def test_matches_brute_force_on_small_batches(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 4)
    caps = [rng.randint(0, 5) for _ in range(n)]
    survival = [_curve(rng, 5) for _ in range(n)]
    cost = {
        "outputs": float(n),
        "base": rng.uniform(0.5, 2.0),
        "token_seconds": rng.choice([0.0, 0.01, 0.05, 0.2, 1.0]) * rng.random(),
        "request_seconds": rng.choice([0.0, 0.0, 0.05, 0.3]),
        "batch_seconds": rng.choice([0.0, 0.0, 0.1, 0.5]),
    }
    got = best_lengths(survival, caps, **cost)
    assert got.throughput == pytest.approx(_brute_force(survival, caps, **cost), rel=1e-12)
    assert expected_throughput(survival, got.lengths, **cost) == pytest.approx(got.throughput)
    assert all(0 <= k <= c for k, c in zip(got.lengths, caps, strict=True))
    assert got.throughput >= got.baseline  # never slower than no speculation, by the model
    if got.throughput == got.baseline:
        assert not any(got.lengths)


@pytest.mark.parametrize("seed", range(20))
def test_any_curve_not_only_concave_ones(seed):
    """Dinkelbach's inner step enumerates each request's lengths: exact for any curve."""
    rng = random.Random(1000 + seed)
    caps = [rng.randint(0, 4) for _ in range(3)]
    survival = [[rng.random() for _ in range(4)] for _ in range(3)]
    cost = {"outputs": 3.0, "base": 1.0, "token_seconds": 0.1, "request_seconds": 0.05}
    got = best_lengths(survival, caps, **cost)
    assert got.throughput == pytest.approx(_brute_force(survival, caps, **cost), rel=1e-12)


def test_without_drafting_costs_it_is_the_greedy_threshold_rule():
    """Each request keeps the tokens whose marginal acceptance beats throughput x cost."""
    rng = random.Random(7)
    survival = [_curve(rng, 8) for _ in range(6)]
    got = best_lengths(survival, [8] * 6, outputs=6.0, base=1.0, token_seconds=0.08)
    price = got.throughput * 0.08
    assert got.lengths == tuple(sum(1 for s in curve if s > price) for curve in survival)
    assert 0 < sum(got.lengths) < 48  # an interior optimum: the rule is what decided


def test_no_draft_when_a_token_costs_more_than_it_earns():
    # Batch 32, a token costs 10 % of a step: throughput 32 / 4.2 = 7.6 tokens/s, so a token
    # must be accepted with probability > 0.76 to pay; these are accepted at 0.6.
    survival = [[0.6**j for j in range(1, 9)]] * 32
    got = best_lengths(survival, [8] * 32, outputs=32.0, base=4.2, token_seconds=0.1)
    assert got.lengths == (0,) * 32 and got.throughput == got.baseline


def test_drafts_to_the_cap_when_verifying_is_nearly_free():
    survival = [[0.9**j for j in range(1, 9)]] * 4
    got = best_lengths(survival, [8, 8, 8, 3], outputs=4.0, base=1.004, token_seconds=0.001)
    assert got.lengths == (8, 8, 8, 3)


def test_a_fixed_drafting_cost_must_be_paid_for_by_the_whole_batch():
    survival = [[0.5]] * 4  # 0.5 tokens per draft token
    cheap = best_lengths(survival, [1] * 4, outputs=4.0, base=1.0, token_seconds=0.01)
    assert cheap.lengths == (1, 1, 1, 1)
    # Drafting at all costs 60 % of a step: 2 extra tokens on 4 do not pay for it.
    dear = best_lengths(
        survival, [1] * 4, outputs=4.0, base=1.0, token_seconds=0.01, batch_seconds=0.6
    )
    assert dear.lengths == (0, 0, 0, 0)


def test_ties_go_to_the_shorter_draft():
    # A token accepted with probability exactly throughput x cost changes nothing: not taken.
    survival = [[0.5, 0.25]]
    got = best_lengths(survival, [2], outputs=1.0, base=1.0, token_seconds=0.5)
    assert got.lengths == (0,)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"caps": [3]}, r"cap 3 needs 0 <= cap <= len\(survival\) = 2"),
        ({"caps": [-1]}, r"cap -1"),
        ({"caps": [1, 1]}, r"1 survival curves for 2 caps"),
        ({"base": 0.0}, r"base > 0"),
        ({"token_seconds": -1.0}, r"must be >= 0"),
    ],
)
def test_bad_input_is_refused_naming_it(kwargs, match):
    args = {"caps": [2], "outputs": 1.0, "base": 1.0, "token_seconds": 0.1, **kwargs}
    caps = args.pop("caps")
    with pytest.raises(ValueError, match=match):
        best_lengths([[0.5, 0.2]], caps, **args)
