"""`DraftCounts`, the one acceptance counter, and the reference engine's stats built on it."""

from __future__ import annotations

import pytest

import arctic_runtime
from arctic_runtime import DraftCounts, GenerationStats, SourceStats


def test_counts_rates_and_mean_acceptance_length() -> None:
    counts = DraftCounts()
    assert (counts.acceptance_rate, counts.mean_acceptance_length) == (0.0, 1.0)
    counts.record(4, 3)
    counts.record(2, 0)
    counts.record(0, 0)  # an empty draft still counts as a verification
    assert (counts.drafts, counts.draft_tokens, counts.accepted_tokens) == (3, 6, 3)
    assert counts.acceptance_rate == pytest.approx(3 / 6)
    assert counts.mean_acceptance_length == pytest.approx(1 + 3 / 3)


@pytest.mark.parametrize(("drafted", "accepted"), [(2, 3), (2, -1), (-1, -1)])
def test_a_bad_record_raises_and_counts_nothing(drafted: int, accepted: int) -> None:
    counts = DraftCounts(1, 4, 2)
    with pytest.raises(ValueError, match=f"num_accepted must be in 0..num_drafted={drafted}"):
        counts.record(drafted, accepted)
    assert counts == DraftCounts(1, 4, 2)


def test_counts_add_up() -> None:
    a, b = DraftCounts(1, 4, 2), DraftCounts(2, 3, 3)
    assert a + b == DraftCounts(3, 7, 5)
    assert sum([a, b], DraftCounts()) == DraftCounts(3, 7, 5)
    assert (a, b) == (DraftCounts(1, 4, 2), DraftCounts(2, 3, 3))  # operands untouched
    with pytest.raises(TypeError):
        a + 1


def test_source_stats_is_the_shared_counter_under_its_old_name() -> None:
    assert SourceStats is DraftCounts
    assert DraftCounts(1, 4, 2).drafted_tokens == 4


def test_generation_stats_totals_are_the_sum_over_sources() -> None:
    stats = GenerationStats()
    assert (stats.draft_steps, stats.drafted_tokens, stats.accepted_tokens) == (0, 0, 0)
    assert (stats.acceptance_rate, stats.mean_acceptance_length) == (0.0, 1.0)
    stats.record_draft("suffix", 4, 3)
    stats.record_draft("drafter", 3, 1)
    stats.record_draft("suffix", 2, 2)
    assert stats.per_source == {"suffix": DraftCounts(2, 6, 5), "drafter": DraftCounts(1, 3, 1)}
    assert stats.total == DraftCounts(3, 9, 6)
    assert (stats.draft_steps, stats.drafted_tokens, stats.accepted_tokens) == (3, 9, 6)
    assert stats.acceptance_rate == pytest.approx(6 / 9)
    assert stats.mean_acceptance_length == pytest.approx(6 / 3 + 1)


def test_a_bad_draft_record_leaves_no_source_behind() -> None:
    stats = GenerationStats()
    with pytest.raises(ValueError, match="num_accepted"):
        stats.record_draft("suffix", 1, 2)
    assert stats.per_source == {}


def test_the_reference_engine_stays_importable_from_the_top_level() -> None:
    from arctic_runtime import reference

    for name in reference.__all__:
        if name not in ("HFTarget", "PAD_TOKEN"):  # engine internals, not re-exported
            assert getattr(arctic_runtime, name) is getattr(reference, name), name
            assert name in arctic_runtime.__all__, name
