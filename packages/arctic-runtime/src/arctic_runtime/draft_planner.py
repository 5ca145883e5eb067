"""Each request's draft length this step, chosen by the batch's expected tokens per second.

Issue 18: fixed caps (Arctic Inference), a static table per batch size (vLLM 0.33) and
acceptance tiers (SGLang) all guess what a verified token costs. The planner measures it:
the engine's step time as a function of the tokens it scheduled (`step_cost`, from the
steps it actually ran), the proposer's own drafting time, and how drafts of each source and
bucket fare by position (`acceptance_curves`). From those it gives each request the length
that maximises the batch's expected accepted-plus-bonus tokens per second, exactly
(`draft_allocation`), 0 for all when no draft beats none.

It works inside the `SpeculationPolicy`: the caller passes each request's cap (after the
batch caps, the per-request switch and max tokens, and backoff) and the planner only
shortens. A ``fixed`` request gets its cap whatever it costs: a seeded sampled request's
draft must not depend on the clock (its output reproduces only if its drafts do); its
tokens still count in the step's cost.

One engine step, as the caller drives it:

    begin_step(scheduled_tokens)   measures the step that just ran
    plan(requests, ...)            before drafting: who drafts (0: do not draft at all)
    with drafting(n): ...          times the proposer (a cost of drafting, fitted apart)
    refine(drafts)                 after drafting: each draft's length from its own curve
    record(draft, num_accepted)    after verification

``plan`` reads each request's curve from its last draft's key (a suffix match tends to
persist from one step to the next; a request without one reads the best source's curve),
and charges drafting its measured cost. ``refine`` reads each draft's own key (its source
and match-length bucket, known only once drafted) with drafting's cost already paid, and
truncates: a suffix draft drafted to its cap is cut to the length its match earns.

Estimates only move where they are observed, so a request planned at 0 would never show
that its drafts got better, nor would tokens the engine never schedules refine the cost
fit. So every ``probe_every`` steps in which some request was cut below its cap, the one
of those probed longest ago (ties: batch order) gets ``probe_tokens`` more: at most
``probe_tokens`` tokens per ``probe_every`` steps, deterministic given the inputs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields

from .acceptance_curves import AcceptanceCurves, CurveKey, curve_key, survival_prefix
from .draft import DRAFTER, SUFFIX, Draft
from .draft_allocation import best_lengths
from .step_cost import LinearCostFit, StepTimer


@dataclass(frozen=True)
class PlanRequest:
    """One request's input to the plan."""

    req_id: str
    cap: int  # the most draft tokens the policy allows it this step (>= 0)
    fixed: bool = False  # gets ``cap`` whatever it costs (a reproducible request)


@dataclass
class PlannerCounters:
    """What the planner decided, cumulative (exported as metrics by arctic-vllm)."""

    steps: int = 0  # plan() calls
    warmup_steps: int = 0  # of those, planned as the caps: the cost fit had no estimate yet
    zero_steps: int = 0  # steps where no request drafted although some cap was > 0
    requests: int = 0  # requests planned with a cap > 0
    zero_requests: int = 0  # of those, given 0: not drafted, or the draft dropped after
    cap_tokens: int = 0  # the sum of those caps
    allowed_tokens: int = 0  # draft tokens allowed (after refine: at most each draft's length)
    probes: int = 0  # probe decisions (tokens given beyond the plan for evidence)

    def as_dict(self) -> dict[str, int]:
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}


class DraftPlanner:
    """Cost-aware draft lengths; see the module docstring."""

    def __init__(
        self,
        num_positions: int,
        *,
        sources: Sequence[str] = (SUFFIX, DRAFTER),
        probe_every: int = 16,
        probe_tokens: int = 2,
        clock: Callable[[], float] = time.perf_counter,
        curves: AcceptanceCurves | None = None,
        step_cost: LinearCostFit | None = None,
        draft_cost: LinearCostFit | None = None,
    ) -> None:
        """num_positions: the most draft tokens a request may get (K). sources: the draft
        sources a request without a draft yet may get (its curve: the best of theirs)."""
        if num_positions < 1:
            raise ValueError(f"num_positions must be >= 1, got {num_positions}")
        if not sources:
            raise ValueError("sources must name at least one draft source")
        for name, value in (("probe_every", probe_every), ("probe_tokens", probe_tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.num_positions = num_positions
        self.sources = tuple(sources)
        self.probe_every = probe_every
        self.probe_tokens = probe_tokens
        self.curves = curves or AcceptanceCurves(num_positions)
        self.step_cost = step_cost or LinearCostFit()
        # Drafting's seconds against requests drafted; ready after its own warm-up.
        self.draft_cost = draft_cost or LinearCostFit()
        self.timer = StepTimer(self.step_cost, self.draft_cost, clock)
        self.counters = PlannerCounters()
        self._last_key: dict[str, CurveKey] = {}
        self._last_probe: dict[str, int] = {}
        self._cut_steps = 0  # steps with a request cut below its cap since the last probe
        # This step's plan, for refine: request id -> (request, allowed, probed).
        self._planned: dict[str, tuple[PlanRequest, int, bool]] = {}
        self._outputs = 0.0
        self._base_tokens = 0

    # -- per step ------------------------------------------------------------------------------
    def begin_step(self, scheduled_tokens: int) -> None:
        """At the start of each engine step's call: the tokens that step scheduled."""
        self.timer.begin_step(scheduled_tokens)

    @contextmanager
    def drafting(self, num_requests: int) -> Iterator[None]:
        """Times the proposer drafting for ``num_requests`` requests."""
        started = self.timer.start_drafting()
        yield
        self.timer.end_drafting(started, num_requests)

    def plan(
        self, requests: Sequence[PlanRequest], *, base_tokens: int, outputs: float | None = None
    ) -> list[int]:
        """Draft tokens allowed per request (0..cap) before drafting; 0: do not draft it.

        base_tokens: the tokens the next step schedules without drafts (one per decoding
        request, plus prefill chunks); outputs: the tokens it emits without drafts (default
        one per request planned)."""
        for r in requests:
            if r.cap < 0:
                raise ValueError(f"request {r.req_id!r}: cap must be >= 0, got {r.cap}")
        if base_tokens < 0:
            raise ValueError(f"base_tokens must be >= 0, got {base_tokens}")
        c = self.counters
        c.steps += 1
        self._outputs = float(len(requests) if outputs is None else outputs)
        self._base_tokens = base_tokens
        caps = [r.cap if r.fixed else min(r.cap, self.num_positions) for r in requests]
        probed = -1
        if not self.step_cost.ready:
            c.warmup_steps += 1
            allowed = list(caps)
        else:
            curves = [
                self._expected_curve(r.req_id, cap) for r, cap in zip(requests, caps, strict=True)
            ]
            fixed_drafts = sum(
                1 for r, cap in zip(requests, caps, strict=True) if r.fixed and cap > 0
            )
            drafting = self.draft_cost.ready
            allowed = self._allocate(
                requests,
                caps,
                curves,
                request_seconds=self.draft_cost.slope if drafting else 0.0,
                batch_seconds=self.draft_cost.intercept if drafting and not fixed_drafts else 0.0,
                fixed_seconds=self.draft_cost.predict(fixed_drafts)
                if drafting and fixed_drafts
                else 0.0,
            )
            probed = self._probe(requests, caps, allowed)
        self._planned = {
            r.req_id: (r, k, i == probed)
            for i, (r, k) in enumerate(zip(requests, allowed, strict=True))
        }
        offered = [cap for cap in caps if cap > 0]
        c.requests += len(offered)
        c.cap_tokens += sum(offered)
        c.zero_requests += sum(1 for cap, k in zip(caps, allowed, strict=True) if cap > 0 and not k)
        c.allowed_tokens += sum(allowed)
        if offered and not any(allowed):
            c.zero_steps += 1
        return allowed

    def refine(self, drafts: Mapping[str, Draft | None]) -> dict[str, int]:
        """After drafting: each drafted request's final length (0..len(draft)), read from
        the draft's own curve, drafting's cost already paid. Requests the last `plan` did
        not allow (or did not see) get 0."""
        ids = [q for q in drafts if q in self._planned and self._planned[q][1] > 0]
        out = dict.fromkeys(drafts, 0)
        requests = [self._planned[q][0] for q in ids]
        made = [drafts[q] for q in ids]
        lengths = [0 if d is None else len(d) for d in made]
        if self.step_cost.ready:
            curves = [
                [] if d is None else survival_prefix(self.curves.survival(curve_key(d), q), n)
                for q, d, n in zip(ids, made, lengths, strict=True)
            ]
            final = self._allocate(requests, lengths, curves)
            for i, q in enumerate(ids):
                if self._planned[q][2]:  # a probe keeps its evidence
                    final[i] = max(final[i], min(lengths[i], self.probe_tokens))
        else:
            final = lengths
        c = self.counters
        c.allowed_tokens += sum(final) - sum(self._planned[q][1] for q in ids)
        c.zero_requests += sum(1 for n, k in zip(lengths, final, strict=True) if n > 0 and not k)
        for q, k in zip(ids, final, strict=True):
            out[q] = k
            del self._planned[q]  # refined once
        return out

    def _allocate(
        self,
        requests: Sequence[PlanRequest],
        caps: Sequence[int],
        curves: Sequence[Sequence[float]],
        *,
        request_seconds: float = 0.0,
        batch_seconds: float = 0.0,
        fixed_seconds: float = 0.0,
    ) -> list[int]:
        """best_lengths over the requests that are not fixed; fixed ones keep their caps,
        counted in the step's tokens, seconds and expected output."""
        free = [i for i, r in enumerate(requests) if not r.fixed]
        held = [i for i, r in enumerate(requests) if r.fixed]
        fixed_tokens = sum(caps[i] for i in held)
        fixed_accepted = sum(sum(curves[i][: caps[i]]) for i in held)
        base = self.step_cost.predict(self._base_tokens + fixed_tokens) + fixed_seconds
        allocation = best_lengths(
            [curves[i] for i in free],
            [caps[i] for i in free],
            outputs=self._outputs + fixed_accepted,
            # A fit of 0 s (an injected clock that never moves) would divide by zero.
            base=max(base, 1e-12),
            token_seconds=self.step_cost.slope,
            request_seconds=request_seconds,
            batch_seconds=batch_seconds,
        )
        allowed = list(caps)
        for i, k in zip(free, allocation.lengths, strict=True):
            allowed[i] = k
        return allowed

    def _probe(self, requests: Sequence[PlanRequest], caps: list[int], allowed: list[int]) -> int:
        """Give the probe its tokens when one is due; its index, else -1."""
        cut = [i for i, r in enumerate(requests) if not r.fixed and allowed[i] < caps[i]]
        if not cut:
            return -1
        self._cut_steps += 1
        if self._cut_steps < self.probe_every:
            return -1
        self._cut_steps = 0
        i = min(cut, key=lambda i: (self._last_probe.get(requests[i].req_id, -1), i))
        allowed[i] = min(caps[i], allowed[i] + self.probe_tokens)
        self._last_probe[requests[i].req_id] = self.counters.steps
        self.counters.probes += 1
        return i

    def _expected_curve(self, req_id: str, cap: int) -> list[float]:
        key = self._last_key.get(req_id)
        if key is not None:
            return survival_prefix(self.curves.survival(key, req_id), cap)
        # No draft yet: the best of what its sources' drafts have earned (or the prior).
        best: list[float] = []
        for source in self.sources:
            curve = survival_prefix(self.curves.survival((source, None)), cap)
            if sum(curve) > sum(best):
                best = curve
        return best if best else [0.0] * cap

    # -- feedback ------------------------------------------------------------------------------
    def record(self, req_id: str, draft: Draft, num_accepted: int) -> None:
        """A verified draft (as verified: truncated to what the engine scheduled)."""
        if len(draft) == 0:
            return
        key = curve_key(draft)
        self.curves.record(key, len(draft), num_accepted, req_id)
        self._last_key[req_id] = key

    def forget(self, req_id: str) -> None:
        """The request finished or was aborted."""
        self.curves.forget(req_id)
        self._last_key.pop(req_id, None)
        self._last_probe.pop(req_id, None)
        self._planned.pop(req_id, None)
