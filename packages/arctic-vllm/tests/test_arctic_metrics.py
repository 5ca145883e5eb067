"""Per-source and per-request speculation counts, and their Prometheus counters."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from arctic_vllm.metrics import ArcticMetrics


def sample(name: str, source: str | None = None) -> float:
    labels = {} if source is None else {"source": source}
    return REGISTRY.get_sample_value(f"{name}_total", labels) or 0.0


def test_counts_per_source_and_per_request():
    metrics = ArcticMetrics()
    metrics.record("r1", "suffix", 4, 2)
    metrics.record("r1", "drafter", 3, 1)
    metrics.record("r2", "suffix", 2, 2)

    suffix, drafter = metrics.sources["suffix"], metrics.sources["drafter"]
    assert (suffix.drafts, suffix.draft_tokens, suffix.accepted_tokens) == (2, 6, 4)
    assert suffix.acceptance_rate == pytest.approx(4 / 6)
    assert (drafter.drafts, drafter.draft_tokens, drafter.accepted_tokens) == (1, 3, 1)

    r1 = metrics.requests["r1"]
    assert (r1.drafts, r1.draft_tokens, r1.accepted_tokens) == (2, 7, 3)
    assert r1.by_source == {"suffix": 2, "drafter": 1}
    assert r1.mean_acceptance_length == pytest.approx(1 + 3 / 2)
    assert metrics.requests["r2"].by_source == {"suffix": 2}


def test_finish_moves_the_summary_to_finished():
    metrics = ArcticMetrics(keep_summaries=2)
    for req_id in ("a", "b", "c"):
        metrics.record(req_id, "suffix", 3, 1)
    summary = metrics.finish("a")
    assert summary is not None and summary.req_id == "a" and summary.accepted_tokens == 1
    assert "a" not in metrics.requests
    assert list(metrics.finished) == [summary]
    assert metrics.finish("a") is None  # finishing twice (or an unknown id) records nothing
    assert metrics.finish("never-drafted") is None
    metrics.finish("b")
    metrics.finish("c")
    assert [s.req_id for s in metrics.finished] == ["b", "c"]  # bounded: oldest dropped


def test_a_request_without_drafts_has_acceptance_length_one():
    metrics = ArcticMetrics()
    metrics.record("r", "drafter", 0, 0)
    assert metrics.requests["r"].mean_acceptance_length == 1.0
    assert metrics.sources["drafter"].acceptance_rate == 0.0


def test_prometheus_counters_increase_by_source():
    source = "test-prometheus-source"  # a label no other test touches: deltas are exact
    names = (
        "vllm:arctic_spec_decode_num_drafts",
        "vllm:arctic_spec_decode_num_draft_tokens",
        "vllm:arctic_spec_decode_num_accepted_tokens",
    )
    before = [sample(name, source) for name in names]
    ArcticMetrics().record("r1", source, 5, 3)
    ArcticMetrics().record("r2", source, 2, 0)  # a second instance shares the counters
    after = [sample(name, source) for name in names]
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 7, 3]


def test_failures_are_counted():
    metrics = ArcticMetrics()
    before = sample("vllm:arctic_spec_decode_proposer_failures")
    metrics.failure()
    metrics.failure()
    assert metrics.proposer_failures == 2
    assert sample("vllm:arctic_spec_decode_proposer_failures") - before == 2


def test_periodic_log_line_reports_each_source(arctic_log):
    metrics = ArcticMetrics(log_interval_s=0.0)
    metrics.maybe_log()  # nothing recorded yet: no line
    metrics.record("r", "suffix", 4, 3)
    metrics.maybe_log()
    lines = [r.getMessage() for r in arctic_log.records if r.name == "vllm.arctic"]
    assert lines == [
        "arctic speculation: suffix: 1 drafts, 3/4 accepted (75.0%); proposer failures: 0"
    ]


def test_counters_survive_vllms_unregistering_of_vllm_metrics():
    """vLLM's stat logger unregisters every "vllm:*" collector when an engine starts; ours
    come back with their counts on the next record."""
    from vllm.v1.metrics.prometheus import unregister_vllm_metrics

    source = "test-unregister-source"
    ArcticMetrics().record("r", source, 3, 2)
    unregister_vllm_metrics()
    assert (
        REGISTRY.get_sample_value(
            "vllm:arctic_spec_decode_num_draft_tokens_total", {"source": source}
        )
        is None
    )
    ArcticMetrics().record("r", source, 4, 1)
    assert sample("vllm:arctic_spec_decode_num_draft_tokens", source) == 7
    assert sample("vllm:arctic_spec_decode_num_accepted_tokens", source) == 3
