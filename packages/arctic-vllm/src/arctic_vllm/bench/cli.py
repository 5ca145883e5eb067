"""arctic-bench: each speculation method against no speculation, through vLLM, on your model.

    arctic-bench --model DIR [--methods ...] [--workloads ...] [--batch-size 1]
                 [--drafter DIR] [--json PATH] [--plot PATH]

Runs greedy generation of a small built-in workload (multi-turn agentic code edits and
held-out HumanEval prompts; "prose" on request) once per method: ours (arctic-suffix; with a
drafter arctic-lstm and arctic-hybrid, served by the arctic-vllm plugin) beside vLLM's
built-in ngram and suffix. Checks every method's output is token-identical to no speculation
and prints tokens/s, the speed-up over no speculation measured in the same run and the mean
acceptance length (tokens per verification step, from vLLM's counters); writes them as JSON
and a PNG. Exit status 1 if a method's output differs from no speculation, 2 for a bad flag.

The methods that run a drafter (arctic-mlp, arctic-lstm, arctic-lstm-fp8, arctic-hybrid:
speculative_config method "arctic") need one trained for the model (arctic-drafters'
`arctic-train`): --drafter DIR, which all of them then use (their names say which bundled
drafter they use on the bundled tiny model). Without --drafter they are left out of the
default methods, except on the tiny target bundled with a checkout of arctic, which has its
own drafters. Needs the bench extra: pip install "arctic-vllm[bench]".
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .harness import TINY_MODEL, configure_cpu_env, has_bundled_model
from .plot import plot_speedups
from .runner import (
    METHODS,
    check_methods,
    drafter_methods,
    print_table,
    reexec_with_intel_openmp,
    report,
    run_methods,
    with_drafter,
)
from .workloads import WORKLOADS, build_workload

DEFAULT_METHODS = "none,ngram,suffix,arctic-suffix,arctic-lstm,arctic-hybrid"
DEFAULT_WORKLOADS = "agentic-edit,humaneval"


def build_parser(
    *,
    prog: str | None,
    description: str,
    default_model: Path | None,
    default_json: Path,
    default_plot: Path | None,
) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--model",
        type=Path,
        default=default_model,
        metavar="DIR",
        help="the target: a Hugging Face checkpoint directory"
        + (f" (default: {default_model})" if default_model else " (required)"),
    )
    p.add_argument(
        "--methods",
        default=None,
        metavar="LIST",
        help=f"comma-separated, from {','.join(METHODS)} (default: {DEFAULT_METHODS}, less "
        "the drafter methods when there is no drafter)",
    )
    p.add_argument(
        "--workloads",
        default=DEFAULT_WORKLOADS,
        metavar="LIST",
        help=f"comma-separated, from {','.join(WORKLOADS)}",
    )
    p.add_argument(
        "--batch-size", type=int, default=1, metavar="N", help="requests per batch (>= 1)"
    )
    p.add_argument(
        "--drafter",
        type=Path,
        default=None,
        metavar="DIR",
        help='drafter directory for the methods "arctic" (arctic-mlp, arctic-lstm, '
        "arctic-lstm-fp8, arctic-hybrid), trained for --model",
    )
    p.add_argument(
        "--json", type=Path, default=default_json, metavar="PATH", help="results as JSON"
    )
    p.add_argument(
        "--plot",
        type=Path,
        default=default_plot,
        metavar="PATH",
        help="speed-ups as a PNG" + (f" (default: {default_plot})" if default_plot else ""),
    )
    return p


def _is_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file()


def _same_path(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def resolve_methods(
    p: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[list[str], Mapping[str, Mapping[str, Any] | None]]:
    """The methods to run (baseline first) and their speculative configs; ``p.error`` (exit
    status 2) on a bad flag, before anything is loaded."""
    if args.model is None:
        p.error(
            "--model DIR is required: there is no bundled model outside a checkout of arctic; "
            "pass your target's Hugging Face checkpoint directory"
        )
    if not _is_checkpoint(args.model):
        hint = (
            "; train the tiny target with `uv run tools/train_target.py`"
            if _same_path(args.model, TINY_MODEL)
            else ""
        )
        p.error(
            f"--model {args.model}: no Hugging Face checkpoint there (config.json missing){hint}"
        )
    if args.batch_size < 1:
        p.error(f"--batch-size must be >= 1, got {args.batch_size}")
    unknown = [w for w in args.workloads.split(",") if w not in WORKLOADS]
    if unknown:
        p.error(f"--workloads: unknown workload(s) {unknown}; choose from {sorted(WORKLOADS)}")
    if args.drafter is not None and not _is_checkpoint(args.drafter):
        p.error(f"--drafter {args.drafter}: no drafter there (config.json missing)")
    bundled = args.drafter is None and _same_path(args.model, TINY_MODEL)
    has_drafter = args.drafter is not None or bundled
    names = args.methods.split(",") if args.methods else DEFAULT_METHODS.split(",")
    try:
        methods = check_methods(names)
    except ValueError as exc:
        p.error(f"--methods: {exc}")
    needing = drafter_methods(methods)
    if needing and not has_drafter:
        if args.methods:
            p.error(
                f"--methods {','.join(needing)} run a drafter: pass --drafter DIR (one "
                f"trained for {args.model}) or leave them out"
            )
        methods = [m for m in methods if m not in needing]
    configs = with_drafter(args.drafter) if args.drafter is not None else METHODS
    return methods, configs


def main(
    argv: Sequence[str] | None = None,
    *,
    prog: str | None = "arctic-bench",
    description: str | None = None,
    default_model: Path | None = None,
    default_json: Path = Path("results/arctic-bench.json"),
    default_plot: Path | None = Path("results/arctic-bench.png"),
) -> int:
    """Parse ``argv`` (default: the command line), run, print and write the results.

    The keywords let a wrapper (``tools/demo.py``) keep its own name, help and defaults;
    ``default_model`` None means the bundled tiny model where there is one (a checkout)."""
    if default_model is None and has_bundled_model():
        default_model = TINY_MODEL
    p = build_parser(
        prog=prog,
        description=description or __doc__ or "",
        default_model=default_model,
        default_json=default_json,
        default_plot=default_plot,
    )
    args = p.parse_args(argv)
    methods, configs = resolve_methods(p, args)
    tag = Path(p.prog).stem
    if argv is None:  # a command of its own: re-running it with libiomp5 is safe
        reexec_with_intel_openmp()
    configure_cpu_env()

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    workloads = {name: build_workload(name, tokenizer) for name in args.workloads.split(",")}
    rows = report(run_methods(args.model, methods, workloads, args.batch_size, configs=configs))
    print_table(rows)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"batch_size": args.batch_size, "results": [r.as_json() for r in rows]}, indent=2
        )
        + "\n"
    )
    written = f"JSON written to {args.json}"
    if args.plot is not None:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot_speedups(rows, args.plot, f"vLLM, {args.model.name}, greedy, batch {args.batch_size}")
        written += f", PNG to {args.plot}"
    print(f"\n[{tag}] batch size {args.batch_size}; {written}")
    if not all(r.lossless for r in rows):
        print(
            f"[{tag}] ERROR: a method's greedy output differs from no speculation", file=sys.stderr
        )
        return 1
    return 0
