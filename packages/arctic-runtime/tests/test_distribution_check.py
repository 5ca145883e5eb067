"""The chi-square homogeneity test that judges lossless sampling: exact on known tables,
calibrated under the null, and able to see a small bias."""

from __future__ import annotations

import random

import pytest
import torch

from arctic_runtime import chi_square_homogeneity, chi_square_survival


def test_survival_matches_known_quantiles():
    # Textbook chi-square critical values: P(X >= x) for (dof, x).
    for dof, x, p in [(1, 3.841459, 0.05), (2, 5.991465, 0.05), (10, 29.588298, 0.001)]:
        assert chi_square_survival(x, dof) == pytest.approx(p, rel=1e-5)
    assert chi_square_survival(0.0, 3) == 1.0
    with pytest.raises(ValueError, match="dof"):
        chi_square_survival(1.0, 0)


def test_statistic_of_a_two_by_two_table():
    # a: 30 x, 70 y; b: 50 x, 50 y. Expected 40/60 per row; X^2 = 2*(100/40 + 100/60).
    result = chi_square_homogeneity(["x"] * 30 + ["y"] * 70, ["x"] * 50 + ["y"] * 50)
    assert result.statistic == pytest.approx(2 * (100 / 40 + 100 / 60))
    assert result.dof == 1 and result.cells == 2
    assert result.p_value == pytest.approx(chi_square_survival(result.statistic, 1))


def test_sparse_categories_are_pooled():
    a = ["x"] * 50 + ["y"] * 50 + ["rare1", "rare2"]
    b = ["x"] * 50 + ["y"] * 50 + ["rare3"]
    result = chi_square_homogeneity(a, b)
    assert result.cells == 3  # x, y and one pooled "other"
    assert result.p_value > 0.5


def test_identical_single_category_is_no_evidence():
    assert chi_square_homogeneity([1] * 10, [1] * 20).p_value == 1.0


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="non-empty"):
        chi_square_homogeneity([], [1])
    with pytest.raises(ValueError, match="min_expected"):
        chi_square_homogeneity([1], [1], min_expected=0)


def _draws(probs: torch.Tensor, n: int, seed: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    return torch.multinomial(probs, n, replacement=True, generator=generator).tolist()


def test_calibrated_under_the_null_and_sees_a_temperature_change():
    probs = torch.softmax(torch.randn(200, generator=torch.Generator().manual_seed(0)) * 2, 0)
    nulls = [
        chi_square_homogeneity(_draws(probs, 2000, 2 * i), _draws(probs, 2000, 2 * i + 1))
        for i in range(200)
    ]
    rate = sum(r.rejects(0.05) for r in nulls) / len(nulls)
    assert 0.01 <= rate <= 0.10  # ~5 % false rejections at alpha 0.05
    # A sampler at temperature 0.9 instead of 1.0: the bias a broken verifier would add.
    biased = torch.softmax(torch.log(probs) / 0.9, 0)
    result = chi_square_homogeneity(_draws(probs, 2000, 1), _draws(biased, 2000, 2))
    assert result.rejects(0.001)


def test_tuples_are_categories():
    rng = random.Random(0)
    a = [(rng.randrange(3), rng.randrange(3)) for _ in range(900)]
    b = [(rng.randrange(3), rng.randrange(3)) for _ in range(900)]
    assert chi_square_homogeneity(a, b).cells == 9
