"""The main job: speculative generation through vLLM on the bundled tiny model.

    uv run tools/demo.py [--methods none,ngram,suffix] [--batch-size 1] [--json results/demo.json]

Runs greedy generation of a small built-in workload (multi-turn agentic code edits and
held-out HumanEval prompts) once per method, checks every method's output is token-identical
to no speculation, and prints tokens/s, speed-up over no speculation measured in the same
run, and mean acceptance length (tokens per verification step, from vLLM's counters).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from vllm_harness import (
    BUILTIN_METHODS,
    TINY_MODEL,
    Engine,
    RunResult,
    configure_cpu_env,
    first_divergence,
)
from workloads import WORKLOADS, build_workload


def _reexec_with_intel_openmp() -> None:
    """vLLM's CPU spec decoding is much slower and noisier without libiomp5 preloaded."""
    if os.environ.get("ARCTIC_NO_REEXEC") or "libiomp5" in os.environ.get("LD_PRELOAD", ""):
        return
    lib = Path(sys.prefix) / "lib" / "libiomp5.so"
    if not lib.is_file():
        return
    env = dict(os.environ, LD_PRELOAD=f"{lib} {os.environ.get('LD_PRELOAD', '')}".strip())
    env["ARCTIC_NO_REEXEC"] = "1"
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", type=Path, default=TINY_MODEL)
    p.add_argument("--methods", default="none,ngram,suffix", help="comma-separated")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--json", type=Path, default=Path("results/demo.json"))
    args = p.parse_args()

    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in BUILTIN_METHODS]
    if unknown:
        p.error(f"unknown method(s) {unknown}; choose from {sorted(BUILTIN_METHODS)}")
    if "none" not in methods:
        methods.insert(0, "none")  # the baseline of every ratio
    _reexec_with_intel_openmp()
    configure_cpu_env()

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    workloads = {name: build_workload(name, tokenizer) for name in args.workloads.split(",")}

    results: dict[str, dict[str, RunResult]] = {w: {} for w in workloads}
    for method in methods:
        print(f"[demo] {method}: starting vLLM ...", flush=True)
        with Engine(args.model, BUILTIN_METHODS[method], name=method) as engine:
            engine.generate([[1, 2, 3]], 4)  # warm-up, not timed
            for wname, requests in workloads.items():
                results[wname][method] = engine.run(
                    [r.prompt_ids for r in requests],
                    [r.max_tokens for r in requests],
                    batch_size=args.batch_size,
                )

    report: dict[str, list[dict[str, object]]] = {}
    lossless = True
    header = f"{'workload':<14}{'method':<10}{'tokens/s':>10}{'speed-up':>10}{'accept len':>12}  lossless"
    print("\n" + header + "\n" + "-" * len(header))
    for wname, by_method in results.items():
        base = by_method["none"]
        report[wname] = []
        for method, r in by_method.items():
            diverged = [
                i
                for i, (a, b) in enumerate(zip(r.outputs, base.outputs, strict=True))
                if first_divergence(a, b) is not None
            ]
            lossless &= not diverged
            speedup = r.tokens_per_second / base.tokens_per_second
            print(
                f"{wname:<14}{method:<10}{r.tokens_per_second:>10.1f}{speedup:>9.2f}x"
                f"{r.counters.mean_acceptance_length:>12.2f}  {'yes' if not diverged else f'NO {diverged}'}"
            )
            report[wname].append(
                {
                    "method": method,
                    "tokens_per_second": round(r.tokens_per_second, 2),
                    "speedup": round(speedup, 3),
                    "mean_acceptance_length": round(r.counters.mean_acceptance_length, 3),
                    "acceptance_rate": round(r.counters.acceptance_rate, 3),
                    "generated_tokens": r.generated_tokens,
                    "seconds": round(r.seconds, 3),
                    "lossless": not diverged,
                }
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"batch_size": args.batch_size, "results": report}, indent=2) + "\n"
    )
    print(f"\n[demo] batch size {args.batch_size}; JSON written to {args.json}")
    if not lossless:
        print("[demo] ERROR: a method's greedy output differs from no speculation", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
