from __future__ import annotations

import pytest
import torch

from arctic_drafters import MLPSpeculatorConfig, build_speculator
from arctic_runtime.draft import DRAFTER, SUFFIX, Draft
from arctic_runtime.drafter_proposer import DrafterProposer
from arctic_runtime.hybrid import HybridProposer
from arctic_runtime.proposer import ProposeRequest
from arctic_runtime.suffix_proposer import SuffixProposer


def _hybrid(**kw: object) -> HybridProposer:
    """drafter_cost 0 unless given: the choice by expected length alone, timing-free."""
    torch.manual_seed(0)
    spec = build_speculator(MLPSpeculatorConfig(61, 20, 12)).eval()
    kw.setdefault("drafter_cost", 0.0)
    return HybridProposer(SuffixProposer(max_spec_tokens=8), DrafterProposer(spec), **kw)  # type: ignore[arg-type]


def _req(req_id: str, last: int) -> ProposeRequest:
    return ProposeRequest(req_id, max_tokens=3, last_token=last, hidden_state=torch.randn(20))


def test_hybrid_picks_per_request_by_expected_length():
    h = _hybrid()
    h.start_request("copying", [5, 6, 7, 8, 9, 5, 6, 7, 8, 9, 5, 6])
    h.start_request("fresh", [1, 2, 3, 4])
    drafts = h.propose([_req("copying", 6), _req("fresh", 4)])
    # A long exact repeat: suffix score ~3 beats the drafter's prior; no match -> drafter.
    assert drafts[0] is not None and drafts[0].source == SUFFIX
    assert drafts[0].token_ids == (7, 8, 9)
    assert drafts[1] is not None and drafts[1].source == DRAFTER
    assert h.wins == {SUFFIX: 1, DRAFTER: 1}


def test_hybrid_prefers_the_drafter_once_suffix_drafts_fail():
    h = _hybrid()
    h.start_request("r", [5, 6, 7, 5, 6, 7, 5, 6])
    # Suffix drafts scored ~3 keep being rejected; the drafter keeps being fully accepted.
    for _ in range(60):
        h.record("r", Draft.path([7, 5, 6], SUFFIX, 3.0), 0)
        h.record("r", Draft.path([1, 2, 3], DRAFTER, 1.0), 3)
    assert h.suffix_calibration < 0.1
    [d] = h.propose([_req("r", 6)])
    assert d is not None and d.source == DRAFTER


def test_hybrid_lifecycle_reaches_both():
    h = _hybrid()
    h.start_request("r", [1, 2, 3])
    h.accept_tokens("r", [1, 2])
    h.stop_request("r")
    assert "r" not in h.drafter._per_request
    assert "r" in h.suffix.cache.cached_requests


def test_suffix_calibration_recovers_from_drafts_it_did_not_send():
    h = _hybrid()
    h.start_request("r", [5, 6, 7, 8, 5, 6, 7, 8, 5, 6])
    for _ in range(60):  # suffix drafts failed for a while: calibration collapses
        h.record("r", Draft.path([7, 8, 5], SUFFIX, 3.0), 0)
    low = h.suffix_calibration
    assert low < 0.1
    # Now the drafter is chosen, but the target produces exactly what suffix would have
    # drafted: the losing suffix drafts are scored against it and calibration rises.
    for _ in range(30):
        [d] = h.propose([_req("r", 6)])
        assert d is not None
        shadow = h._shadow.get("r")
        produced = list(shadow.token_ids if shadow is not None else d.token_ids)
        h.record("r", d, 0)
        h.accept_tokens("r", produced)
    assert h.suffix_calibration > 5 * low


def test_the_drafter_runs_only_when_its_gain_pays_for_its_time():
    # One request, no suffix match: the drafter's prior expects e tokens (gain e over a
    # step of 1 token). It runs iff e > cost * 1.
    e = _hybrid().drafter.expected_accepted("fresh", 3)
    assert 0.1 < e < 3
    for cost, runs in ((0.0, True), (0.9 * e, True), (1.1 * e, False)):
        h = _hybrid(drafter_cost=cost)
        h.start_request("fresh", [1, 2, 3, 4])
        [d] = h.propose([_req("fresh", 4)])
        assert (d is not None and d.source == DRAFTER) == runs, cost
        assert h.drafter_skipped == (0 if runs else 1)
    with pytest.raises(ValueError, match="drafter_cost must be >= 0 or None"):
        _hybrid(drafter_cost=-0.5)
    with pytest.raises(ValueError, match="probe_every must be an int >= 1, got 0"):
        _hybrid(probe_every=0)


def test_a_skipped_drafter_is_probed_every_probe_every_steps():
    """Its estimates only move when it runs: a drafter that never pays is still run once
    per probe_every skipped steps, so a wrong estimate cannot keep it out for good."""
    e = _hybrid().drafter.expected_accepted("fresh", 3)
    h = _hybrid(drafter_cost=1.1 * e, probe_every=4)
    h.start_request("fresh", [1, 2, 3, 4])
    sources = []
    for _ in range(12):
        [d] = h.propose([_req("fresh", 4)])
        sources.append(None if d is None else d.source)
    assert sources == [None, None, None, DRAFTER] * 3
    assert (h.drafter_skipped, h.drafter_probes) == (12, 3)


def test_one_slow_drafter_call_does_not_set_its_cost():
    """The cost is the median of the last calls: a first call that took 100 steps (a lazy
    initialisation, say) is outvoted by the next two (probes: it is skipped in between)."""
    now = [0.0]
    h = _hybrid(drafter_cost=None, clock=lambda: now[0], probe_every=2)
    real = h.drafter.propose
    durations = iter([1000.0] + [2.0] * 10)

    def drafter(batch):  # type: ignore[no-untyped-def]
        now[0] += next(durations)
        return real(batch)

    h.drafter.propose = drafter  # type: ignore[method-assign]
    h.start_request("fresh", [1, 2, 3, 4])
    costs = []
    for _ in range(6):
        h.propose([_req("fresh", 4)])
        now[0] += 10.0
        costs.append(h.drafter_cost)
    assert costs[0] == 0.0  # no step measured yet
    assert costs[1] > 10  # the slow call, alone
    assert costs[-1] == pytest.approx(0.2)
    assert h.drafter_probes == 2


def test_the_drafters_cost_is_measured_against_the_step():
    now = [0.0]

    def clock() -> float:
        return now[0]

    h = _hybrid(drafter_cost=None, clock=clock)
    real = h.drafter.propose

    def slow_drafter(batch):  # type: ignore[no-untyped-def]
        now[0] += 2.0  # the drafter takes 2 time units
        return real(batch)

    h.drafter.propose = slow_drafter  # type: ignore[method-assign]
    h.start_request("fresh", [1, 2, 3, 4])
    assert h.drafter_cost == 0.0  # nothing measured yet: the drafter gets its chance
    for _ in range(50):
        h.propose([_req("fresh", 4)])
        now[0] += 10.0  # the rest of the step: 10 units
    assert h.drafter_cost == pytest.approx(0.2, rel=0.05)


def _reproducible(req_id: str, last: int) -> ProposeRequest:
    return ProposeRequest(req_id, 3, last, torch.randn(20), reproducible=True)


@pytest.mark.parametrize("cost", [0.0, 1e9])
def test_reproducible_requests_ignore_shared_and_timed_state(cost):
    """A seeded sampled request's drafts must not depend on other requests or on time:
    the same decision whatever the calibration, the drafter's cost or its global record."""
    decisions = []
    for history in ("none", "suffix failed", "drafter failed"):
        h = _hybrid(drafter_cost=cost)
        h.start_request("copying", [5, 6, 7, 8, 9, 5, 6, 7, 8, 9, 5, 6])
        h.start_request("fresh", [1, 2, 3, 4])
        for _ in range(60):  # other requests' outcomes move the shared estimates
            if history == "suffix failed":
                h.record("other", Draft.path([7, 5, 6], SUFFIX, 3.0), 0)
            elif history == "drafter failed":
                h.record("other", Draft.path([1, 2, 3], DRAFTER, 1.0), 0)
        drafts = h.propose([_reproducible("copying", 6), _reproducible("fresh", 4)])
        decisions.append([None if d is None else (d.source, d.token_ids) for d in drafts])
    assert decisions[0] == decisions[1] == decisions[2]
    (source_copying, tokens), (source_fresh, _) = decisions[0]
    assert (source_copying, tokens) == (SUFFIX, (7, 8, 9))  # score 3 >= 3 drafter tokens
    assert source_fresh == DRAFTER  # no suffix match: the drafter, even at cost 1e9
