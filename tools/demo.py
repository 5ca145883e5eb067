"""The main job: speculative generation through vLLM on the bundled tiny model.

    uv run tools/demo.py [--methods ...] [--batch-size 1] [--json results/demo.json]

Runs greedy generation of a small built-in workload (multi-turn agentic code edits and
held-out HumanEval prompts) once per method: ours (arctic-suffix, arctic-lstm,
arctic-hybrid, served by the arctic-vllm plugin) beside vLLM's built-in ngram and suffix.
Checks every method's output is token-identical to no speculation, and prints tokens/s,
speed-up over no speculation measured in the same run, and mean acceptance length (tokens
per verification step, from vLLM's counters). The full comparison is tools/bench_vllm.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from e2e import check_methods, print_table, reexec_with_intel_openmp, report, run_methods
from vllm_harness import TINY_MODEL, configure_cpu_env
from workloads import build_workload

DEFAULT_METHODS = "none,ngram,suffix,arctic-suffix,arctic-lstm,arctic-hybrid"
DEFAULT_WORKLOADS = "agentic-edit,humaneval"


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", type=Path, default=TINY_MODEL)
    p.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated")
    p.add_argument("--workloads", default=DEFAULT_WORKLOADS, help="comma-separated")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--json", type=Path, default=Path("results/demo.json"))
    args = p.parse_args()
    try:
        methods = check_methods(args.methods.split(","))
    except ValueError as exc:
        p.error(str(exc))
    reexec_with_intel_openmp()
    configure_cpu_env()

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    workloads = {name: build_workload(name, tokenizer) for name in args.workloads.split(",")}
    rows = report(run_methods(args.model, methods, workloads, args.batch_size))
    print_table(rows)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"batch_size": args.batch_size, "results": [r.as_json() for r in rows]}, indent=2
        )
        + "\n"
    )
    print(f"\n[demo] batch size {args.batch_size}; JSON written to {args.json}")
    if not all(r.lossless for r in rows):
        print("[demo] ERROR: a method's greedy output differs from no speculation", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
