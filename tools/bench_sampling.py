"""Speculation at temperature 1.0 through vLLM: speed, acceptance and the distribution check.

    uv run tools/bench_sampling.py [--repeats 3] [--batch-size 1] [--samples 2000] [--quick]

For every method (no speculation; vLLM's ngram and suffix; arctic-suffix, arctic-lstm,
arctic-hybrid) and each repeat, in an order that rotates from repeat to repeat: a fresh
engine generates the agentic-edit and HumanEval workloads at temperature 1.0 (seeded
requests), timed; tokens/s are compared with no speculation in the same repeat (the median
and the spread over repeats are printed). Acceptance comes from vLLM's own counters. Once
per method, the distribution check of the integration tests: --samples seeded samples of a
repetitive prompt's first three tokens, chi-square homogeneity against no speculation
(p-value printed beside; alpha 0.001 fails the method). Writes results/bench_sampling.json.

On vLLM's CPU backend every method here, vLLM's own included, samples correctly only with
arctic-vllm's cpu_expand patch (arctic_vllm.patches.LEDGER), which the plugin applies in
every vLLM process; without it the check fails (p ~ 1e-70 measured).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from arctic_runtime import chi_square_homogeneity
from arctic_vllm.bench import (
    ARCTIC_METHODS,
    BUILTIN_METHODS,
    TINY_MODEL,
    Engine,
    build_workload,
    configure_cpu_env,
    read_spec_counters,
    reexec_with_intel_openmp,
)

METHODS = {**BUILTIN_METHODS, **{m: ARCTIC_METHODS[m] for m in
           ("arctic-suffix", "arctic-lstm", "arctic-hybrid")}}  # fmt: skip
CHECK_PROMPT = "def add(a, b):\n    return a + b\n\n" * 4 + "def add(a, b):\n"
ALPHA = 0.001


def _params(n: int, max_tokens: list[int] | int, temperature: float = 1.0) -> list[Any]:
    from vllm import SamplingParams

    limits = [max_tokens] * n if isinstance(max_tokens, int) else max_tokens
    return [
        SamplingParams(temperature=temperature, seed=i, max_tokens=m, ignore_eos=True)
        for i, m in enumerate(limits)
    ]


def timed_run(engine: Engine, requests: list[Any], batch_size: int) -> dict[str, float]:
    from vllm.inputs import TokensPrompt

    before = read_spec_counters(engine.llm)
    tokens, seconds = 0, 0.0
    params = _params(len(requests), [r.max_tokens for r in requests])
    for i in range(0, len(requests), batch_size):
        part = [
            TokensPrompt(prompt_token_ids=list(r.prompt_ids)) for r in requests[i : i + batch_size]
        ]
        start = time.perf_counter()
        outs = engine.llm.generate(part, params[i : i + batch_size], use_tqdm=False)
        seconds += time.perf_counter() - start
        tokens += sum(len(o.outputs[0].token_ids) for o in outs)
    c = read_spec_counters(engine.llm) - before
    return {
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "accept_length": c.mean_acceptance_length,
        "acceptance_rate": c.acceptance_rate,
    }


def samples(engine: Engine, prompt: list[int], n: int) -> list[tuple[int, ...]]:
    from vllm.inputs import TokensPrompt

    outs = engine.llm.generate(
        [TokensPrompt(prompt_token_ids=prompt)] * n, _params(n, 4), use_tqdm=False
    )
    return [tuple(o.outputs[0].token_ids[:3]) for o in outs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--quick", action="store_true", help="1 repeat, 500 samples")
    parser.add_argument("--out", type=Path, default=Path("results/bench_sampling.json"))
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.samples = 1, 500
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown or "none" not in methods:
        parser.error(
            f"--methods must include 'none' and name only {sorted(METHODS)}; got {unknown}"
        )
    reexec_with_intel_openmp()
    configure_cpu_env()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TINY_MODEL)
    requests = build_workload("agentic-edit", tokenizer, sessions=2, turns=2) + build_workload(
        "humaneval", tokenizer, n=4, max_tokens=96
    )
    check_prompt = list(tokenizer(CHECK_PROMPT)["input_ids"])
    timings: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    checks: dict[str, list[tuple[int, ...]]] = {}
    bar = tqdm(total=args.repeats * len(methods), desc="T=1.0 vLLM runs", unit="engine")
    for repeat in range(args.repeats):
        order = methods[repeat % len(methods) :] + methods[: repeat % len(methods)]
        for m in order:
            bar.set_postfix_str(m)
            with Engine(TINY_MODEL, METHODS[m], name=m, max_num_seqs=256) as engine:
                engine.llm.generate([[1, 2, 3]], _params(1, 4), use_tqdm=False)  # warm-up
                timings[m].append(timed_run(engine, requests, args.batch_size))
                if m not in checks:
                    checks[m] = samples(engine, check_prompt, args.samples)
            bar.update()
    bar.close()

    rows = []
    for m in methods:
        ratios = [
            t["tokens_per_s"] / b["tokens_per_s"]
            for t, b in zip(timings[m], timings["none"], strict=True)
        ]
        tests = {
            name: chi_square_homogeneity([s[i] for s in checks[m]], [s[i] for s in checks["none"]])
            for name, i in (("token 2", 1), ("token 3", 2))
        }
        tests["tokens 1-3"] = chi_square_homogeneity(checks[m], checks["none"])
        p_min = min(r.p_value for r in tests.values())
        rows.append({
            "method": m,
            "tokens_per_s": statistics.median(t["tokens_per_s"] for t in timings[m]),
            "speedup_median": statistics.median(ratios),
            "speedup_min": min(ratios),
            "speedup_max": max(ratios),
            "accept_length": statistics.median(t["accept_length"] for t in timings[m]),
            "acceptance_rate": statistics.median(t["acceptance_rate"] for t in timings[m]),
            "p_values": {k: r.p_value for k, r in tests.items()},
            "distribution_ok": p_min >= ALPHA or m == "none",
        })  # fmt: skip
    print(f"\ntemperature 1.0, batch {args.batch_size}, {args.repeats} repeats, "
          f"{args.samples} samples per distribution check")  # fmt: skip
    print(f"{'method':15} {'tok/s':>8} {'speed-up (min-max)':>22} {'acc len':>8} "
          f"{'acc rate':>8} {'min p':>9}  same distribution")  # fmt: skip
    for r in rows:
        p_min = min(r["p_values"].values())
        print(f"{r['method']:15} {r['tokens_per_s']:8.1f} {r['speedup_median']:7.2f}x "
              f"({r['speedup_min']:.2f}-{r['speedup_max']:.2f}x) {r['accept_length']:8.2f} "
              f"{100 * r['acceptance_rate']:7.1f}% {p_min:9.3g}  "
              f"{'yes' if r['distribution_ok'] else 'NO'}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "timings": timings, "args": vars(args)},
                                   indent=1, default=str))  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
