"""A 1M-token sequence: linear-time insert, drafts, removal; memory_bytes() tracks RSS."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from arctic_suffix import SuffixCache, SuffixTree

# Measured in a fresh interpreter: in a long test process, pages freed by earlier tests are
# reused and RSS grows by less than what is allocated (seen: 82.5 MB growth for 92.5 MB).
_MEASURE_RSS = textwrap.dedent(
    """
    import json, numpy as np
    from arctic_suffix import SuffixTree

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    seq = np.random.default_rng(0).integers(0, 30_000, 1_000_000, dtype=np.int32)
    tree = SuffixTree(64)
    before = rss()
    tree.extend(0, seq)
    print(json.dumps({"grown": rss() - before, "memory_bytes": tree.memory_bytes()}))
    """
)


@pytest.mark.slow
def test_memory_bytes_tracks_rss_growth_on_one_million_tokens() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE_RSS], check=True, capture_output=True, text=True
    )
    measured = json.loads(out.stdout)
    assert abs(measured["memory_bytes"] - measured["grown"]) <= 0.1 * measured["grown"], measured


@pytest.mark.slow
def test_one_million_tokens() -> None:
    rng = np.random.default_rng(0)
    seq = rng.integers(0, 30_000, 1_000_000, dtype=np.int32)
    tree = SuffixTree(64)
    tree.extend(0, seq)
    assert tree.num_tokens == 1_000_000
    d = tree.speculate(seq[500_000:500_010], max_spec_tokens=16, max_spec_factor=2.0)
    assert d.token_ids == seq[500_010:500_026].tolist()
    tree.check_integrity()
    tree.remove(0)
    assert tree.num_nodes == 1


def test_incremental_removal_of_a_large_response_stays_short() -> None:
    rng = np.random.default_rng(1)
    seq = rng.integers(0, 30_000, 200_000, dtype=np.int32)
    cache = SuffixCache(64, max_cached_requests=1, removal_chunk=4096)
    cache.start_request("big", seq[:0])
    cache.add_tokens("big", seq)
    cache.stop_request("big")
    assert cache.pending_work == 1  # a huge response joins the global tree a chunk per call
    cache.run_pending_work()
    cache.start_request("next", [1])
    cache.add_tokens("next", [2])
    cache.stop_request("next")
    cache.start_request("poll", [1])
    calls = 0
    while cache.pending_work:
        cache.speculate("poll")
        calls += 1
    assert calls == pytest.approx(200_000 / 4096, abs=2)
    cache.check_integrity()


def test_huge_response_is_inserted_over_calls_and_can_be_evicted_midway() -> None:
    rng = np.random.default_rng(2)
    seq = rng.integers(0, 1000, 50_000, dtype=np.int32)
    cache = SuffixCache(32, removal_chunk=800)  # 100 tokens inserted per call
    cache.start_request("big", seq[:0])
    cache.add_tokens("big", seq)
    cache.stop_request("big")
    assert cache.cached_tokens == 50_000
    cache.start_request("probe", seq[40_000:40_010].tolist())
    calls = 0
    while cache.pending_work:
        cache.speculate("probe")
        calls += 1
    assert calls == pytest.approx(500, abs=3)
    d = cache.speculate("probe", max_spec_tokens=5, max_spec_factor=1.0, adaptive=False)
    assert d.token_ids == seq[40_010:40_015].tolist()
    cache.check_integrity()
    cache.start_request("big2", seq[:0])
    cache.add_tokens("big2", seq[::-1].copy())
    cache.stop_request("big2")
    cache.speculate("probe")  # part of big2 inserted
    cache.evict("big2")
    cache.run_pending_work()
    assert cache.pending_work == 0 and cache.cached_requests == ["big"]
    cache.check_integrity()


def test_a_huge_finished_request_is_freed_over_later_calls() -> None:
    # Freeing a 1M-token request's own tree at once took 200-340 ms inside stop_request;
    # a tree over 16384 tokens is now freed a bounded piece per call (~4 x removal_chunk
    # hash-map entries), its bytes counted by memory_bytes() until then.
    rng = np.random.default_rng(3)
    seq = rng.integers(0, 1000, 100_000, dtype=np.int32)  # ~100 children per depth-1 node
    cache = SuffixCache(64, max_cached_requests=0, removal_chunk=256)  # nothing is cached
    empty = cache.memory_bytes()
    cache.start_request("big", seq)
    held = cache.memory_bytes() - empty
    cache.stop_request("big")
    assert cache.memory_bytes() - empty > 0.5 * held
    assert cache.pending_work == 0  # freeing is not a cache-content job
    cache.start_request("poll", [1])
    sizes = [cache.memory_bytes()]
    for _ in range(10):
        cache.speculate("poll")
        sizes.append(cache.memory_bytes())
    drops = [a - b for a, b in itertools.pairwise(sizes)]
    assert all(d > 0 for d in drops), drops  # each call frees a piece
    assert sum(drops) < 0.5 * held  # ... not all of it
    cache.run_pending_work()  # drains the freeing too
    assert cache.memory_bytes() - empty < 0.05 * held
    cache.check_integrity()
