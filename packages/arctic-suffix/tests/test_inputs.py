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


def _token_arrays() -> dict[str, object]:
    """[4, 5, 6, 4, 5, 7, 4, 5] in layouts whose raw bytes are not native int32s."""
    seq = [4, 5, 6, 4, 5, 7, 4, 5]
    packed = np.zeros(len(seq), dtype=[("pad", "i1"), ("tok", ">i4")])  # unaligned, stride 5
    packed["tok"] = seq
    reversed_ = np.array(seq[::-1], dtype=np.int32)[::-1]  # negative stride
    return {
        "big-endian int32": np.array(seq, dtype=">i4"),
        "big-endian int64": np.array(seq, dtype=">i8"),
        "little-endian int32": np.array(seq, dtype="<i4"),
        "struct field": packed["tok"],
        "negative stride": reversed_,
        "memoryview of >i4": memoryview(np.array(seq, dtype=">i4")),
    }


@pytest.mark.parametrize("layout", list(_token_arrays()))
def test_token_arrays_are_read_by_value_not_by_raw_bytes(layout: str) -> None:
    ids = _token_arrays()[layout]
    want = SuffixTree(8)
    want.extend(0, [4, 5, 6, 4, 5, 7, 4, 5])
    got = SuffixTree(8)
    got.extend(0, ids)  # type: ignore[arg-type]
    assert got.count([4, 5]) == want.count([4, 5]) == 3
    assert got.count(ids) == 1  # type: ignore[arg-type]
    assert (
        got.speculate(ids, tree=True).token_ids
        == want.speculate(  # type: ignore[arg-type]
            [4, 5, 6, 4, 5, 7, 4, 5], tree=True
        ).token_ids
    )
    cache = SuffixCache(8)
    cache.start_request("p", ids)  # type: ignore[arg-type]
    cache.add_tokens("p", ids)  # type: ignore[arg-type]
    cache.stop_request("p")
    cache.start_request("q", [])
    assert cache.cached_tokens == 8
    assert cache.speculate("q", ids, extend=False).token_ids == [6, 4]  # type: ignore[arg-type]


def test_big_endian_ids_out_of_range_are_refused_by_value() -> None:
    with pytest.raises(ValueError, match=r"token_ids\[1\] = -2 "):
        SuffixTree(8).extend(0, np.array([1, -2], dtype=">i4"))
    with pytest.raises(ValueError, match=str(2**31)):
        SuffixTree(8).extend(0, np.array([1, 2**31], dtype=">i8"))


def test_bytearray_is_not_token_ids() -> None:
    with pytest.raises(ValueError, match="bytearray"):
        SuffixTree(8).extend(0, bytearray(b"\x01\x02"))  # type: ignore[arg-type]


def test_buffers_are_read_through_their_format() -> None:
    import array
    import ctypes

    seq = [4, 5, 6, 4, 5, 7, 4, 5]
    for ids in (
        array.array("i", seq),
        array.array("H", seq),
        array.array("q", seq),
        memoryview(np.array(seq, dtype="<i8")),
        memoryview(np.array(seq, dtype=">u2")),
        memoryview(np.repeat(np.array(seq, dtype=">i4"), 2))[::2],
        (ctypes.c_int32 * len(seq))(*seq),
    ):
        tree = SuffixTree(8)
        tree.extend(0, ids)  # type: ignore[arg-type]
        assert tree.count(seq) == 1 and tree.count([4, 5]) == 3, ids
    with pytest.raises(ValueError, match="must hold integers, got a array of format 'd'"):
        SuffixTree(8).extend(0, array.array("d", [1.0]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[1\] = -1 "):
        SuffixTree(8).extend(0, array.array("b", [1, -1]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[0\] = 18446744073709551615 "):
        SuffixTree(8).extend(0, memoryview(np.array([2**64 - 1], dtype=">u8")))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be 1-D, got a 2-D memoryview"):
        SuffixTree(8).extend(0, memoryview(np.zeros((2, 2), dtype=np.int32)))  # type: ignore[arg-type]
