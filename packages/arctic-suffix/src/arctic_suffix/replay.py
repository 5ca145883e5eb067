"""Offline replay of token traces through a drafter, with simulated greedy verification.

A trace is a request as it was served: its prompt and the output the target produced. The
replay serves it again with a drafter in the loop, the way suffix decoding (arXiv
2411.04975) is evaluated offline: each verification step asks the drafter for up to K
tokens, accepts the longest prefix that equals the recorded output from there, and appends
that prefix plus one bonus token (the target's own next token, which the verifying forward
pass produces anyway). So a step never yields fewer than one token, and a perfect drafter
yields K + 1.

Counted per replay (`ReplayStats`): steps (target forward passes), tokens appended,
tokens drafted and accepted, and the time each drafter call took (speculate per step; start,
add and stop as update cost per token). The clock is injected, so tests are exact.

Pure Python over `SuffixCache` (or any `Drafter`); token sequences are passed to the
drafter as given (lists, or numpy arrays where the caller has them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from arctic_suffix._core import SuffixCache

# SuffixCache.speculate's knobs a linear replay can vary; tree drafts are not a chain.
SPECULATE_OPTIONS = frozenset(
    {"max_spec_factor", "max_spec_offset", "min_token_prob", "adaptive", "extend"}
)


@dataclass(frozen=True)
class Trace:
    """One request to replay: its prompt and the output the target produced."""

    request_id: str
    prompt: Sequence[int]
    output: Sequence[int]


class Drafter(Protocol):
    """What `replay` drives; `SuffixCacheDrafter` is one, the benchmarks' baselines others."""

    def start(self, request_id: str, prompt: Sequence[int]) -> None: ...

    def draft(self, request_id: str, context: Sequence[int], max_tokens: int) -> Sequence[int]:
        """Up to max_tokens tokens to follow `context` (prompt + output so far)."""
        ...

    def add(self, request_id: str, tokens: Sequence[int]) -> None:
        """The tokens a step appended (accepted draft + bonus)."""
        ...

    def stop(self, request_id: str) -> None: ...


class SuffixCacheDrafter:
    """A `SuffixCache` as a `Drafter`: drafts with ``cache.speculate(request_id,
    max_spec_tokens=K, **speculate_options)`` on the request's own context.

    speculate_options: any of `SPECULATE_OPTIONS` (checked here; their values are checked
    by `SuffixCache.speculate`).
    """

    def __init__(self, cache: SuffixCache, **speculate_options: Any) -> None:
        unknown = sorted(set(speculate_options) - SPECULATE_OPTIONS)
        if unknown:
            raise ValueError(
                f"unknown speculate option(s) {unknown}; a replay takes {sorted(SPECULATE_OPTIONS)}"
            )
        self.cache = cache
        self.speculate_options = speculate_options

    def start(self, request_id: str, prompt: Sequence[int]) -> None:
        self.cache.start_request(request_id, prompt)

    def draft(self, request_id: str, context: Sequence[int], max_tokens: int) -> list[int]:
        # The cache keeps the request's context itself; `context` is for stateless drafters.
        draft = self.cache.speculate(
            request_id, max_spec_tokens=max_tokens, **self.speculate_options
        )
        return draft.token_ids

    def add(self, request_id: str, tokens: Sequence[int]) -> None:
        self.cache.add_tokens(request_id, tokens)

    def stop(self, request_id: str) -> None:
        self.cache.stop_request(request_id)


@dataclass
class ReplayStats:
    """Counts and drafter-call times of one replay (times in clock units: ns by default)."""

    tokens: int = 0  # output tokens appended (every trace's whole output)
    steps: int = 0  # verification steps, i.e. target forward passes
    drafted: int = 0  # draft tokens proposed
    accepted: int = 0  # draft tokens accepted
    speculate_ns: list[int] = field(default_factory=list)  # one per step
    update_ns: int = 0  # start + add + stop calls
    update_tokens: int = 0  # prompt + output tokens the drafter was given

    @property
    def tokens_per_step(self) -> float:
        return self.tokens / max(1, self.steps)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / max(1, self.drafted)

    def summary(self) -> dict[str, float]:
        """Tokens per step, acceptance rate, speculate p50 / p99 (us), update us per token."""
        s = sorted(self.speculate_ns)
        return {
            "tokens_per_step": self.tokens_per_step,
            "acceptance_rate": self.acceptance_rate,
            "spec_p50_us": s[len(s) // 2] / 1e3 if s else 0.0,
            "spec_p99_us": s[min(len(s) - 1, int(len(s) * 0.99))] / 1e3 if s else 0.0,
            "update_us_per_token": self.update_ns / 1e3 / max(1, self.update_tokens),
        }


def replay(
    traces: Iterable[Trace],
    max_spec_tokens: int,
    drafter: Drafter | SuffixCache,
    *,
    clock: Callable[[], int] = time.perf_counter_ns,
    on_trace: Callable[[Trace], object] | None = None,
) -> ReplayStats:
    """Serve every trace again, in order, with `drafter` proposing up to `max_spec_tokens`
    tokens per step (a `SuffixCache` is wrapped in `SuffixCacheDrafter` with its defaults).

    Per trace: start(prompt); while output remains: draft, accept the prefix equal to the
    output, add(accepted + bonus token); stop. `on_trace(trace)` runs after each (progress).
    """
    if max_spec_tokens < 0:
        raise ValueError(f"max_spec_tokens must be >= 0, got {max_spec_tokens}")
    if isinstance(drafter, SuffixCache):
        drafter = SuffixCacheDrafter(drafter)
    stats = ReplayStats()
    for trace in traces:
        _replay_one(trace, max_spec_tokens, drafter, clock, stats)
        if on_trace is not None:
            on_trace(trace)
    return stats


def _replay_one(
    trace: Trace,
    k: int,
    drafter: Drafter,
    clock: Callable[[], int],
    stats: ReplayStats,
) -> None:
    rid, out = trace.request_id, trace.output
    t0 = clock()
    drafter.start(rid, trace.prompt)
    stats.update_ns += clock() - t0
    stats.update_tokens += len(trace.prompt) + len(out)
    context = _int_list(trace.prompt)
    pos = 0
    while pos < len(out):
        t0 = clock()
        draft = drafter.draft(rid, context, k)
        stats.speculate_ns.append(clock() - t0)
        accepted = 0
        while (
            accepted < len(draft)
            and pos + accepted < len(out)
            and draft[accepted] == out[pos + accepted]
        ):
            accepted += 1
        new = out[pos : pos + accepted + 1]  # the accepted draft and the bonus token
        t0 = clock()
        drafter.add(rid, new)
        stats.update_ns += clock() - t0
        context.extend(_int_list(new))
        stats.drafted += len(draft)
        stats.accepted += accepted
        stats.steps += 1
        pos += len(new)
        stats.tokens += len(new)
    t0 = clock()
    drafter.stop(rid)
    stats.update_ns += clock() - t0


def _int_list(tokens: Sequence[int]) -> list[int]:
    """Python ints whether given a list or a numpy array (whose tolist() gives ints)."""
    tolist = getattr(tokens, "tolist", None)
    return list(tolist()) if tolist is not None else [int(t) for t in tokens]
