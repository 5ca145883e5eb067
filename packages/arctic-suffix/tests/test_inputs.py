"""Bad input raises ValueError / KeyError naming the value, before anything is mutated."""

from __future__ import annotations

import numpy as np
import pytest

from arctic_suffix import MAX_DEPTH_LIMIT, SuffixCache, SuffixTree


@pytest.mark.parametrize("depth", [0, -1, MAX_DEPTH_LIMIT + 1, 10**6])
def test_absurd_depth_is_refused(depth: int) -> None:
    with pytest.raises(ValueError, match=str(depth)):
        SuffixTree(depth)
    with pytest.raises(ValueError, match=str(depth)):
        SuffixCache(depth)


BAD_TOKENS = [
    ([1, -1], "-1"),
    ([1, 2**31], str(2**31)),
    ([1, 2**70], str(2**70)),
    ([1, 2.0], "float"),
    ([1, "2"], "str"),
    ([True], "bool"),
    ("123", "str"),
    (np.array([1, -5], dtype=np.int32), "-5"),
    (np.array([1, 2**31], dtype=np.int64), str(2**31)),
    (np.array([1.0, 2.0]), "float64"),
    (np.array([1, 2], dtype=np.uint8), "uint8"),
    (np.array([[1, 2]], dtype=np.int32), "ndim=2"),
    (np.int32(3), "got int32"),
    (5, "int"),
]


@pytest.mark.parametrize(("ids", "named"), BAD_TOKENS)
def test_bad_tokens_leave_tree_intact(ids: object, named: str) -> None:
    tree = SuffixTree(8)
    tree.extend(0, [1, 2, 3, 1, 2])
    before = (tree.num_nodes, tree.num_tokens, tree.count([1, 2]))
    with pytest.raises(ValueError, match=named):
        tree.extend(0, ids)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=named):
        tree.speculate(ids)  # type: ignore[arg-type]
    tree.check_integrity()
    assert (tree.num_nodes, tree.num_tokens, tree.count([1, 2])) == before


@pytest.mark.parametrize(("ids", "named"), BAD_TOKENS)
def test_bad_tokens_leave_cache_intact(ids: object, named: str) -> None:
    cache = SuffixCache(8)
    cache.start_request("r", [1, 2, 3])
    with pytest.raises(ValueError, match=named):
        cache.add_tokens("r", ids)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=named):
        cache.start_request("q", ids)  # type: ignore[arg-type]
    assert cache.active_requests == ["r"]
    cache.add_tokens("r", [1, 2])
    assert cache.speculate("r", extend=False).token_ids == [3, 1]
    cache.check_integrity()


def test_request_id_errors() -> None:
    cache = SuffixCache(8)
    cache.start_request("r", [1])
    with pytest.raises(KeyError, match="'r' is already active"):
        cache.start_request("r", [2])
    for call in (cache.add_tokens, cache.speculate):
        with pytest.raises(KeyError, match="'nope'"):
            call("nope", [1])
    with pytest.raises(KeyError, match="'nope'"):
        cache.stop_request("nope")
    with pytest.raises(KeyError, match="not in the global cache"):
        cache.evict("r")
    with pytest.raises(ValueError, match="request id"):
        cache.start_request(1.5, [1])  # type: ignore[arg-type]
    cache.start_request(7, [1])  # int and str ids are distinct and keep their type
    cache.start_request("7", [1])
    assert sorted(cache.active_requests, key=str) == [7, "7", "r"]


@pytest.mark.parametrize(
    ("kw", "named"),
    [
        ({"max_spec_tokens": -1}, "max_spec_tokens"),
        ({"max_spec_factor": -0.5}, "max_spec_factor"),
        ({"max_spec_factor": float("nan")}, "max_spec_factor"),
        ({"max_spec_offset": float("inf")}, "max_spec_offset"),
        ({"min_token_prob": 1.5}, "min_token_prob"),
    ],
)
def test_bad_draft_knobs(kw: dict[str, float], named: str) -> None:
    tree = SuffixTree(8)
    with pytest.raises(ValueError, match=named):
        tree.speculate([1], **kw)  # type: ignore[arg-type]
    cache = SuffixCache(8)
    cache.start_request("r", [1])
    with pytest.raises(ValueError, match=named):
        cache.speculate("r", **kw)  # type: ignore[arg-type]


def test_bad_cache_options() -> None:
    with pytest.raises(ValueError, match="-3"):
        SuffixCache(8, max_cached_tokens=-3)
    with pytest.raises(ValueError, match="'mru'"):
        SuffixCache(8, eviction="mru")
    with pytest.raises(ValueError, match="removal_chunk"):
        SuffixCache(8, removal_chunk=0)


def test_numpy_inputs_agree_with_lists() -> None:
    seq = [4, 5, 6, 4, 5, 7, 4, 5]
    trees = [SuffixTree(8) for _ in range(4)]
    trees[0].extend(0, seq)
    trees[1].extend(0, np.array(seq, dtype=np.int32))
    trees[2].extend(0, np.array(seq, dtype=np.int64))
    strided = np.zeros(2 * len(seq), dtype=np.int32)
    strided[::2] = seq
    trees[3].extend(0, strided[::2])  # non-contiguous: copied
    want = trees[0].speculate([4, 5], tree=True)
    for t in trees[1:]:
        got = t.speculate(np.array([4, 5], dtype=np.int32), tree=True)
        assert (got.token_ids, got.probs) == (want.token_ids, want.probs)
    assert trees[3].count(seq) == 1


def test_empty_prompt_and_one_token_context() -> None:
    cache = SuffixCache(16)
    cache.start_request("a", [])
    assert cache.speculate("a").token_ids == []
    cache.add_tokens("a", [9, 8, 9])
    # The anchor never drafts from a 1-token match; we do.
    d = cache.speculate("a")
    assert d.match_len == 1 and d.token_ids[:1] == [8]
    tree = SuffixTree(4)
    tree.extend(0, [3, 1, 3, 2])
    assert tree.speculate([3]).token_ids == [1] and tree.speculate([3]).match_len == 1
