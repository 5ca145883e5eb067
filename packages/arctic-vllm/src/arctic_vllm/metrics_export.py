"""Our counters on the OpenAI server's /metrics, although they count in another process.

Behind `vllm serve` the proposer runs in the engine core's process, while /metrics is
served from the API server's Prometheus registry: counters registered in the worker are
never seen there. vLLM ships its own numbers across through its stats messages, which a
plugin cannot extend. So, like prometheus_client's multiprocess mode but for our counters
only:

- the first process that loads the plugin (the API server, or the script building an
  `LLM`) makes a scratch directory and names it in ``ARCTIC_VLLM_METRICS_DIR``; the engine
  processes it starts inherit the variable;
- each worker's `ArcticMetrics` is snapshotted there (one small JSON file per process,
  replaced atomically, by a daemon thread at most every ``interval_s`` while it changed);
- a collector in every plugin process sums the other processes' snapshots at scrape time
  and exposes them under the same names as the worker's own counters. Its own process's
  counters are already in its registry, so they are never counted twice.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import tempfile
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger("vllm.arctic")

METRICS_DIR_ENV = "ARCTIC_VLLM_METRICS_DIR"
_PREFIX = "vllm:arctic_spec_decode_"
SOURCE_COUNTERS = {  # snapshot field -> (counter name, help)
    "drafts": (f"{_PREFIX}num_drafts", "Drafts proposed, by source."),
    "draft_tokens": (f"{_PREFIX}num_draft_tokens", "Draft tokens verified, by source."),
    "accepted_tokens": (f"{_PREFIX}num_accepted_tokens", "Draft tokens accepted, by source."),
}
FAILURES = (
    f"{_PREFIX}proposer_failures",
    "Steps run without speculation because the proposer raised.",
)
# arctic-runtime's PlannerCounters (option cost_aware): snapshot field -> (name, help).
PLANNER_COUNTERS = {
    "steps": (f"{_PREFIX}planner_steps", "Steps whose draft lengths the planner chose."),
    "warmup_steps": (f"{_PREFIX}planner_warmup_steps", "Of those, planned as the caps: no cost fit yet."),
    "zero_steps": (f"{_PREFIX}planner_zero_steps", "Steps where no request drafted although one could."),
    "requests": (f"{_PREFIX}planner_requests", "Requests planned with a draft cap > 0."),
    "zero_requests": (f"{_PREFIX}planner_zero_requests", "Of those, given no draft (zero-length decisions)."),
    "cap_tokens": (f"{_PREFIX}planner_cap_tokens", "Draft tokens the caps allowed."),
    "allowed_tokens": (f"{_PREFIX}planner_allowed_tokens", "Draft tokens the planner allowed."),
    "probes": (f"{_PREFIX}planner_probes", "Drafts lengthened for evidence (probes)."),
}  # fmt: skip

_owned_dir: tempfile.TemporaryDirectory[str] | None = None
_collector: Any = None


def metrics_dir() -> Path | None:
    value = os.environ.get(METRICS_DIR_ENV)
    return Path(value) if value else None


def share_across_processes() -> None:
    """Called by `register()` in every plugin process: name the directory (first process
    only) and register the collector (once per process)."""
    global _owned_dir, _collector
    if metrics_dir() is None:
        _owned_dir = tempfile.TemporaryDirectory(prefix="arctic-vllm-metrics-")
        os.environ[METRICS_DIR_ENV] = _owned_dir.name
    if _collector is None:
        from prometheus_client import REGISTRY

        _collector = OtherProcessesCollector()
        # vLLM's unregister_vllm_metrics() removes collectors whose `_name` starts with
        # "vllm:"; this one has no `_name` and declares no names (describe() is empty), so it
        # stays registered and never clashes with the worker's own counters.
        REGISTRY.register(_collector)


def snapshot_of(metrics: Any) -> dict[str, Any]:
    return {
        "sources": {
            name: {field: int(getattr(counts, field)) for field in SOURCE_COUNTERS}
            for name, counts in list(metrics.sources.items())
        },
        "failures": int(metrics.proposer_failures),
        "planner": dict(metrics.planner),
    }


def write_snapshot(directory: Path, snapshot: dict[str, Any], name: str) -> None:
    """``name``: ``worker-<pid>-<n>``, one per ArcticMetrics (one per engine)."""
    scratch = directory / f".{name}.json.tmp"
    scratch.write_text(json.dumps(snapshot))
    os.replace(scratch, directory / f"{name}.json")  # readers see the old or the new, whole


def read_snapshots(directory: Path, skip_pid: int | None = None) -> list[dict[str, Any]]:
    snapshots = []
    for path in sorted(directory.glob("worker-*.json")):
        if skip_pid is not None and path.stem.startswith(f"worker-{skip_pid}-"):
            continue
        try:
            snapshots.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # a worker's file vanished (its directory went away): skip it
    return snapshots


class OtherProcessesCollector:
    """A Prometheus collector: the sum of every other process's snapshot."""

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        directory = metrics_dir()
        if directory is None or not directory.is_dir():
            return
        snapshots = read_snapshots(directory, skip_pid=os.getpid())
        if not snapshots:
            return
        totals: dict[str, dict[str, int]] = {}
        failures = 0
        planner: dict[str, int] = {}
        for snap in snapshots:
            failures += int(snap.get("failures", 0))
            for field, value in snap.get("planner", {}).items():
                if field in PLANNER_COUNTERS:
                    planner[field] = planner.get(field, 0) + int(value)
            for source, counts in snap.get("sources", {}).items():
                into = totals.setdefault(source, dict.fromkeys(SOURCE_COUNTERS, 0))
                for field in SOURCE_COUNTERS:
                    into[field] += int(counts.get(field, 0))
        for field, (name, help_text) in SOURCE_COUNTERS.items():
            family = CounterMetricFamily(name, help_text, labels=["source"])
            for source, counts in sorted(totals.items()):
                family.add_metric([source], counts[field])
            yield family
        yield CounterMetricFamily(FAILURES[0], FAILURES[1], value=failures)
        for field, value in sorted(planner.items()):  # only where a planner ran
            yield CounterMetricFamily(*PLANNER_COUNTERS[field], value=value)


class SnapshotWriter:
    """Writes one ArcticMetrics' counters to the shared directory while they change, from a
    daemon thread that ends with the metrics object (it holds only a weak reference)."""

    _count = itertools.count()

    def __init__(self, metrics: Any, directory: Path, interval_s: float = 0.5) -> None:
        self._metrics = weakref.ref(metrics)
        self._directory = directory
        self._interval = interval_s
        self.name = f"worker-{os.getpid()}-{next(self._count)}"
        self._last: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="arctic-metrics", daemon=True)
        self._thread.start()

    def flush(self) -> bool:
        """Write the snapshot if it changed; False once the metrics object is gone."""
        metrics = self._metrics()
        if metrics is None:
            return False
        snapshot = snapshot_of(metrics)
        del metrics
        if snapshot != self._last and self._directory.is_dir():
            write_snapshot(self._directory, snapshot, self.name)
            self._last = snapshot
        return True

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                if not self.flush():
                    return
            except OSError as exc:  # the directory went away with the server: stop quietly
                logger.debug("arctic: metrics snapshot not written: %s", exc)
                return

    def close(self) -> None:
        self._stop.set()
