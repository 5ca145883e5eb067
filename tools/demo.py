"""The main job: speculative generation through vLLM on the bundled tiny model.

    uv run tools/demo.py [--methods ...] [--batch-size 1] [--json results/demo.json]

Runs greedy generation of a small built-in workload (multi-turn agentic code edits and
held-out HumanEval prompts) once per method: ours (arctic-suffix, arctic-lstm,
arctic-hybrid, served by the arctic-vllm plugin) beside vLLM's built-in ngram and suffix.
Checks every method's output is token-identical to no speculation, and prints tokens/s,
speed-up over no speculation measured in the same run, and mean acceptance length (tokens
per verification step, from vLLM's counters). The full comparison is tools/bench_vllm.py.
The same job on your own model, once arctic-vllm is installed: `arctic-bench --model DIR`
(arctic_vllm.bench.cli; this script is it with the bundled model and these defaults).
"""

from __future__ import annotations

from pathlib import Path

from arctic_vllm.bench import TINY_MODEL
from arctic_vllm.bench import main as bench_main


def main() -> int:
    return bench_main(
        prog=None,  # argparse names it after the script: demo.py
        description=__doc__,
        default_model=TINY_MODEL,
        default_json=Path("results/demo.json"),
        default_plot=None,  # --plot PATH writes the PNG too
    )


if __name__ == "__main__":
    raise SystemExit(main())
