"""Our counters cross from the engine's process to the one serving /metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from arctic_vllm.metrics import ArcticMetrics
from arctic_vllm.metrics_export import (
    METRICS_DIR_ENV,
    OtherProcessesCollector,
    SnapshotWriter,
    read_snapshots,
    snapshot_of,
    write_snapshot,
)


def test_collector_sums_other_processes_and_skips_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv(METRICS_DIR_ENV, str(tmp_path))
    write_snapshot(tmp_path, {"sources": {"suffix": {"drafts": 2, "draft_tokens": 9,
                   "accepted_tokens": 5}}, "failures": 1}, "worker-111-0")  # fmt: skip
    write_snapshot(tmp_path, {"sources": {"suffix": {"drafts": 1, "draft_tokens": 3,
                   "accepted_tokens": 1}, "drafter": {"drafts": 4, "draft_tokens": 12,
                   "accepted_tokens": 6}}, "failures": 0}, "worker-222-0")  # fmt: skip
    # This process's own snapshot is already in its registry: never counted twice.
    write_snapshot(tmp_path, {"sources": {"suffix": {"drafts": 100, "draft_tokens": 100,
                   "accepted_tokens": 100}}, "failures": 7}, f"worker-{os.getpid()}-0")  # fmt: skip
    (tmp_path / "worker-333-0.json").write_text("{not json")  # half-written by a dead process
    registry = CollectorRegistry()
    registry.register(OtherProcessesCollector())
    get = registry.get_sample_value
    assert get("vllm:arctic_spec_decode_num_drafts_total", {"source": "suffix"}) == 3
    assert get("vllm:arctic_spec_decode_num_draft_tokens_total", {"source": "suffix"}) == 12
    assert get("vllm:arctic_spec_decode_num_accepted_tokens_total", {"source": "drafter"}) == 6
    assert get("vllm:arctic_spec_decode_proposer_failures_total") == 1
    assert b"vllm:arctic_spec_decode_num_accepted_tokens_total" in generate_latest(registry)


def test_planner_counters_are_summed_where_a_planner_ran(tmp_path, monkeypatch):
    monkeypatch.setenv(METRICS_DIR_ENV, str(tmp_path))
    empty = {"sources": {}, "failures": 0}
    write_snapshot(tmp_path, {**empty, "planner": {"steps": 5, "zero_steps": 2}}, "worker-111-0")
    write_snapshot(tmp_path, {**empty, "planner": {"steps": 7, "probes": 1}}, "worker-222-0")
    write_snapshot(tmp_path, empty, "worker-333-0")  # cost_aware off there (or an old writer)
    registry = CollectorRegistry()
    registry.register(OtherProcessesCollector())
    get = registry.get_sample_value
    assert get("vllm:arctic_spec_decode_planner_steps_total") == 12
    assert get("vllm:arctic_spec_decode_planner_zero_steps_total") == 2
    assert get("vllm:arctic_spec_decode_planner_probes_total") == 1
    assert get("vllm:arctic_spec_decode_planner_cap_tokens_total") is None  # never counted


def test_planner_counters_grow_by_what_the_planner_counted():
    from prometheus_client import REGISTRY

    name = "vllm:arctic_spec_decode_planner_allowed_tokens_total"
    metrics = ArcticMetrics()
    before = REGISTRY.get_sample_value(name) or 0.0
    metrics.planned({"steps": 1, "allowed_tokens": 5})
    metrics.planned({"steps": 2, "allowed_tokens": 12})
    assert REGISTRY.get_sample_value(name) - before == 12
    assert snapshot_of(metrics)["planner"] == {"steps": 2, "allowed_tokens": 12}


def test_no_directory_no_samples(monkeypatch):
    monkeypatch.delenv(METRICS_DIR_ENV, raising=False)
    assert list(OtherProcessesCollector().collect()) == []


def test_writer_snapshots_changes_and_ends_with_its_metrics(tmp_path, monkeypatch):
    monkeypatch.delenv(METRICS_DIR_ENV, raising=False)
    metrics = ArcticMetrics()
    assert metrics.exporter is None  # no directory named: nothing exported
    metrics.record("r", "suffix", 4, 3)
    writer = SnapshotWriter(metrics, tmp_path, interval_s=3600)
    assert writer.flush()
    [snap] = read_snapshots(tmp_path)
    assert snap == snapshot_of(metrics)
    assert snap["sources"]["suffix"] == {"drafts": 1, "draft_tokens": 4, "accepted_tokens": 3}
    del metrics
    import gc

    gc.collect()
    assert writer.flush() is False
    writer.close()


def test_a_child_process_inherits_the_directory_and_its_counts_reach_the_parent(
    tmp_path, monkeypatch
):
    """What `vllm serve` does: the API server loads the plugin first, the engine process
    it starts inherits ARCTIC_VLLM_METRICS_DIR, records, and the parent's registry shows it."""
    monkeypatch.setenv(METRICS_DIR_ENV, str(tmp_path))
    child = (
        "from arctic_vllm.metrics import ArcticMetrics\n"
        "m = ArcticMetrics()\n"
        "m.record('r', 'suffix', 5, 4)\n"
        "m.failure()\n"
        "m.exporter.flush()\n"
    )
    subprocess.run([sys.executable, "-c", child], check=True, env=dict(os.environ), timeout=120)
    registry = CollectorRegistry()
    registry.register(OtherProcessesCollector())
    get = registry.get_sample_value
    assert get("vllm:arctic_spec_decode_num_accepted_tokens_total", {"source": "suffix"}) == 4
    assert get("vllm:arctic_spec_decode_proposer_failures_total") == 1
    files = list(tmp_path.glob("worker-*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["failures"] == 1


def test_share_across_processes_names_a_directory_once(monkeypatch):
    from arctic_vllm import metrics_export

    monkeypatch.delenv(METRICS_DIR_ENV, raising=False)
    monkeypatch.setattr(metrics_export, "_owned_dir", None)
    metrics_export.share_across_processes()
    first = os.environ[METRICS_DIR_ENV]
    assert os.path.isdir(first)
    metrics_export.share_across_processes()
    assert os.environ[METRICS_DIR_ENV] == first
    metrics_export._owned_dir.cleanup()  # made by this test: removed by it
    assert not os.path.exists(first)


@pytest.mark.parametrize("bad", ["missing"])
def test_a_vanished_directory_stops_nothing(tmp_path, monkeypatch, bad):
    monkeypatch.setenv(METRICS_DIR_ENV, str(tmp_path / bad))
    assert list(OtherProcessesCollector().collect()) == []
