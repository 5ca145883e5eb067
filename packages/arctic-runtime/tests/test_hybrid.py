from __future__ import annotations

import torch

from arctic_drafters import MLPSpeculatorConfig, build_speculator
from arctic_runtime.draft import DRAFTER, SUFFIX, Draft
from arctic_runtime.drafter_proposer import DrafterProposer
from arctic_runtime.hybrid import HybridProposer
from arctic_runtime.proposer import ProposeRequest
from arctic_runtime.suffix_proposer import SuffixProposer


def _hybrid() -> HybridProposer:
    torch.manual_seed(0)
    spec = build_speculator(MLPSpeculatorConfig(61, 20, 12)).eval()
    return HybridProposer(SuffixProposer(max_spec_tokens=8), DrafterProposer(spec))


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
