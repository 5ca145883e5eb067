"""SuffixTree against the naive reference model: random operations, then every n-gram
count and a set of drafts must agree exactly."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st
from suffix_reference import RefTree

from arctic_suffix import SuffixTree

ALPHABET = 4  # small, so that repeats (the interesting case for compression) are common
tokens = st.lists(st.integers(0, ALPHABET - 1), min_size=0, max_size=24)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("extend"), st.integers(0, 3), tokens),
        st.tuples(st.just("remove"), st.integers(0, 3), st.just([])),
    ),
    max_size=12,
)


def assert_same(tree: SuffixTree, ref: RefTree, contexts: list[list[int]], **kw: object) -> None:
    for n in range(0, ref.max_depth + 1):
        for gram in itertools.product(range(ALPHABET), repeat=min(n, 3)):
            assert tree.count(list(gram)) == ref.count(list(gram)), gram
    for seq in ref.seqs.values():  # long n-grams actually present
        for i in range(len(seq)):
            window = seq[i : i + ref.max_depth]
            assert tree.count(window) == ref.count(window), window
    for ctx in contexts:
        for tree_mode in (False, True):
            got = tree.speculate(ctx, tree=tree_mode, **kw)  # type: ignore[arg-type]
            want = ref.speculate(ctx, tree=tree_mode, **kw)  # type: ignore[arg-type]
            assert got.match_len == want.match_len, ctx
            assert got.token_ids == want.token_ids, ctx
            assert got.parents == want.parents, ctx
            assert got.probs == want.probs, ctx
            assert got.score == want.score, ctx


@settings(max_examples=150, deadline=None)
@given(
    depth=st.integers(1, 7),
    ops=ops,
    contexts=st.lists(tokens, max_size=4),
    k=st.integers(0, 12),
    factor=st.sampled_from([0.5, 1.0, 4.0]),
    offset=st.sampled_from([0.0, 2.0]),
    min_prob=st.sampled_from([0.0, 0.1, 0.5]),
)
def test_random_operations_match_reference(
    depth: int,
    ops: list[tuple[str, int, list[int]]],
    contexts: list[list[int]],
    k: int,
    factor: float,
    offset: float,
    min_prob: float,
) -> None:
    tree, ref = SuffixTree(depth), RefTree(depth)
    for op, sid, toks in ops:
        if op == "extend":
            tree.extend(sid, toks)
            ref.extend(sid, toks)
        elif sid in ref.seqs:
            tree.remove(sid)
            ref.remove(sid)
        tree.check_integrity()
    assert len(tree) == len(ref.seqs)
    assert tree.num_tokens == sum(len(s) for s in ref.seqs.values())
    ctxs = contexts + [s[: len(s) // 2] for s in ref.seqs.values()]
    assert_same(
        tree,
        ref,
        ctxs,
        max_spec_tokens=k,
        max_spec_factor=factor,
        max_spec_offset=offset,
        min_token_prob=min_prob,
    )


@settings(max_examples=60, deadline=None)
@given(seqs=st.lists(st.lists(st.integers(0, 2), max_size=40), min_size=1, max_size=4))
def test_token_by_token_equals_bulk(seqs: list[list[int]]) -> None:
    bulk, stepwise = SuffixTree(6), SuffixTree(6)
    for sid, seq in enumerate(seqs):
        bulk.extend(sid, seq)
        for t in seq:
            stepwise.extend(sid, [t])
    stepwise.check_integrity()
    assert bulk.num_nodes == stepwise.num_nodes
    for seq in seqs:
        for i in range(len(seq)):
            assert bulk.count(seq[i : i + 6]) == stepwise.count(seq[i : i + 6])


def test_path_compression_keeps_repeats_small() -> None:
    # A file re-emitted verbatim adds counts, not nodes: boundaries slide instead of split.
    text = list(range(500))
    tree = SuffixTree(64)
    tree.extend(0, text)
    nodes_once = tree.num_nodes
    tree.extend(1, text)
    assert tree.num_nodes <= nodes_once + 70
    assert tree.count(text[100:164]) == 2


def test_remove_all_returns_to_empty() -> None:
    tree = SuffixTree(8)
    tree.extend(0, [1, 2, 3, 1, 2, 3])
    tree.extend(1, [2, 3, 4])
    tree.remove(0)
    tree.remove(1)
    tree.check_integrity()
    assert tree.num_nodes == 1 and tree.num_tokens == 0 and len(tree) == 0
