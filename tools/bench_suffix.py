"""Suffix-decoding benchmark: arctic_suffix.SuffixCache vs arctic-inference 0.3.0 vs n-gram.

Replays token traces through each drafter with simulated verification (arctic_suffix.replay):
every step drafts K tokens, accepts the prefix that equals the true continuation, plus one
bonus token.

    uv run python tools/bench_suffix.py [results_dir] [--quick]

Prints per workload and K: tokens per verification step, acceptance rate, speculate
p50/p99 (us), update cost (us/token); then bytes per cached token (RSS growth, measured in
a fresh process per drafter), FIFO vs LRU under a token budget, and the stall caused by
evicting a huge response. Writes results.json and results.png to the results dir.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import multiprocessing as mp
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from arctic_suffix import SuffixCache, SuffixCacheDrafter, Trace, replay
from arctic_vllm.bench import apply_edits, humaneval_tasks, stdlib_files

KS = (8, 16, 64)
DEPTH = 64
_WORD = re.compile(r"\w+|\s+|[^\w\s]")


class Tokenizer:
    """Words, whitespace runs and punctuation, each mapped to a stable id (no model)."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}

    def __call__(self, text: str) -> list[int]:
        return [self.vocab.setdefault(w, len(self.vocab)) for w in _WORD.findall(text)]


@dataclass
class Request:
    req_id: str
    prompt: list[int]
    output: list[int]


# --- workloads ---------------------------------------------------------------------------


def agentic_edits(tok: Tokenizer, n_files: int, turns: int, rng: random.Random) -> list[Request]:
    """Multi-turn edit sessions: each turn re-emits the file with a few edits."""
    files = [f for f in stdlib_files("heldout") if 3_000 < len(f.text) < 12_000][:n_files]
    reqs = []
    for i, f in enumerate(files):
        text = f.text
        history = tok(f"Edit {f.rel_path}:\n") + tok(text)
        for t in range(turns):
            new = apply_edits(text, rng, 3)
            out = tok(new)
            reqs.append(Request(f"edit-{i}-{t}", history[-4096:], out))
            history = history + out
            text = new
    return reqs


def rollouts(tok: Tokenizer, n_tasks: int, n_rollouts: int, rng: random.Random) -> list[Request]:
    """Independent rollouts of one task: same prompt, similar but different solutions."""
    reqs = []
    for i, task in enumerate(humaneval_tasks("all")[:n_tasks]):
        prompt = tok(task.prompt)
        for r in range(n_rollouts):
            out = tok(apply_edits(task.prompt + task.canonical_solution, rng, 2))
            reqs.append(Request(f"roll-{i}-{r}", prompt, out))
    return reqs


def humaneval(tok: Tokenizer, n_tasks: int) -> list[Request]:
    return [
        Request(f"he-{i}", tok(t.prompt), tok(t.canonical_solution))
        for i, t in enumerate(humaneval_tasks("all")[:n_tasks])
    ]


def prose(tok: Tokenizer, n_docs: int) -> list[Request]:
    """Docstrings of the stdlib: natural language with little repetition."""
    docs: list[str] = []
    for f in stdlib_files("train"):
        docs += [d for d in re.findall(r'"""(.*?)"""', f.text, re.S) if len(d) > 600]
        if len(docs) >= n_docs:
            break
    reqs = []
    for i, d in enumerate(docs[:n_docs]):
        toks = tok(d)
        cut = len(toks) // 4
        reqs.append(Request(f"prose-{i}", toks[:cut], toks[cut:]))
    return reqs


# --- drafters ------------------------------------------------------------------------------


def ours(**kw: Any) -> SuffixCacheDrafter:
    """arctic_suffix.SuffixCache as replay's drafter (speculate's defaults)."""
    return SuffixCacheDrafter(SuffixCache(DEPTH, **kw))


class Anchor:
    name = "arctic_inference"

    def __init__(self, max_cached_requests: int = -1) -> None:
        from arctic_inference.suffix_decoding import SuffixDecodingCache

        self.cache = SuffixDecodingCache(DEPTH, max_cached_requests)

    def start(self, rid: str, prompt: np.ndarray) -> None:
        self.cache.start_request(rid, prompt)

    def draft(self, rid: str, ctx: list[int], k: int) -> list[int]:
        # vLLM's integration passes the last max_depth tokens; so do we.
        pattern = np.asarray(ctx[-DEPTH:], dtype=np.int32)
        return list(self.cache.speculate(rid, pattern, max_spec_tokens=k).token_ids)

    def add(self, rid: str, toks: np.ndarray) -> None:
        self.cache.add_active_response(rid, toks)

    def stop(self, rid: str) -> None:
        self.cache.stop_request(rid)


class NGram:
    """Prompt lookup (vLLM's ngram): the latest earlier occurrence of the last n tokens,
    n from 4 down to 1, and the K tokens that followed it; the request's own context only."""

    name = "ngram"
    N = 4

    def __init__(self) -> None:
        self.index: dict[str, dict[tuple[int, ...], int]] = {}
        self.ctx: dict[str, list[int]] = {}

    def _push(self, rid: str, toks: np.ndarray) -> None:
        ctx, idx = self.ctx[rid], self.index[rid]
        for t in toks.tolist():
            ctx.append(t)
            end = len(ctx)
            for n in range(1, self.N + 1):
                if end - n - 1 >= 0:  # index the n-gram ending just before the newest token
                    idx[tuple(ctx[end - n - 1 : end - 1])] = end - 1

    def start(self, rid: str, prompt: np.ndarray) -> None:
        self.ctx[rid], self.index[rid] = [], {}
        self._push(rid, prompt)

    def draft(self, rid: str, ctx: list[int], k: int) -> list[int]:
        c, idx = self.ctx[rid], self.index[rid]
        for n in range(self.N, 0, -1):
            pos = idx.get(tuple(c[-n:]))
            if pos is not None:
                return c[pos : pos + k]
        return []

    def add(self, rid: str, toks: np.ndarray) -> None:
        self._push(rid, toks)

    def stop(self, rid: str) -> None:
        del self.ctx[rid], self.index[rid]


# --- simulation -----------------------------------------------------------------------------


def traces(reqs: list[Request]) -> list[Trace]:
    """int32 arrays, made once: every drafter here reads them without conversion."""
    return [
        Trace(r.req_id, np.asarray(r.prompt, dtype=np.int32), np.asarray(r.output, dtype=np.int32))
        for r in reqs
    ]


def run_replay(drafter: Any, reqs: list[Trace], k: int, bar: tqdm) -> dict[str, float]:
    """arctic_suffix.replay: K-token drafts, the prefix equal to the output accepted, plus
    one bonus token per step."""
    return replay(reqs, k, drafter, on_trace=lambda _: bar.update(1)).summary()


# --- memory, eviction, removal stalls -------------------------------------------------------


def _rss() -> int:
    # Hand free heap pages back first, so that reused free memory does not hide growth.
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _memory_child(which: str, outputs: list[list[int]], q: mp.Queue[dict[str, Any]]) -> None:
    arrays = [np.asarray(o, dtype=np.int32) for o in outputs]
    del outputs
    # Warm the allocator and import everything before the baseline.
    d: object = ours() if which == "ours" else Anchor()
    gc.collect()
    before = _rss()
    for i, a in enumerate(arrays):
        d.start(f"m{i}", a[:0])  # type: ignore[attr-defined]
        d.add(f"m{i}", a)  # type: ignore[attr-defined]
        d.stop(f"m{i}")  # type: ignore[attr-defined]
    gc.collect()
    grown = _rss() - before
    est = d.cache.memory_bytes() if which == "ours" else None  # type: ignore[attr-defined]
    q.put({"rss_bytes": grown, "memory_bytes": est})


def measure_memory(outputs: list[list[int]]) -> dict[str, dict[str, float]]:
    n = sum(len(o) for o in outputs)
    res = {}
    ctx = mp.get_context("spawn")
    for which in ("ours", "anchor"):
        q: mp.Queue[dict[str, Any]] = ctx.Queue()
        p = ctx.Process(target=_memory_child, args=(which, outputs, q))
        p.start()
        r = q.get()
        p.join()
        r["bytes_per_token"] = r["rss_bytes"] / n
        if r["memory_bytes"] is not None:
            r["memory_bytes_over_rss"] = r["memory_bytes"] / max(1, r["rss_bytes"])
        res[which] = r
    return res


def eviction_order(reqs: list[Request], budget: int) -> dict[str, float]:
    """tokens/step at K=16 with the global cache held to `budget` tokens."""
    out = {}
    for policy in ("fifo", "lru"):
        d = ours(max_cached_tokens=budget, eviction=policy)
        with tqdm(total=len(reqs), desc=f"eviction {policy}", leave=False) as bar:
            out[policy] = run_replay(d, traces(reqs), 16, bar)["tokens_per_step"]
    return out


def removal_stall(n_tokens: int) -> dict[str, float]:
    """Evicting one huge response: the longest single call a caller waits for."""
    rng = np.random.default_rng(0)
    big = rng.integers(0, 50_000, n_tokens, dtype=np.int32)
    small = rng.integers(0, 50_000, 256, dtype=np.int32)
    res: dict[str, float] = {"tokens": n_tokens}
    c = SuffixCache(DEPTH, max_cached_requests=1)
    c.start_request("big", big[:0])
    c.add_tokens("big", big)
    t0 = time.perf_counter()
    c.stop_request("big")  # the response joins the global tree a chunk per call
    res["ours_stop_call_ms"] = (time.perf_counter() - t0) * 1e3
    c.start_request("poll0", small)
    worst = 0.0
    while c.pending_work:
        t0 = time.perf_counter()
        c.speculate("poll0", max_spec_tokens=8)
        worst = max(worst, time.perf_counter() - t0)
    res["ours_insert_worst_call_ms"] = worst * 1e3
    c.stop_request("poll0")
    worst = 0.0
    t_all = time.perf_counter()
    c.start_request("next", small)  # evicts "big": removal then proceeds a chunk per call
    c.add_tokens("next", small[:1])
    c.stop_request("next")
    c.start_request("poll", small)
    while c.pending_work:
        t0 = time.perf_counter()
        c.speculate("poll", max_spec_tokens=8)
        worst = max(worst, time.perf_counter() - t0)
    res["ours_worst_call_ms"] = worst * 1e3
    res["ours_total_removal_s"] = time.perf_counter() - t_all
    a = Anchor()
    a.start("big", big[:0])
    a.add("big", big)
    a.stop("big")
    t0 = time.perf_counter()
    a.cache.evict_cached_response("big")
    res["anchor_evict_call_ms"] = (time.perf_counter() - t0) * 1e3
    return res


# --- main -------------------------------------------------------------------------------------


def workloads(quick: bool) -> dict[str, list[Request]]:
    tok, rng = Tokenizer(), random.Random(0)
    s = 1 if quick else 3
    return {
        "agentic_edit": agentic_edits(tok, 2 * s, 4, rng),
        "rollouts": rollouts(tok, 4 * s, 4, rng),
        "humaneval": humaneval(tok, 20 * s),
        "prose": prose(tok, 10 * s),
    }


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["replay"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    methods = ("arctic_suffix", "arctic_inference", "ngram")
    width = 0.8 / (len(methods) * len(KS))
    for mi, m in enumerate(methods):
        for ki, k in enumerate(KS):
            x = [i + (mi * len(KS) + ki) * width for i in range(len(names))]
            tps = [results["replay"][w][m][str(k)]["tokens_per_step"] for w in names]
            p50 = [results["replay"][w][m][str(k)]["spec_p50_us"] for w in names]
            axes[0].bar(x, tps, width, label=f"{m} K={k}")
            axes[1].bar(x, p50, width, label=f"{m} K={k}")
    for ax, title in zip(axes, ("tokens per verification step", "speculate p50 (us)"), strict=True):
        ax.set_xticks([i + 0.4 for i in range(len(names))], names)
        ax.set_title(title)
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=6, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results_dir", nargs="?", default="results/bench_suffix")
    ap.add_argument("--quick", action="store_true", help="small traces, under ~30 s")
    args = ap.parse_args(argv)
    out_dir = Path(args.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wls = workloads(args.quick)
    makers: dict[str, Callable[[], object]] = {
        "arctic_suffix": ours,
        "arctic_inference": Anchor,
        "ngram": NGram,
    }
    results: dict[str, Any] = {"replay": {}, "quick": args.quick}
    total = sum(len(r) for r in wls.values()) * len(KS) * len(makers)
    with tqdm(total=total, desc="replay") as bar:
        for wname, reqs in wls.items():
            results["replay"][wname] = {}
            arrays = traces(reqs)
            for mname, make in makers.items():
                results["replay"][wname][mname] = {
                    str(k): run_replay(make(), arrays, k, bar) for k in KS
                }
    outputs = [r.output for rs in wls.values() for r in rs]
    if not args.quick:
        outputs = outputs * 3  # more tokens: RSS growth well above allocator noise
    results["memory"] = measure_memory(outputs)
    edit_reqs = wls["agentic_edit"] + wls["rollouts"]
    budget = sum(len(r.output) for r in edit_reqs) // 5
    results["eviction_tokens_per_step_k16"] = eviction_order(edit_reqs, budget)
    results["removal"] = removal_stall(200_000 if args.quick else 1_000_000)
    report(results)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    plot(results, out_dir / "results.png")
    print(f"wrote {out_dir / 'results.json'} and {out_dir / 'results.png'}")
    return 0


def report(res: dict[str, Any]) -> None:
    print(
        f"\n{'workload':13} {'K':>3} | {'tokens/step (ours/anchor/ngram)':>32} | "
        f"{'accept (ours/anchor)':>20} | {'spec p50 us (ours/anchor)':>26} | "
        f"{'p99 us':>15} | {'update us/tok':>15}"
    )
    for w, by_m in res["replay"].items():
        for k in KS:
            o, a, n = (by_m[m][str(k)] for m in ("arctic_suffix", "arctic_inference", "ngram"))
            print(
                f"{w:13} {k:>3} | {o['tokens_per_step']:9.2f} {a['tokens_per_step']:9.2f} "
                f"{n['tokens_per_step']:9.2f}    | {o['acceptance_rate']:9.2f} "
                f"{a['acceptance_rate']:9.2f}  | {o['spec_p50_us']:9.1f} {a['spec_p50_us']:9.1f}"
                f" ({o['spec_p50_us'] / max(a['spec_p50_us'], 1e-9):4.2f}x) | "
                f"{o['spec_p99_us']:6.1f} {a['spec_p99_us']:7.1f} | "
                f"{o['update_us_per_token']:6.2f} {a['update_us_per_token']:7.2f}"
            )
    m = res["memory"]
    print(
        f"\nbytes per cached token (RSS growth): ours {m['ours']['bytes_per_token']:.1f}, "
        f"anchor {m['anchor']['bytes_per_token']:.1f} "
        f"({m['ours']['bytes_per_token'] / m['anchor']['bytes_per_token']:.2f}x); "
        f"memory_bytes()/RSS = {m['ours']['memory_bytes_over_rss']:.2f}"
    )
    e = res["eviction_tokens_per_step_k16"]
    print(
        f"eviction under a 20% token budget, K=16 tokens/step: FIFO {e['fifo']:.3f}, "
        f"LRU {e['lru']:.3f}"
    )
    r = res["removal"]
    print(
        f"evicting a {r['tokens']:,}-token response: ours worst call "
        f"{r['ours_worst_call_ms']:.2f} ms (removal spread over calls, "
        f"{r['ours_total_removal_s']:.2f} s in all); anchor one call "
        f"{r['anchor_evict_call_ms']:.0f} ms"
    )
    print(
        f"caching it: ours stop_request {r['ours_stop_call_ms']:.1f} ms, then worst call "
        f"{r['ours_insert_worst_call_ms']:.2f} ms while it is inserted chunk by chunk"
    )


if __name__ == "__main__":
    sys.exit(main())
