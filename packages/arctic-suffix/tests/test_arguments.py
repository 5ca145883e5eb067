"""Every numeric and boolean knob of every public method and constructor: a bad value
(oversized, the wrong type, None where None means nothing) raises an error naming the
parameter and the value, never pybind's generic "incompatible function arguments"."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from arctic_suffix import MAX_DEPTH_LIMIT, SuffixCache, SuffixTree


def _tree() -> SuffixTree:
    t = SuffixTree(8)
    t.extend(0, [1, 2, 3])
    return t


def _cache() -> SuffixCache:
    c = SuffixCache(8)
    c.start_request("r", [1, 2, 3])
    return c


# name -> a call taking the knob's value
CALLS: dict[str, Callable[[Any], object]] = {
    "SuffixTree(max_depth)": lambda v: SuffixTree(v),
    "SuffixTree.extend(seq_id)": lambda v: _tree().extend(v, [1]),
    "SuffixTree.remove(seq_id)": lambda v: _tree().remove(v),
    "SuffixTree.__contains__(seq_id)": lambda v: v in _tree(),
    "SuffixCache(max_depth)": lambda v: SuffixCache(v),
    "SuffixCache(max_cached_requests)": lambda v: SuffixCache(8, max_cached_requests=v),
    "SuffixCache(max_cached_tokens)": lambda v: SuffixCache(8, max_cached_tokens=v),
    "SuffixCache(removal_chunk)": lambda v: SuffixCache(8, removal_chunk=v),
    "SuffixCache.run_pending_work(max_units)": lambda v: _cache().run_pending_work(v),
}
for knob in ("max_spec_tokens", "max_spec_factor", "max_spec_offset", "min_token_prob", "tree"):
    CALLS[f"SuffixTree.speculate({knob})"] = lambda v, k=knob: _tree().speculate([1], **{k: v})
for knob in (
    "max_spec_tokens",
    "max_spec_factor",
    "max_spec_offset",
    "min_token_prob",
    "tree",
    "adaptive",
    "extend",
):
    CALLS[f"SuffixCache.speculate({knob})"] = lambda v, k=knob: _cache().speculate("r", **{k: v})

INTS = [
    c for c in CALLS if re.search(r"\((max_depth|seq_id|max_c|removal|max_units|max_spec_t)", c)
]
OPTIONAL = [c for c in CALLS if re.search(r"\((max_cached|max_units|max_spec_tokens)", c)]
FLOATS = [c for c in CALLS if re.search(r"\((max_spec_factor|max_spec_offset|min_token_prob)", c)]
BOOLS = [c for c in CALLS if re.search(r"\((tree|adaptive|extend)\)", c)]


I64 = (-(2**63), 2**63 - 1)
RANGES = {
    "max_depth": (1, MAX_DEPTH_LIMIT),
    "seq_id": I64,
    "max_cached_requests": (0, I64[1]),
    "max_cached_tokens": (0, I64[1]),
    "removal_chunk": (1, I64[1]),
    "max_units": (0, I64[1]),
    "max_spec_tokens": (0, 2**20),
}


def _param(call: str) -> str:
    return call[call.index("(") + 1 : -1]


def _refused(call: str, value: object, error: type[Exception]) -> None:
    with pytest.raises(error) as err:
        CALLS[call](value)
    message = str(err.value)
    assert "incompatible" not in message
    assert _param(call) in message and repr(value)[:40] in message, message


@pytest.mark.parametrize(
    ("call", "value"),
    [
        (call, value)
        for call in INTS
        for value in (2**31, 2**63, 2**64, -(2**63) - 1, 10**30)
        if not RANGES[_param(call)][0] <= value <= RANGES[_param(call)][1]
    ],
)
def test_oversized_ints_are_named(call: str, value: int) -> None:
    _refused(call, value, ValueError)


@pytest.mark.parametrize("call", INTS)
def test_one_past_each_end_of_the_range_is_named(call: str) -> None:
    lo, hi = RANGES[_param(call)]
    _refused(call, hi + 1, ValueError)
    _refused(call, lo - 1, ValueError)


@pytest.mark.parametrize("call", INTS)
@pytest.mark.parametrize("value", [1.5, 8.0, "8", True, [8]])
def test_ints_of_the_wrong_type_are_named(call: str, value: object) -> None:
    _refused(call, value, TypeError)


@pytest.mark.parametrize("call", [c for c in INTS if c not in OPTIONAL])
def test_none_is_named_where_it_means_nothing(call: str) -> None:
    _refused(call, None, TypeError)


@pytest.mark.parametrize("call", FLOATS)
@pytest.mark.parametrize("value", [None, "0.5", True, [0.5]])
def test_floats_of_the_wrong_type_are_named(call: str, value: object) -> None:
    _refused(call, value, TypeError)


@pytest.mark.parametrize("call", FLOATS)
def test_floats_too_large_are_named(call: str) -> None:
    _refused(call, 10**400, ValueError)


@pytest.mark.parametrize("call", BOOLS)
@pytest.mark.parametrize("value", [None, 1, 0, "yes"])
def test_bools_of_the_wrong_type_are_named(call: str, value: object) -> None:
    _refused(call, value, TypeError)


def test_negative_max_units_is_refused_not_clamped() -> None:
    _refused("SuffixCache.run_pending_work(max_units)", -1, ValueError)


@pytest.mark.parametrize(
    ("call", "value"),
    [
        ("SuffixTree(max_depth)", MAX_DEPTH_LIMIT),
        ("SuffixTree(max_depth)", np.int64(4)),
        ("SuffixTree.extend(seq_id)", 2**63 - 1),
        ("SuffixTree.extend(seq_id)", -(2**63)),
        ("SuffixCache(max_cached_tokens)", 2**63 - 1),
        ("SuffixCache(max_cached_requests)", np.int32(3)),
        ("SuffixCache(removal_chunk)", 2**63 - 1),
        ("SuffixCache.run_pending_work(max_units)", 2**63 - 1),
        ("SuffixTree.speculate(max_spec_tokens)", 2**20),
        ("SuffixCache.speculate(max_spec_factor)", np.float32(0.5)),
        ("SuffixCache.speculate(max_spec_offset)", 3),
        ("SuffixCache.speculate(min_token_prob)", np.float64(0.0)),
        ("SuffixCache.speculate(tree)", np.bool_(True)),
    ],
)
def test_valid_values_of_every_kind_are_accepted(call: str, value: object) -> None:
    CALLS[call](value)


def test_the_namespace_and_eviction_must_be_str() -> None:
    with pytest.raises(TypeError, match=r"namespace must be a str, got 3 \(int\)"):
        SuffixCache(8).start_request("r", [1], namespace=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"eviction must be a str, got None"):
        SuffixCache(8, eviction=None)  # type: ignore[arg-type]
