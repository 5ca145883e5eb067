"""SuffixCache behaviour beyond the reference model: budgets, namespaces, incremental
removal, the adaptive draft cap, draft extension, LRU order and the implicit (incremental)
context."""

from __future__ import annotations

import random

import pytest

from arctic_suffix import SuffixCache


def finish(
    cache: SuffixCache, rid: str, prompt: list[int], output: list[int], ns: str = ""
) -> None:
    cache.start_request(rid, prompt, namespace=ns)
    cache.add_tokens(rid, output)
    cache.stop_request(rid)


def test_global_cache_holds_outputs_not_prompts() -> None:
    cache = SuffixCache(16)
    finish(cache, "a", [100, 101, 102, 103], [1, 2, 3, 4, 5])
    cache.start_request("b", [100, 101, 102])
    assert cache.speculate("b").token_ids == []  # the prompt of "a" is not cached
    cache.add_tokens("b", [1, 2])
    assert cache.speculate("b", extend=False).token_ids == [3, 4]


def test_namespaces_are_isolated() -> None:
    cache = SuffixCache(16)
    finish(cache, "a", [], [1, 2, 3, 4, 5], ns="tenant-a")
    cache.start_request("b", [1, 2], namespace="tenant-b")
    assert cache.speculate("b").token_ids == []
    cache.start_request("c", [1, 2], namespace="tenant-a")
    assert cache.speculate("c", extend=False).token_ids == [3, 4]


def test_token_budget_evicts_oldest_first() -> None:
    cache = SuffixCache(8, max_cached_tokens=10, eviction="fifo")
    for i in range(5):
        finish(cache, f"r{i}", [], [i] * 4)
        assert cache.cached_tokens <= 10
        cache.check_integrity()
    assert cache.cached_requests == ["r3", "r4"]
    assert cache.cached_tokens == 8
    finish(cache, "huge", [], list(range(50)))  # larger than the budget: never cached
    assert cache.cached_requests == ["r3", "r4"]


def test_request_count_limit_and_explicit_evict() -> None:
    cache = SuffixCache(8, max_cached_requests=2, eviction="fifo")
    for i in range(3):
        finish(cache, f"r{i}", [], [7, i, 7, i])
    assert cache.cached_requests == ["r1", "r2"]
    cache.evict("r1")
    assert cache.cached_requests == ["r2"] and cache.cached_tokens == 4
    cache.run_pending_work()
    cache.check_integrity()


def test_lru_keeps_the_response_that_drafts() -> None:
    cache = SuffixCache(8, max_cached_requests=2, eviction="lru")
    finish(cache, "useful", [], [1, 2, 3, 4, 5])
    finish(cache, "other", [], [9, 9, 8, 9, 9, 8])
    cache.start_request("q", [1, 2])
    # drawn from "useful", which becomes the most recent
    assert cache.speculate("q", extend=False).token_ids == [3, 4]
    assert cache.cached_requests == ["other", "useful"]
    finish(cache, "new", [], [6, 6, 5])
    assert cache.cached_requests == ["useful", "new"]


def test_removal_is_spread_over_calls() -> None:
    cache = SuffixCache(16, max_cached_requests=1, removal_chunk=100)
    rng = random.Random(0)
    finish(cache, "big", [], [rng.randrange(50) for _ in range(5000)])
    finish(cache, "next", [], [1, 2, 3])  # evicts "big": 5000 suffixes, 100 per call
    assert cache.pending_work == 1
    cache.start_request("poll", [1, 2])
    calls = 0
    while cache.pending_work:
        cache.speculate("poll")
        calls += 1
        cache.check_integrity()  # every intermediate state is a valid tree
    assert 40 <= calls <= 60
    assert cache.speculate("poll").token_ids == [3]


def test_implicit_context_equals_explicit() -> None:
    rng = random.Random(1)
    cache = SuffixCache(12)
    for i in range(6):
        finish(cache, f"g{i}", [], [rng.randrange(6) for _ in range(60)])
    ctx = [rng.randrange(6) for _ in range(5)]
    cache.start_request("r", ctx)
    for _ in range(80):
        implicit = cache.speculate("r", max_spec_tokens=8, adaptive=False)
        explicit = cache.speculate("r", ctx, max_spec_tokens=8, adaptive=False)
        assert (implicit.token_ids, implicit.probs, implicit.match_len) == (
            explicit.token_ids,
            explicit.probs,
            explicit.match_len,
        )
        step = [rng.randrange(6) for _ in range(rng.randrange(1, 4))]
        cache.add_tokens("r", step)
        ctx += step
        if rng.random() < 0.1:  # the global tree changes under the request's match state
            finish(cache, f"x{len(ctx)}", [], [rng.randrange(6) for _ in range(30)])


def test_adaptive_cap_grows_after_full_acceptance() -> None:
    text = list(range(200))
    cache = SuffixCache(64)
    finish(cache, "seen", [], text)
    # With the anchor's cap (factor * match_len) a 1-token match drafts 1 token forever.
    cache.start_request("fixed", [0])
    assert len(cache.speculate("fixed", max_spec_tokens=32, extend=False)) == 1
    cache.start_request("adaptive", [0])
    pos, lengths = 1, []
    for _ in range(4):
        d = cache.speculate(
            "adaptive",
            max_spec_tokens=32,
            max_spec_factor=0.0,
            max_spec_offset=1.0,
            adaptive=True,
            extend=False,
        )
        lengths.append(len(d))
        assert d.token_ids == text[pos : pos + len(d)]
        cache.add_tokens("adaptive", text[pos : pos + len(d) + 1])
        pos += len(d) + 1
    assert lengths == sorted(lengths) and lengths[-1] > 4 * lengths[0]


def test_extend_drafts_past_the_end_of_a_self_repeating_span() -> None:
    cache = SuffixCache(24)
    cache.start_request("r", [1, 2, 3, 1, 2, 3, 1, 2])
    # The longest match is the latest period, whose continuation ends with the context.
    assert cache.speculate("r", max_spec_tokens=8, extend=False).token_ids == [3, 1, 2]
    d = cache.speculate("r", max_spec_tokens=8)
    assert d.token_ids == [3, 1, 2, 3, 1, 2, 3, 1]
    assert d.parents == list(range(-1, 7))
    assert d.score == pytest.approx(sum(d.probs))
    tree = cache.speculate("r", max_spec_tokens=8, tree=True)  # trees are not extended
    assert tree.token_ids == [3, 1, 2]


@pytest.mark.parametrize("seed", range(40))
def test_extend_is_plain_drafts_from_context_plus_draft(seed: int) -> None:
    """The definition: after the plain draft, plain drafts from a fresh match of context +
    draft so far, path probabilities multiplied through and min_token_prob applied to the
    product, until no continuation or the limit: min(max_spec_tokens, 2 x the cap the first
    match earned), here factor 1 so 2 x its match length."""
    rng = random.Random(seed)
    cache = SuffixCache(rng.choice([4, 8, 12]))
    for i in range(rng.randrange(4)):
        finish(cache, f"g{i}", [], [rng.randrange(5) for _ in range(40)])
    ctx = [rng.randrange(5) for _ in range(rng.randrange(1, 30))]
    cache.start_request("r", ctx)
    k = rng.randrange(1, 16)
    min_prob = rng.choice([0.0, 0.1, 0.4])
    got = cache.speculate("r", max_spec_tokens=k, min_token_prob=min_prob)
    first = cache.speculate("r", ctx, max_spec_tokens=k, min_token_prob=min_prob, extend=False)
    limit = min(k, 2 * first.match_len)
    tokens, probs = list(first.token_ids), list(first.probs)
    while 0 < len(tokens) < limit and min_prob <= probs[-1]:
        last = probs[-1]
        d = cache.speculate(
            "r",
            ctx + tokens,
            max_spec_tokens=limit - len(tokens),
            min_token_prob=min_prob / last,
            extend=False,
        )
        if not d.token_ids:
            break
        tokens += d.token_ids
        probs += [last * p for p in d.probs]
    assert got.token_ids == tokens
    assert got.probs == probs
    assert got.match_len == first.match_len
    assert all(p >= min_prob for p in got.probs)
    assert got.parents == list(range(-1, len(tokens) - 1))


def test_extend_at_most_doubles_the_first_cap() -> None:
    cache = SuffixCache(16)
    finish(cache, "seen", [], list(range(100)))
    cache.start_request("r", [7, 8])  # a 2-token match into a long copy
    assert cache.speculate("r", max_spec_tokens=32, extend=False).token_ids == [9, 10]
    assert cache.speculate("r", max_spec_tokens=32).token_ids == [9, 10, 11, 12]


def test_tree_draft_parents_form_a_tree() -> None:
    cache = SuffixCache(8)
    finish(cache, "a", [], [1, 2, 3, 1, 2, 4, 1, 2, 3, 1, 2, 5])
    cache.start_request("q", [1, 2])
    d = cache.speculate("q", max_spec_tokens=6, max_spec_factor=4.0, tree=True, min_token_prob=0.0)
    assert len(d.token_ids) == len(d.parents) == len(d.probs) == 6
    assert all(-1 <= p < i for i, p in enumerate(d.parents))
    for i, p in enumerate(d.parents):  # a child is never likelier than its parent
        assert p < 0 or d.probs[i] <= d.probs[p]
    assert d.score == pytest.approx(sum(d.probs))
    assert {d.token_ids[i] for i, p in enumerate(d.parents) if p == -1} == {3, 4, 5}


def test_a_reused_id_keeps_the_response_cached_under_it() -> None:
    # vLLM restarts a rewound request under its id; a caller may reuse ids. An earlier
    # response still cached under the id is never dropped by a later stop_request.
    cache = SuffixCache(16, eviction="fifo")
    finish(cache, "a", [], [1, 2, 3, 4])
    finish(cache, "a", [50], [7, 8, 9])
    assert cache.cached_requests == ["a", "a"] and cache.cached_tokens == 7
    cache.start_request("p", [1, 2])
    assert cache.speculate("p", extend=False).token_ids == [3, 4]  # the first response
    cache.start_request("q", [7, 8])
    assert cache.speculate("q", extend=False).token_ids == [9]  # the second
    cache.check_integrity()
    cache.evict("a")  # every response cached under the id
    assert cache.cached_requests == [] and cache.cached_tokens == 0
    with pytest.raises(KeyError, match="'a' is not in the global cache"):
        cache.evict("a")
    cache.run_pending_work()
    assert cache.speculate("p", extend=False).token_ids == []
    cache.check_integrity()


def test_a_reused_id_counts_against_the_budget_like_any_response() -> None:
    cache = SuffixCache(16, max_cached_requests=2, eviction="fifo")
    for out in ([1, 1], [2, 2], [3, 3]):
        finish(cache, 7, [], out)
    assert cache.cached_requests == [7, 7] and cache.cached_tokens == 4
    cache.start_request("p", [1])
    assert cache.speculate("p", extend=False).token_ids == []  # [1, 1] evicted first
