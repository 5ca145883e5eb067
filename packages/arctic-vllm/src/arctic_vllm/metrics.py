"""Which source drafted what, and how much of it was accepted.

vLLM's own spec-decode counters (vllm:spec_decode_*) keep counting every draft. These add
the split by source (suffix / drafter), proposer failures, and a per-request summary, as
Prometheus counters in vLLM's naming (`vllm:` prefix, `_total` suffix added by the client)
and as a periodic log line like vLLM's "SpecDecoding metrics".
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from arctic_runtime import DraftCounts

from .metrics_export import (
    FAILURES,
    PLANNER_COUNTERS,
    SOURCE_COUNTERS,
    SnapshotWriter,
    metrics_dir,
)

logger = logging.getLogger("vllm.arctic")

_PROM: dict[str, Any] = {}


def _prometheus() -> dict[str, Any]:
    """The process's counters, created once (a second engine in one process reuses them).

    vLLM's Prometheus stat logger unregisters every "vllm:*" collector when it starts
    (`unregister_vllm_metrics`), so counters made before it (or for an earlier engine in
    this process) would count on unseen: they are registered again here when missing.
    """
    from prometheus_client import REGISTRY

    if not _PROM:
        from prometheus_client import Counter

        for key, field in (("drafts", "drafts"), ("draft_tokens", "draft_tokens"),
                           ("accepted", "accepted_tokens")):  # fmt: skip
            name, help_text = SOURCE_COUNTERS[field]
            _PROM[key] = Counter(name, help_text, ["source"])
        _PROM["failures"] = Counter(*FAILURES)
        for key, (name, help_text) in PLANNER_COUNTERS.items():
            _PROM[f"planner.{key}"] = Counter(name, help_text)
    for counter in _PROM.values():
        if counter not in REGISTRY._collector_to_names:  # same check as vLLM's unregister
            REGISTRY.register(counter)
    return _PROM


# One source's counts are arctic-runtime's shared counter; the name stays for its readers.
SourceCounts = DraftCounts


@dataclass
class RequestSummary:
    """One request's drafts, whatever their source."""

    req_id: str
    counts: DraftCounts = field(default_factory=DraftCounts)
    by_source: dict[str, int] = field(default_factory=dict)  # accepted tokens per source

    @property
    def drafts(self) -> int:
        return self.counts.drafts

    @property
    def draft_tokens(self) -> int:
        return self.counts.draft_tokens

    @property
    def accepted_tokens(self) -> int:
        return self.counts.accepted_tokens

    @property
    def acceptance_rate(self) -> float:
        return self.counts.acceptance_rate

    @property
    def mean_acceptance_length(self) -> float:
        return self.counts.mean_acceptance_length


class ArcticMetrics:
    def __init__(self, log_interval_s: float = 10.0, keep_summaries: int = 1000) -> None:
        self.sources: dict[str, DraftCounts] = {}
        self.proposer_failures = 0
        self.planner: dict[str, int] = {}  # the cost-aware planner's counters, when it runs
        self.requests: dict[str, RequestSummary] = {}
        self.finished: deque[RequestSummary] = deque(maxlen=keep_summaries)
        self._log_interval = log_interval_s
        self._last_log = time.monotonic()
        self._labelled: dict[str, tuple[Any, Any, Any]] = {}
        _prometheus()  # created (and registered) with the first engine
        # Behind `vllm serve` this process is not the one serving /metrics: snapshots go to
        # the directory the plugin named (arctic_vllm.metrics_export).
        directory = metrics_dir()
        self.exporter = SnapshotWriter(self, directory) if directory is not None else None

    def record(self, req_id: str, source: str, num_draft: int, num_accepted: int) -> None:
        DraftCounts.check(num_draft, num_accepted)  # before any counter moves
        counts = self.sources.get(source)
        if counts is None:
            counts = self.sources[source] = DraftCounts()
        counts.record(num_draft, num_accepted)
        s = self.requests.get(req_id)
        if s is None:
            s = self.requests[req_id] = RequestSummary(req_id)
        s.counts.record(num_draft, num_accepted)
        s.by_source[source] = s.by_source.get(source, 0) + num_accepted
        drafts, draft_tokens, accepted = self._children(source)
        drafts.inc()
        draft_tokens.inc(num_draft)
        accepted.inc(num_accepted)

    def _children(self, source: str) -> tuple[Any, Any, Any]:
        """The three counters labelled ``source``. A label lookup costs more than the rest
        of `record` together (measured: a quarter of the suffix proposer's step), so the
        children are kept; they belong to the counters, which stay the same objects when
        `_prometheus` registers them again."""
        prom = _prometheus()  # re-registered if vLLM's stat logger unregistered them
        children = self._labelled.get(source)
        if children is None:
            children = self._labelled[source] = (
                prom["drafts"].labels(source),
                prom["draft_tokens"].labels(source),
                prom["accepted"].labels(source),
            )
        return children

    def planned(self, counters: dict[str, int]) -> None:
        """The planner's cumulative counters (`PlannerCounters.as_dict`): what grew since
        the last call is added to the Prometheus counters."""
        prom = None
        for name, value in counters.items():
            grown = value - self.planner.get(name, 0)
            if grown and name in PLANNER_COUNTERS:
                prom = prom or _prometheus()
                prom[f"planner.{name}"].inc(grown)
        self.planner = dict(counters)

    def failure(self) -> None:
        self.proposer_failures += 1
        _prometheus()["failures"].inc()

    def finish(self, req_id: str) -> RequestSummary | None:
        s = self.requests.pop(req_id, None)
        if s is not None:
            self.finished.append(s)
            logger.debug(
                "arctic: request %s: %d drafts, %d/%d tokens accepted, mean acceptance "
                "length %.2f, accepted by source %s",
                req_id, s.drafts, s.accepted_tokens, s.draft_tokens,
                s.mean_acceptance_length, s.by_source,
            )  # fmt: skip
        return s

    def maybe_log(self) -> None:
        now = time.monotonic()
        if now - self._last_log < self._log_interval or not self.sources:
            return
        self._last_log = now
        parts = [
            f"{name}: {c.drafts} drafts, {c.accepted_tokens}/{c.draft_tokens} accepted "
            f"({100 * c.acceptance_rate:.1f}%)"
            for name, c in sorted(self.sources.items())
        ]
        if self.planner:
            p = self.planner
            parts.append(
                f"planner: {p['allowed_tokens']}/{p['cap_tokens']} draft tokens allowed, "
                f"{p['zero_requests']}/{p['requests']} zero-length, {p['probes']} probes"
            )
        logger.info(
            "arctic speculation: %s; proposer failures: %d",
            "; ".join(parts), self.proposer_failures,
        )  # fmt: skip
