"""The longest single SuffixCache call while a huge response is cached and evicted.

    uv run python packages/arctic-suffix/scripts/measure_stalls.py [--tokens 1000000] [--json F]

Each call is timed twice: wall clock (what a caller waits) and the calling thread's CPU
time (the work the call did). On a shared machine the two differ by the time the thread was
not scheduled; the load average is printed beside them. The caller's own input costs are
listed apart: add_tokens(n) is O(n * depth) by nature.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from arctic_suffix import SuffixCache


def timed(call: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.thread_time()
    call()
    return (time.perf_counter() - wall) * 1e3, (time.thread_time() - cpu) * 1e3


def drain(cache: SuffixCache, rid: str) -> dict[str, float]:
    """speculate until no work is pending: the longest call by wall clock and by CPU."""
    walls, cpus = [], []
    while cache.pending_work:
        w, c = timed(lambda: cache.speculate(rid, max_spec_tokens=8))
        walls.append(w)
        cpus.append(c)
    if not walls:
        return {"calls": 0}
    return {
        "calls": len(walls),
        "max_wall_ms": max(walls),
        "max_cpu_ms": max(cpus),
        "p50_wall_ms": float(np.median(walls)),
        "total_wall_ms": float(sum(walls)),
    }


def measure(n_tokens: int) -> dict[str, object]:
    rng = np.random.default_rng(0)
    big = rng.integers(0, 50_000, n_tokens, dtype=np.int32)
    small = rng.integers(0, 50_000, 256, dtype=np.int32)
    mid = rng.integers(0, 50_000, 16_384, dtype=np.int32)  # the largest inserted at once
    out: dict[str, object] = {"tokens": n_tokens, "cpus": os.cpu_count()}
    out["loadavg_before"] = os.getloadavg()[0]
    cache = SuffixCache(64, max_cached_requests=2)
    cache.start_request("big", big[:0])
    out["input: add_tokens(big) ms"] = timed(lambda: cache.add_tokens("big", big))
    out["stop_request(big) ms"] = timed(lambda: cache.stop_request("big"))
    cache.start_request("poll", small)
    out["while big joins the global tree"] = drain(cache, "poll")
    cache.start_request("mid", mid[:0])
    cache.add_tokens("mid", mid)
    out["stop_request(16384 tokens) ms"] = timed(lambda: cache.stop_request("mid"))
    out["evict(big) ms"] = timed(lambda: cache.evict("big"))
    out["while big is removed"] = drain(cache, "poll")
    out["loadavg_after"] = os.getloadavg()[0]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    res = measure(args.tokens)
    for key, value in res.items():
        if isinstance(value, tuple):
            value = f"wall {value[0]:.1f}, cpu {value[1]:.1f}"
        elif isinstance(value, dict):
            value = ", ".join(
                f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items()
            )
        print(f"{key:34s} {value}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
