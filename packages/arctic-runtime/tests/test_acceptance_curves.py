"""AcceptanceCurves: per-position acceptance per (source, bucket), shrunk to the source."""

from __future__ import annotations

import itertools

import pytest
import torch

from arctic_runtime import DRAFTER, SUFFIX, AcceptanceCurves, Draft, curve_key, suffix_bucket


def test_without_evidence_every_curve_is_the_prior():
    curves = AcceptanceCurves(4, prior_rate=0.5)
    assert curves.survival((SUFFIX, 3)) == (0.5, 0.25, 0.125, 0.0625)
    assert curves.expected_accepted((DRAFTER, 0), 2) == pytest.approx(0.75)


def test_a_bucket_learns_its_own_rate_and_the_source_the_mix():
    curves = AcceptanceCurves(3, decay=1.0)
    long_match, short_match = (SUFFIX, 5), (SUFFIX, 1)
    for _ in range(200):
        curves.record(long_match, 3, 3)  # always fully accepted
        curves.record(short_match, 3, 0)  # always rejected at once
    assert curves.rates(long_match)[0] > 0.98 and curves.rates(short_match)[0] < 0.02
    assert curves.rates((SUFFIX, None))[0] == pytest.approx(0.5, abs=0.01)
    # Position 1 is reached only by long matches: the source's rate there is theirs.
    assert curves.rates((SUFFIX, None))[1] > 0.98
    # An unseen bucket reads as its source; another source is untouched.
    assert curves.rates((SUFFIX, 3)) == curves.rates((SUFFIX, None))
    assert curves.rates((DRAFTER, 0)) == [0.5, 0.5, 0.5]


def test_survival_is_non_increasing_and_cached_until_the_source_records():
    curves = AcceptanceCurves(5, decay=1.0)
    for accepted in [5, 2, 4, 0, 1]:
        curves.record((DRAFTER, 0), 5, accepted)
    s = curves.survival((DRAFTER, 0))
    assert all(a >= b for a, b in itertools.pairwise(s))
    assert curves.survival((DRAFTER, 0)) is s
    curves.record((DRAFTER, 1), 5, 5)  # another bucket of the source moves its prior
    assert curves.survival((DRAFTER, 0)) is not s
    assert curves.survival((DRAFTER, 0))[0] > s[0]


def test_drafts_are_keyed_by_source_and_match_length_or_sampling():
    assert curve_key(Draft((1, 2), SUFFIX, 1.0, match_len=9)) == (SUFFIX, 4)
    assert curve_key(Draft((1, 2), SUFFIX, 1.0)) == (SUFFIX, 0)
    assert curve_key(Draft((1,), DRAFTER, 1.0)) == (DRAFTER, 0)
    assert curve_key(Draft((1,), DRAFTER, 1.0, None, torch.ones(1, 3) / 3)) == (DRAFTER, 1)
    assert [suffix_bucket(n) for n in (0, 1, 2, 3, 4, 7, 8, 63, 64, 10**6)] == [
        0, 1, 2, 2, 3, 3, 4, 6, 7, 7,
    ]  # fmt: skip


def test_a_truncated_suffix_draft_keeps_its_match_length():
    assert Draft((1, 2, 3), SUFFIX, 2.0, match_len=12).truncated(1).match_len == 12


def test_bad_feedback_changes_nothing():
    curves = AcceptanceCurves(3)
    with pytest.raises(ValueError, match="num_accepted"):
        curves.record((SUFFIX, 1), 2, 3)
    with pytest.raises(ValueError, match="bucket"):
        curves.record((SUFFIX, None), 2, 1)
    assert curves.survival((SUFFIX, 1)) == (0.5, 0.25, 0.125)
    assert curves.survival((SUFFIX, None)) == (0.5, 0.25, 0.125)


def test_suffix_drafts_carry_the_match_length_they_were_drafted_on():
    from arctic_runtime import ProposeRequest, SuffixProposer

    proposer = SuffixProposer(max_spec_tokens=4)
    proposer.start_request("r", [5, 6, 7, 8, 9, 5, 6, 7, 8, 9, 5, 6, 7])
    [draft] = proposer.propose([ProposeRequest("r", 4, 7)])
    assert draft is not None and draft.token_ids == (8, 9, 5, 6)
    assert draft.match_len >= 3 and curve_key(draft) == (SUFFIX, suffix_bucket(draft.match_len))
