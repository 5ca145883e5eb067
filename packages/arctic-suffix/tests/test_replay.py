"""replay: exact step, draft and acceptance counts on hand-made traces."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import count

import pytest

from arctic_suffix import SuffixCache, SuffixCacheDrafter, Trace, replay

OUTPUT = list(range(1, 11))  # ten distinct tokens: nothing in a trace repeats itself


class Scripted:
    """A drafter that knows the outputs and always drafts max_tokens tokens; `wrong_at`
    spoils its draft from that index on."""

    def __init__(self, outputs: dict[str, list[int]], wrong_at: int | None = None) -> None:
        self.outputs, self.wrong_at = outputs, wrong_at
        self.contexts: list[list[int]] = []
        self.calls: list[str] = []
        self.prompt_len: dict[str, int] = {}

    def start(self, request_id: str, prompt: Sequence[int]) -> None:
        self.calls.append(f"start {request_id}")
        self.prompt_len[request_id] = len(prompt)

    def draft(self, request_id: str, context: Sequence[int], max_tokens: int) -> list[int]:
        self.contexts.append(list(context))
        done = len(context) - self.prompt_len[request_id]
        draft = self.outputs[request_id][done : done + max_tokens]
        draft += [0] * (max_tokens - len(draft))  # drafts run on past the output's end
        if self.wrong_at is not None:
            draft = draft[: self.wrong_at] + [-1] * (len(draft) - self.wrong_at)
        return draft

    def add(self, request_id: str, tokens: Sequence[int]) -> None:
        self.calls.append(f"add {list(tokens)}")

    def stop(self, request_id: str) -> None:
        self.calls.append(f"stop {request_id}")


class Silent(Scripted):
    def draft(self, request_id: str, context: Sequence[int], max_tokens: int) -> list[int]:
        return []


def test_a_drafter_that_never_drafts_takes_one_step_per_token() -> None:
    stats = replay([Trace("a", [100], OUTPUT)], 16, Silent({}))
    assert (stats.steps, stats.tokens, stats.drafted, stats.accepted) == (10, 10, 0, 0)
    assert stats.tokens_per_step == 1.0 and stats.acceptance_rate == 0.0


def test_a_perfect_drafter_takes_k_plus_one_tokens_per_step() -> None:
    """K = 3: steps append 4, 4, 2 tokens (the last draft runs past the output's end)."""
    drafter = Scripted({"a": OUTPUT})
    stats = replay([Trace("a", [100, 101], OUTPUT)], 3, drafter)
    assert (stats.steps, stats.tokens, stats.drafted, stats.accepted) == (3, 10, 9, 8)
    assert stats.tokens_per_step == pytest.approx(10 / 3)
    assert drafter.calls == [
        "start a",
        "add [1, 2, 3, 4]",
        "add [5, 6, 7, 8]",
        "add [9, 10]",
        "stop a",
    ]
    # Each draft sees the prompt and everything appended so far.
    assert drafter.contexts == [[100, 101], [100, 101, 1, 2, 3, 4], [100, 101, *range(1, 9)]]


def test_acceptance_stops_at_the_first_wrong_token() -> None:
    """Drafts right for two tokens, then wrong: 3 tokens a step (2 accepted + bonus)."""
    stats = replay([Trace("a", [100], OUTPUT)], 5, Scripted({"a": OUTPUT}, wrong_at=2))
    # Steps append 3, 3, 3, 1: the last draft's first token is the output's last.
    assert (stats.steps, stats.drafted, stats.accepted) == (4, 4 * 5, 2 + 2 + 2 + 1)
    assert stats.acceptance_rate == pytest.approx(7 / 20)


def test_traces_replay_in_order_and_an_empty_output_takes_no_step() -> None:
    drafter = Scripted({"a": OUTPUT, "b": [], "c": [7]})
    traces = [Trace("a", [1], OUTPUT), Trace("b", [2], []), Trace("c", [3], [7])]
    seen: list[str] = []
    stats = replay(traces, 64, drafter, on_trace=lambda t: seen.append(t.request_id))
    assert seen == ["a", "b", "c"]
    # K = 64: a's whole output in one step, none for b, one for c.
    assert (stats.steps, stats.tokens, stats.update_tokens) == (2, 11, (1 + 10) + (1 + 0) + (1 + 1))
    assert drafter.calls == [
        "start a",
        f"add {OUTPUT}",
        "stop a",
        "start b",
        "stop b",
        "start c",
        "add [7]",
        "stop c",
    ]


def test_times_come_from_the_injected_clock() -> None:
    """A clock that advances 1 per reading: every timed call lasts exactly 1."""
    ticks = count()
    stats = replay(
        [Trace("a", [100], OUTPUT)], 3, Scripted({"a": OUTPUT}), clock=lambda: next(ticks)
    )
    assert stats.speculate_ns == [1, 1, 1]
    assert stats.update_ns == 1 + 3 + 1  # start, one add per step, stop
    summary = stats.summary()
    assert summary["spec_p50_us"] == summary["spec_p99_us"] == 1e-3
    assert summary["update_us_per_token"] == pytest.approx(5 / 1e3 / 11)


def test_a_cached_response_is_drafted_for_the_same_request_again() -> None:
    """Through a real SuffixCache, K = 16. The first trace has nothing to copy: 10 steps.
    The second repeats the first's output, now in the global tree. Its first step has no
    match (the prompt is not cached); then the match "1" earns a cap of 1, extended to 2:
    "2 3" + bonus 4; then the match "1 2 3 4" earns 4, extended to 8, and the 6 tokens left
    are drafted and accepted: 3 steps, 8 tokens drafted, all accepted."""
    cache = SuffixCache(64)
    first = replay([Trace("a", [100], OUTPUT)], 16, cache)
    assert (first.steps, first.drafted, first.accepted) == (10, 0, 0)
    again = replay([Trace("b", [100], OUTPUT)], 16, cache)
    assert (again.steps, again.drafted, again.accepted, again.tokens) == (3, 8, 8, 10)
    assert cache.cached_requests == ["a", "b"]


@pytest.mark.parametrize(
    ("options", "steps", "drafted"),
    [
        # Without extension the cap is factor * match length: 1 ("2"), then 3 ("4 5 6"),
        # then the 3 tokens left.
        ({"extend": False}, 4, 1 + 3 + 3),
        # factor 16: the match "1" earns the whole rest at once.
        ({"max_spec_factor": 16.0}, 2, 9),
    ],
)
def test_speculate_options_reach_the_cache(
    options: dict[str, object], steps: int, drafted: int
) -> None:
    cache = SuffixCache(64)
    replay([Trace("a", [100], OUTPUT)], 16, cache)
    again = replay([Trace("b", [100], OUTPUT)], 16, SuffixCacheDrafter(cache, **options))
    assert (again.steps, again.drafted, again.accepted) == (steps, drafted, drafted)


def test_bad_arguments_are_refused_before_anything_runs() -> None:
    cache = SuffixCache(64)
    with pytest.raises(ValueError, match="max_spec_tokens must be >= 0, got -1"):
        replay([Trace("a", [1], [2])], -1, cache)
    with pytest.raises(ValueError, match=r"unknown speculate option\(s\) \['tree'\]"):
        SuffixCacheDrafter(cache, tree=True)
    assert cache.active_requests == [] and cache.cached_requests == []
