"""LinearCostFit and StepTimer: the step-cost fit, timed with an injected clock."""

from __future__ import annotations

import random

import pytest

from arctic_runtime import LinearCostFit, StepTimer


def _fit(**kw) -> LinearCostFit:
    kw.setdefault("warmup_samples", 4)
    return LinearCostFit(**kw)


def test_recovers_intercept_and_slope_from_exact_samples():
    fit = _fit(ridge=1e-9)
    for x in [8, 40, 12, 100, 33, 64, 9, 17]:
        fit.record(x, 0.02 + 0.0005 * x)
    assert fit.ready and fit.num_samples == 8
    assert fit.intercept == pytest.approx(0.02, rel=1e-6)
    assert fit.slope == pytest.approx(0.0005, rel=1e-6)
    assert fit.predict(200) == pytest.approx(0.12, rel=1e-6)


def test_noisy_samples_average_out():
    rng = random.Random(0)
    fit = _fit(forgetting=0.999)
    for _ in range(2000):
        x = rng.randint(8, 200)
        fit.record(x, (0.02 + 0.0005 * x) * rng.uniform(0.9, 1.1))
    assert fit.slope == pytest.approx(0.0005, rel=0.05)
    assert fit.intercept == pytest.approx(0.02, rel=0.1)


def test_forgetting_follows_a_changed_engine():
    fit = _fit(forgetting=0.95, ridge=1e-9)
    for i in range(200):
        x = 10 + i % 30
        fit.record(x, 0.01 + 0.001 * x)
    for i in range(300):  # the batch grew compute-bound: tokens cost 5x
        x = 10 + i % 30
        fit.record(x, 0.01 + 0.005 * x)
    assert fit.slope == pytest.approx(0.005, rel=1e-3)


def test_one_token_count_forever_leaves_the_slope_at_its_prior_not_undefined():
    fit = _fit(forgetting=0.9, prior_slope=0.001)
    for _ in range(500):
        fit.record(32, 0.064)
    assert fit.slope == pytest.approx(0.001)
    assert fit.predict(32) == pytest.approx(0.064)  # the intercept takes the rest


def test_the_default_prior_charges_every_token_its_share_of_the_step():
    fit = _fit(forgetting=0.9)
    for _ in range(50):
        fit.record(32, 0.064)
    assert fit.slope == pytest.approx(0.002) and fit.intercept == pytest.approx(0.0)
    for x in [8, 64] * 50:  # with spread the data decide
        fit.record(x, 0.05 + 0.0001 * x)
    assert fit.slope == pytest.approx(0.0001, rel=0.01)


def test_no_evidence_reads_as_the_prior():
    fit = _fit(prior_slope=0.002)
    assert not fit.ready and fit.slope == 0.002 and fit.intercept == 0.0
    assert _fit().slope == 0.0


def test_an_idle_gap_is_clipped_not_taken_for_a_step():
    fit = _fit(ridge=1e-9)
    for x in [10, 20, 30, 40]:
        fit.record(x, 0.01 * x)
    fit.record(25, 100.0)  # the engine waited for requests
    assert fit.predict(25) < 0.5


def test_an_idle_gap_during_warmup_is_clipped_to_the_median():
    fit = _fit(ridge=1e-9, warmup_samples=5)
    for seconds in [0.01, 50.0, 0.01, 0.01]:
        fit.record(10, seconds)
    assert not fit.ready
    fit.record(10, 0.01)
    assert fit.ready and fit.predict(10) < 0.05  # 50 s entered as 4 x the median


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"forgetting": 0.0}, "forgetting"),
        ({"ridge": 0.0}, "ridge"),
        ({"prior_slope": -1.0}, "prior_slope"),
        ({"outlier_factor": 1.0}, "outlier_factor"),
        ({"warmup_samples": 0}, "warmup_samples"),
    ],
)
def test_bad_settings_are_refused_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LinearCostFit(**kwargs)


def test_a_bad_sample_changes_nothing():
    fit = _fit()
    with pytest.raises(ValueError, match="seconds must be >= 0"):
        fit.record(3, -1.0)
    with pytest.raises(ValueError, match="x must be >= 0"):
        fit.record(-3, 1.0)
    assert fit.num_samples == 0


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_timer_measures_each_step_less_the_drafting_before_it():
    clock = _Clock()
    steps, drafts = _fit(ridge=1e-9), _fit(ridge=1e-9)
    timer = StepTimer(steps, drafts, clock)
    timer.begin_step(5)  # the first call: nothing before it to measure
    tokens = [12, 30, 7, 50, 21]
    for i, n in enumerate(tokens):
        started = timer.start_drafting()
        clock.now += 0.001 * (i + 1)  # drafting for i + 1 requests
        timer.end_drafting(started, i + 1)
        clock.now += 0.02 + 0.001 * n  # the engine's step that scheduled n tokens
        timer.begin_step(n)
    assert steps.num_samples == 5 and drafts.num_samples == 5
    assert steps.intercept == pytest.approx(0.02, rel=1e-6)
    assert steps.slope == pytest.approx(0.001, rel=1e-6)
    assert drafts.slope == pytest.approx(0.001, rel=1e-6)
    assert drafts.intercept == pytest.approx(0.0, abs=1e-9)
