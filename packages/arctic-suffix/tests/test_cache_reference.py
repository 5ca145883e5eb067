"""SuffixCache against a reference built from RefTree: per-request trees over prompt +
output, a global tree per namespace over outputs, FIFO eviction by count and tokens. Ids
are reused: a finished request's output is cached beside earlier ones under its id."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st
from suffix_reference import RefDraft, RefTree

from arctic_suffix import SuffixCache

DEPTH = 6


class RefCache:
    def __init__(self, max_requests: int | None, max_tokens: int | None) -> None:
        self.max_requests, self.max_tokens = max_requests, max_tokens
        self.active: dict[str, tuple[str, int, list[int]]] = {}
        self.cached: list[tuple[str, str, list[int]]] = []  # (id, namespace, output), FIFO

    def cached_ids(self) -> list[str]:
        return [rid for rid, _, _ in self.cached]

    def evict(self, rid: str) -> None:
        self.cached = [e for e in self.cached if e[0] != rid]

    def stop(self, rid: str) -> None:
        ns, plen, toks = self.active.pop(rid)
        out = toks[plen:]
        if not out or self.max_requests == 0:
            return
        if self.max_tokens is not None and len(out) > self.max_tokens:
            return
        self.cached.append((rid, ns, out))  # an earlier entry under rid stays
        while (self.max_requests is not None and len(self.cached) > self.max_requests) or (
            self.max_tokens is not None and sum(len(o) for _, _, o in self.cached) > self.max_tokens
        ):
            self.cached.pop(0)

    def speculate(self, rid: str, k: int) -> RefDraft:
        ns, _, toks = self.active[rid]
        local = RefTree(DEPTH)
        local.extend(0, toks)
        # The request's own trailing occurrence is left out of the first step's probability.
        best = local.speculate(toks, max_spec_tokens=k, discount=1)
        glob = RefTree(DEPTH)
        for i, (_, n, out) in enumerate(self.cached):
            if n == ns:
                glob.extend(i, out)
        g = glob.speculate(toks, max_spec_tokens=k)
        return g if g.score > best.score else best


ids = st.sampled_from(["a", "b", "c"])
toks = st.lists(st.integers(0, 3), max_size=12)
op: st.SearchStrategy[tuple[str, str, list[int], str]] = st.one_of(
    st.tuples(st.just("start"), ids, toks, st.sampled_from(["", "x"])),
    st.tuples(st.just("add"), ids, toks, st.just("")),
    st.tuples(st.just("spec"), ids, st.just([]), st.just("")),
    st.tuples(st.just("stop"), ids, st.just([]), st.just("")),
    st.tuples(st.just("evict"), ids, st.just([]), st.just("")),
)


@settings(max_examples=150, deadline=None)
# An id reused while its first response is still cached: both responses stay.
@example(
    ops=[
        ("start", "a", [1], ""),
        ("add", "a", [2, 3], ""),
        ("stop", "a", [], ""),
        ("start", "a", [2], ""),
        ("add", "a", [3, 1], ""),
        ("stop", "a", [], ""),
        ("start", "b", [2], ""),
        ("spec", "b", [], ""),
        ("evict", "a", [], ""),
        ("spec", "b", [], ""),
    ],
    max_requests=None,
    max_tokens=None,
    k=4,
    chunk=1,
)
@given(
    ops=st.lists(op, max_size=25),
    max_requests=st.sampled_from([None, 0, 1, 2]),
    max_tokens=st.sampled_from([None, 5, 20]),
    k=st.integers(0, 8),
    chunk=st.sampled_from([1, 3, 8192]),
)
def test_cache_matches_reference(
    ops: list[tuple[str, str, list[int], str]],
    max_requests: int | None,
    max_tokens: int | None,
    k: int,
    chunk: int,
) -> None:
    cache = SuffixCache(
        DEPTH,
        max_cached_requests=max_requests,
        max_cached_tokens=max_tokens,
        eviction="fifo",
        removal_chunk=chunk,
    )
    ref = RefCache(max_requests, max_tokens)
    for kind, rid, ts, ns in ops:
        if kind == "start" and rid not in ref.active:
            cache.start_request(rid, ts, namespace=ns)
            ref.active[rid] = (ns, len(ts), list(ts))
        elif rid not in ref.active and kind in ("add", "spec", "stop"):
            continue
        elif kind == "add":
            cache.add_tokens(rid, ts)
            ref.active[rid][2].extend(ts)
        elif kind == "spec":
            # Evicted responses leave a chunk per call; the reference drops them at once.
            cache.run_pending_work()
            for explicit in (False, True):
                ctx = list(ref.active[rid][2]) if explicit else None
                got = cache.speculate(rid, ctx, max_spec_tokens=k, extend=False)
                want = ref.speculate(rid, k)
                assert (got.token_ids, got.probs, got.match_len) == (
                    want.token_ids,
                    want.probs,
                    want.match_len,
                )
                assert got.score == want.score
        elif kind == "stop":
            cache.stop_request(rid)
            ref.stop(rid)
        elif kind == "evict" and rid in ref.cached_ids():
            cache.evict(rid)
            ref.evict(rid)
        cache.check_integrity()
        assert cache.cached_requests == ref.cached_ids()
        assert cache.cached_tokens == sum(len(o) for _, _, o in ref.cached)
    assert sorted(cache.active_requests) == sorted(ref.active)
