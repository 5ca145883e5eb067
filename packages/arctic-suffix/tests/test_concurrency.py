"""Threads share one cache; the GIL is released in C++ work and a mutex orders calls."""

from __future__ import annotations

import random
import threading

from arctic_suffix import SuffixCache, SuffixTree


def test_threads_share_a_cache() -> None:
    cache = SuffixCache(16, max_cached_tokens=3000, removal_chunk=64)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for r in range(15):
                rid = f"{seed}-{r}"
                cache.start_request(rid, [rng.randrange(8) for _ in range(20)])
                for _ in range(20):
                    d = cache.speculate(rid, max_spec_tokens=8, tree=rng.random() < 0.3)
                    cache.add_tokens(rid, [*d.token_ids[:2], rng.randrange(8)])
                cache.stop_request(rid)
        except BaseException as e:  # surfaced by the assert below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert cache.active_requests == []
    assert 0 < cache.cached_tokens <= 3000
    cache.run_pending_work()
    cache.check_integrity()


def test_threads_share_a_tree() -> None:
    tree = SuffixTree(8)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for i in range(50):
            tree.extend(seed * 1000 + i, [rng.randrange(5) for _ in range(30)])
            tree.speculate([rng.randrange(5) for _ in range(4)])

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(tree) == 200 and tree.num_tokens == 200 * 30
    tree.check_integrity()
