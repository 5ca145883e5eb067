"""Run speculation methods end to end through vLLM and compare them in one run.

Shared by the main job (``arctic-bench``, ``tools/demo.py``) and the full benchmark
(``tools/bench_vllm.py``): one engine per method, every workload through it, each timed
``repeats`` times (the median run counts: these machines are noisy), and a report whose
speed-ups are ratios against no speculation measured in the same run. Lossless is checked
token for token.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._extra import require
from .harness import ARCTIC_METHODS, BUILTIN_METHODS, Engine, RunResult, first_divergence
from .workloads import Request

# Every method by name: vLLM's built-ins ("none", "ngram", "suffix") and ours ("arctic-*").
METHODS: dict[str, dict[str, Any] | None] = {**BUILTIN_METHODS, **ARCTIC_METHODS}


def reexec_with_intel_openmp() -> None:
    """vLLM's CPU spec decoding is much slower and noisier without libiomp5 preloaded."""
    if os.environ.get("ARCTIC_NO_REEXEC") or "libiomp5" in os.environ.get("LD_PRELOAD", ""):
        return
    lib = Path(sys.prefix) / "lib" / "libiomp5.so"
    if not lib.is_file():
        return
    env = dict(os.environ, LD_PRELOAD=f"{lib} {os.environ.get('LD_PRELOAD', '')}".strip())
    env["ARCTIC_NO_REEXEC"] = "1"
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def check_methods(names: Sequence[str]) -> list[str]:
    """The methods to run, baseline first; raises ValueError naming unknown ones."""
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {sorted(METHODS)}")
    return ["none", *[m for m in names if m != "none"]]


def drafter_methods(names: Sequence[str]) -> list[str]:
    """The methods among ``names`` that run a draft model (speculative_config method
    ``"arctic"``); they need a drafter trained for the target."""
    return [m for m in names if (METHODS[m] or {}).get("method") == "arctic"]


def with_drafter(drafter: Path | str) -> dict[str, dict[str, Any] | None]:
    """``METHODS`` with every drafter method drafting with ``drafter`` (a drafter directory
    trained for the target, e.g. by ``arctic-train``) instead of the bundled tiny drafters."""
    drafting = set(drafter_methods(list(METHODS)))
    return {
        name: {**config, "model": str(drafter)} if config and name in drafting else config
        for name, config in METHODS.items()
    }


def run_methods_repeated(
    model: Path,
    methods: Sequence[str],
    workloads: dict[str, list[Request]],
    batch_size: int,
    repeats: int = 1,
    *,
    configs: Mapping[str, Mapping[str, Any] | None] = METHODS,
) -> dict[tuple[str, str], list[RunResult]]:
    """runs[workload, method]: one RunResult per repeat, in repeat order; ``configs`` maps
    a method to its speculative_config (default ``METHODS``; see `with_drafter`).

    Each repeat starts every method's engine afresh (a warm global suffix cache would make a
    repeat replay the previous one's outputs), and the repeats interleave the methods so
    slow drifts of the machine's load spread over all of them.
    """
    tqdm = require("tqdm.auto").tqdm
    runs: dict[tuple[str, str], list[RunResult]] = {}
    bar = tqdm(total=len(methods) * len(workloads) * repeats, desc="vLLM runs", unit="run")
    for _ in range(repeats):
        for method in methods:
            bar.set_postfix_str(f"{method}: starting vLLM")
            with Engine(model, configs[method], name=method) as engine:
                engine.generate([[1, 2, 3]], 4)  # warm-up, not timed
                for wname, requests in workloads.items():
                    bar.set_postfix_str(f"{method} / {wname}")
                    prompts = [r.prompt_ids for r in requests]
                    limits = [r.max_tokens for r in requests]
                    run = engine.run(prompts, limits, batch_size=batch_size)
                    runs.setdefault((wname, method), []).append(run)
                    bar.update()
    bar.close()
    return runs


def run_interleaved(
    model: Path,
    methods: Sequence[str],
    workloads: dict[str, list[Request]],
    batch_size: int,
    repeats: int,
    *,
    configs: Mapping[str, Mapping[str, Any] | None] = METHODS,
) -> dict[tuple[str, str], list[RunResult]]:
    """runs[workload, method] for paired timing (``configs`` as in `run_methods_repeated`):
    each repeat starts one fresh engine per method, all alive at once, and sends every batch
    of every workload to each engine in turn (the order rotating from batch to batch). Two
    methods are then timed on the same requests seconds apart, so the machine's drift, which
    here moves tokens/s by 5-15 % within a minute even for one engine re-running the same
    requests, cancels request by request instead of engine by engine. Each engine still sees the workloads in the same
    order, so its global suffix cache evolves as in `run_methods_repeated`.

    Outputs and seconds only: with several engines in one process vLLM's stat logger
    unregisters the earlier engines' Prometheus counters, so the spec-decode counters of
    these runs are left empty (`run_methods_repeated` has them)."""
    tqdm = require("tqdm.auto").tqdm
    runs: dict[tuple[str, str], list[RunResult]] = {}
    batches = sum(-(-len(reqs) // batch_size) for reqs in workloads.values())
    bar = tqdm(total=repeats * batches, desc="interleaved vLLM runs", unit="batch")
    for _ in range(repeats):
        bar.set_postfix_str("starting vLLM")
        engines: list[Engine] = []
        try:
            for m in methods:
                engines.append(Engine(model, configs[m], name=m))
            for engine in engines:
                engine.generate([[1, 2, 3]], 4)  # warm-up, not timed
            turn = 0
            for wname, requests in workloads.items():
                bar.set_postfix_str(wname)
                totals = {m: RunResult(m, [], 0.0) for m in methods}
                for i in range(0, len(requests), batch_size):
                    part = requests[i : i + batch_size]
                    order = list(range(len(methods)))
                    order = order[turn % len(order) :] + order[: turn % len(order)]
                    turn += 1
                    for j in order:
                        r = engines[j].generate(
                            [q.prompt_ids for q in part], [q.max_tokens for q in part]
                        )
                        totals[methods[j]].outputs.extend(r.outputs)
                        totals[methods[j]].seconds += r.seconds
                    bar.update()
                for m in methods:
                    runs.setdefault((wname, m), []).append(totals[m])
        finally:
            for engine in engines:
                engine.close()
    bar.close()
    return runs


def medians(runs: dict[tuple[str, str], list[RunResult]]) -> dict[str, dict[str, RunResult]]:
    """results[workload][method]: the median-time run (greedy: the outputs are the same
    every time)."""
    results: dict[str, dict[str, RunResult]] = {}
    for (wname, method), timed in runs.items():
        ordered = sorted(timed, key=lambda r: r.seconds)
        results.setdefault(wname, {})[method] = ordered[len(ordered) // 2]
    return results


def paired_speed_ratio(
    runs: dict[tuple[str, str], list[RunResult]], workload: str, method: str, baseline: str
) -> float:
    """Median over repeats of tokens/s(method) / tokens/s(baseline) within the same repeat.

    The machine's load drifts over minutes; within a repeat two methods run back to back,
    so the per-repeat ratio cancels the drift that a ratio of medians keeps.
    """
    return paired_mix_ratio(runs, [workload], method, baseline)


def paired_mix_ratio(
    runs: dict[tuple[str, str], list[RunResult]],
    workloads: Sequence[str],
    method: str,
    baseline: str,
) -> float:
    """`paired_speed_ratio` over several workloads together (the mix): per repeat, tokens/s
    of ``method`` over all of them / the same for ``baseline``; the median over repeats."""

    def mix(name: str, repeat: int) -> float:
        timed = [runs[w, name][repeat] for w in workloads]
        return sum(r.generated_tokens for r in timed) / sum(r.seconds for r in timed)

    repeats = len(runs[workloads[0], method])
    ratios = sorted(mix(method, i) / mix(baseline, i) for i in range(repeats))
    mid = len(ratios) // 2
    return ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2


def run_methods(
    model: Path,
    methods: Sequence[str],
    workloads: dict[str, list[Request]],
    batch_size: int,
    repeats: int = 1,
    *,
    configs: Mapping[str, Mapping[str, Any] | None] = METHODS,
) -> dict[str, dict[str, RunResult]]:
    """results[workload][method]: the median-time run of ``repeats`` (see
    `run_methods_repeated`)."""
    return medians(
        run_methods_repeated(model, methods, workloads, batch_size, repeats, configs=configs)
    )


@dataclass(frozen=True)
class Row:
    workload: str
    method: str
    tokens_per_second: float
    speedup: float  # vs "none" in the same run
    mean_acceptance_length: float
    acceptance_rate: float
    generated_tokens: int
    seconds: float
    diverged: tuple[int, ...]  # indices of requests whose output differs from "none"

    @property
    def lossless(self) -> bool:
        return not self.diverged

    def as_json(self) -> dict[str, object]:
        return {
            "workload": self.workload,
            "method": self.method,
            "tokens_per_second": round(self.tokens_per_second, 2),
            "speedup": round(self.speedup, 3),
            "mean_acceptance_length": round(self.mean_acceptance_length, 3),
            "acceptance_rate": round(self.acceptance_rate, 3),
            "generated_tokens": self.generated_tokens,
            "seconds": round(self.seconds, 3),
            "lossless": self.lossless,
        }


def report(results: dict[str, dict[str, RunResult]]) -> list[Row]:
    rows = []
    for wname, by_method in results.items():
        base = by_method["none"]
        for method, r in by_method.items():
            diverged = tuple(
                i
                for i, (a, b) in enumerate(zip(r.outputs, base.outputs, strict=True))
                if first_divergence(a, b) is not None
            )
            rows.append(
                Row(
                    wname,
                    method,
                    r.tokens_per_second,
                    r.tokens_per_second / base.tokens_per_second,
                    r.counters.mean_acceptance_length,
                    r.counters.acceptance_rate,
                    r.generated_tokens,
                    r.seconds,
                    diverged,
                )
            )
    return rows


def print_table(rows: Sequence[Row]) -> None:
    header = (
        f"{'workload':<14}{'method':<17}{'tokens/s':>10}{'speed-up':>10}{'accept len':>12}"
        "  lossless"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        ok = "yes" if r.lossless else f"NO {list(r.diverged)}"
        print(
            f"{r.workload:<14}{r.method:<17}{r.tokens_per_second:>10.1f}{r.speedup:>9.2f}x"
            f"{r.mean_acceptance_length:>12.2f}  {ok}"
        )
