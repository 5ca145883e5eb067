"""Benchmark of arctic-runtime's reference engine on the bundled tiny model, per proposer.

    python tools/bench_runtime.py [--quick] [--batch-size 1] [--threads 1] [--out PATH]

For each workload (agentic edits, HumanEval, prose) and each proposer (none, suffix, MLP,
LSTM, hybrid suffix+LSTM, FP8 LSTM), in the same run: tokens/s, speed-up over no
speculation, mean acceptance length, acceptance per draft source, and a lossless check
(every request's tokens identical to no speculation). Methods are interleaved batch by batch,
so drift of a noisy machine hits all of them alike. Writes JSON and a PNG beside it.

Honest labels: `arctic_runtime.generate` is a reference engine (one transformers KV cache
and one target forward per request per step, a Python loop), not a serving engine; its
speed-ups say how the proposers compare on it, not what vLLM gets (tools/demo.py measures
that). CPU numbers are CPU numbers. The FP8 row runs Fp8Linear on the CPU (torch's CPU
``_scaled_mm`` or the dequantize fallback, printed): it checks losslessness and acceptance;
its speed says nothing about FP8 on a GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

import arctic_runtime as ar
from arctic_drafters import load_drafter
from arctic_kernels import Fp8Linear
from arctic_vllm.bench import TINY_DRAFTERS, TINY_MODEL, Request, build_workload

METHODS = ("none", "suffix", "mlp", "lstm", "hybrid", "lstm-fp8")
HEADER = (
    "arctic_runtime reference engine: per-request KV caches, one target forward per request "
    "per step, a Python loop; NOT a serving engine (tools/demo.py measures vLLM). "
    "CPU numbers are CPU numbers; FP8 speed on a CPU says nothing about FP8 on a GPU."
)


def workload_sizes(quick: bool) -> dict[str, dict[str, int]]:
    if quick:
        return {
            "agentic-edit": {"sessions": 1, "turns": 2, "max_chunk_tokens": 40},
            "humaneval": {"n": 2, "max_tokens": 16},
            "prose": {"n": 2, "prompt_tokens": 48, "max_tokens": 16},
        }
    return {"agentic-edit": {"sessions": 2, "turns": 3}, "humaneval": {}, "prose": {}}


def make_proposer(method: str) -> ar.Proposer | None:
    """A fresh proposer: no suffix tree or acceptance statistics carried between workloads."""
    if method == "none":
        return None
    if method == "suffix":
        return ar.SuffixProposer()
    if method == "hybrid":
        return ar.HybridProposer(ar.SuffixProposer(), drafter("lstm"))
    kind, _, quantized = method.partition("-")
    return drafter(kind, fp8=quantized == "fp8")


def drafter(kind: str, *, fp8: bool = False) -> ar.DrafterProposer:
    # A fresh load each time: FP8 quantizes the loaded module in place. Eager, unquantized
    # unless fp8 (round-to-nearest: the drafter is loaded here, not its saved FP8 layers).
    speculator = load_drafter(TINY_DRAFTERS / kind)
    build = ar.build_drafter(speculator, weights="fp8" if fp8 else "none", compile=False)
    return build.proposer


_COUNTERS = (
    "wall_time_s",
    "generated_tokens",
    "target_forwards",
    "draft_steps",
    "drafted_tokens",
    "accepted_tokens",
)


@dataclass
class Totals:
    """One (workload, method)'s counters, summed over its batches."""

    wall_time_s: float = 0.0
    generated_tokens: int = 0
    target_forwards: int = 0
    draft_steps: int = 0
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    per_source: dict[str, dict[str, int]] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)
    outputs: list[list[int]] = field(default_factory=list)

    def add(self, stats: ar.GenerationStats) -> None:
        for name in _COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(stats, name))
        for source, s in stats.per_source.items():
            mine = self.per_source.setdefault(source, dict.fromkeys(asdict(s), 0))
            for key, value in asdict(s).items():
                mine[key] += value

    def summary(self, baseline_tps: float) -> dict[str, Any]:
        """tokens/s: generated tokens over the wall time of the `generate` calls (prefill in)."""
        tps = self.generated_tokens / self.wall_time_s
        sources = {
            name: {
                **s,
                "acceptance_rate": s["accepted_tokens"] / max(1, s["draft_tokens"]),
                "mean_accepted_per_draft": s["accepted_tokens"] / max(1, s["drafts"]),
            }
            for name, s in self.per_source.items()
        }
        return {
            "tokens_per_s": tps,
            "speedup": tps / baseline_tps,
            "mean_acceptance_length": (
                self.accepted_tokens / self.draft_steps + 1.0 if self.draft_steps else 1.0
            ),
            "tokens_per_target_forward": self.generated_tokens / self.target_forwards,
            "acceptance_rate": self.accepted_tokens / max(1, self.drafted_tokens),
            "per_source": sources,
            "lossless": not self.mismatches,
            **{k: v for k, v in asdict(self).items() if k not in ("per_source", "outputs")},
        }


def first_difference(a: list[int], b: list[int]) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def run_workload(
    model: Any, requests: list[Request], args: argparse.Namespace, bar: tqdm
) -> dict[str, Totals]:
    proposers = {m: make_proposer(m) for m in args.methods}
    totals = {m: Totals() for m in args.methods}
    batches = [requests[i : i + args.batch_size] for i in range(0, len(requests), args.batch_size)]
    for batch in batches:
        for method in args.methods:
            bar.set_postfix_str(f"{method} {batch[0].name}")
            result = ar.generate(
                model,
                None,
                [r.prompt_ids for r in batch],
                proposers[method],
                max_new_tokens=max(r.max_tokens for r in batch),
                num_speculative_tokens=args.num_speculative_tokens,
            )
            totals[method].add(result.stats)
            totals[method].outputs += result.token_ids
            bar.update(len(batch))
    reference = totals["none"].outputs
    for method, t in totals.items():
        for r, want, got in zip(requests, reference, t.outputs, strict=True):
            if got != want:
                i = first_difference(want, got)
                t.mismatches.append(f"{r.name}@{i}")
                print(
                    f"\n!!! LOSSLESS MISMATCH: {method} on {r.name}: first difference at output "
                    f"token {i} (none: {want[i : i + 5]}, {method}: {got[i : i + 5]})",
                    file=sys.stderr,
                )
    return totals


def warm_up(model: Any, request: Request, methods: list[str]) -> None:
    """One short untimed generation per method (first calls pay for lazy init)."""
    for method in methods:
        ar.generate(model, None, [request.prompt_ids], make_proposer(method), max_new_tokens=4)


def print_table(rows: list[dict[str, Any]]) -> None:
    head = f"{'workload':13} {'method':9} {'tokens/s':>9} {'speed-up':>9} {'accept len':>10} "
    print("\n" + head + f"{'tok/fwd':>8}  lossless  by source (drafts, accepted/drafted)")
    print("-" * 110)
    for r in rows:
        sources = ", ".join(
            f"{name} {s['drafts']}, {s['accepted_tokens']}/{s['drafted_tokens']}"
            for name, s in r["per_source"].items()
        )
        print(
            f"{r['workload']:13} {r['method']:9} {r['tokens_per_s']:9.1f} {r['speedup']:8.2f}x "
            f"{r['mean_acceptance_length']:10.2f} {r['tokens_per_target_forward']:8.2f}  "
            f"{'yes' if r['lossless'] else 'NO !!!':8}  {sources}"
        )


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on CI machines
    import matplotlib.pyplot as plt

    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    width = 0.8 / len(methods)
    for mi, method in enumerate(methods):
        mine = {r["workload"]: r for r in rows if r["method"] == method}
        xs = [i + mi * width for i in range(len(workloads))]
        for ax, key in zip(axes, ("speedup", "mean_acceptance_length"), strict=True):
            ax.bar(xs, [mine[w][key] for w in workloads], width, label=method)
    for ax, label in zip(axes, ("speed-up over none", "mean acceptance length"), strict=True):
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(workloads))], workloads)
        ax.set_title(label)
    axes[0].axhline(1.0, color="grey", lw=0.8)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=Path("results/bench_runtime/bench_runtime.json"))
    p.add_argument("--quick", action="store_true", help="smoke run: few requests, few tokens")
    p.add_argument(
        "--batch-size", type=int, default=1, help="a batch shares its longest max_tokens"
    )
    p.add_argument("--num-speculative-tokens", type=int, default=8, help="K (drafters: <= 3)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated; needs none")
    p.add_argument("--workloads", default="agentic-edit,humaneval,prose", help="comma-separated")
    # The tiny model's matmuls gain nothing from threads; on a shared 2-core box two threads
    # spin against other processes (packages/arctic-runtime/tests/test_engine.py).
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    args.methods = args.methods.split(",")
    unknown = set(args.methods) - set(METHODS)
    if unknown or "none" not in args.methods:
        p.error(f"--methods must include none and only {METHODS}; got {args.methods}")
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TINY_MODEL)
    model = AutoModelForCausalLM.from_pretrained(TINY_MODEL, dtype=torch.float32).eval()
    sizes = workload_sizes(args.quick)
    workloads = {w: build_workload(w, tokenizer, **sizes[w]) for w in args.workloads.split(",")}
    fp8 = drafter("lstm", fp8=True)
    env = {
        "device": "cpu",
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "arctic_runtime": ar.__version__,
        "fp8_matmul_backend": sorted(
            {m.matmul_backend for m in fp8.speculator.modules() if isinstance(m, Fp8Linear)}
        ),
        "note": HEADER,
    }
    print(f"[bench_runtime] {HEADER}")
    print(
        f"[bench_runtime] {env['processor']}, torch {env['torch']}, {env['threads']} thread(s), "
        f"float32, batch {args.batch_size}, K={args.num_speculative_tokens}, "
        f"FP8 matmul: {env['fp8_matmul_backend']}"
    )
    warm_up(model, next(iter(workloads.values()))[0], args.methods)
    rows = []
    total = sum(len(r) for r in workloads.values()) * len(args.methods)
    with tqdm(total=total, desc="requests x methods", unit="req") as bar:
        for wname, requests in workloads.items():
            totals = run_workload(model, requests, args, bar)
            baseline = totals["none"].generated_tokens / totals["none"].wall_time_s
            for method, t in totals.items():
                rows.append({"workload": wname, "method": method, **t.summary(baseline)})
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    output = {
        "environment": env,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "workloads": {
            w: {"requests": len(r), "prompt_tokens": sum(len(q.prompt_ids) for q in r)}
            for w, r in workloads.items()
        },
        "results": rows,
    }
    args.out.write_text(json.dumps(output, indent=2) + "\n")
    png = args.out.with_suffix(".png")
    plot(rows, png, f"reference engine, CPU, {env['threads']} thread(s), batch {args.batch_size}")
    print(f"\n[bench_runtime] wrote {args.out} and {png}")
    if not all(r["lossless"] for r in rows):
        print("[bench_runtime] ERROR: a proposer changed the greedy output", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
