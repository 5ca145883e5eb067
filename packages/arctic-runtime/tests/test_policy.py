from __future__ import annotations

import pytest

from arctic_runtime.acceptance import AcceptanceTracker
from arctic_runtime.policy import SpeculationPolicy


def test_batch_caps_taper_then_stop():
    p = SpeculationPolicy(8, soft_batch_cap=4, hard_batch_cap=12)
    assert [p.batch_tokens(b) for b in (1, 4, 5, 8, 11, 12, 64)] == [8, 8, 7, 4, 1, 0, 0]
    assert SpeculationPolicy(8).batch_tokens(1000) == 8
    assert SpeculationPolicy(8, hard_batch_cap=3).batch_tokens(3) == 0


def test_per_request_control():
    p = SpeculationPolicy(6)
    p.set_request("off", enabled=False)
    p.set_request("capped", max_tokens=2)
    assert p.plan(3, ["off", "capped", "plain"]) == {"off": 0, "capped": 2, "plain": 6}
    p.forget("off")
    assert p.plan(3, ["off"]) == {"off": 6}


def test_low_acceptance_backs_off_then_probes_with_doubling():
    p = SpeculationPolicy(4, backoff_initial_steps=3)
    allowed = []
    for _ in range(40):
        k = p.plan(1, ["r"])["r"]
        allowed.append(k)
        if k:
            p.record("r", k, 0)
    # 4 rejected drafts, a pause of 3, a probe, a pause of 6, a probe, a pause of 12...
    assert allowed[:4] == [4, 4, 4, 4]
    assert allowed[4:7] == [0, 0, 0] and allowed[7] == 4
    assert allowed[8:14] == [0] * 6 and allowed[14] == 4
    assert allowed[15:27] == [0] * 12 and allowed[27] == 4


def test_good_probe_resumes_speculation():
    p = SpeculationPolicy(4, backoff_initial_steps=2)
    for _ in range(4):
        p.plan(1, ["r"])
        p.record("r", 4, 0)
    assert p.is_paused("r")
    while p.plan(1, ["r"])["r"] == 0:
        pass
    p.record("r", 4, 4)
    assert all(p.plan(1, ["r"])["r"] == 4 for _ in range(10))


def test_policy_rejects_bad_values():
    with pytest.raises(ValueError, match="num_speculative_tokens"):
        SpeculationPolicy(0)
    with pytest.raises(ValueError, match="hard_batch_cap=2 must be >= soft_batch_cap=4"):
        SpeculationPolicy(4, soft_batch_cap=4, hard_batch_cap=2)
    p = SpeculationPolicy(4)
    with pytest.raises(ValueError, match="num_accepted"):
        p.record("r", 2, 3)
    with pytest.raises(ValueError, match="max speculative tokens"):
        p.set_request("r", max_tokens=-1)


def test_acceptance_tracker_expected_length():
    t = AcceptanceTracker(3, decay=1.0, prior_weight=1e-9)
    for _ in range(10):
        t.record(3, 3)
        t.record(3, 1)
    # position 0: 20/20, position 1: 10/20 reached-and-accepted, position 2: 10/10.
    rates = t.rates()
    assert rates == pytest.approx([1.0, 0.5, 1.0])
    assert t.expected_accepted(3) == pytest.approx(1.0 + 0.5 + 0.5)
    with pytest.raises(ValueError, match="num_accepted"):
        t.record(2, 3)
