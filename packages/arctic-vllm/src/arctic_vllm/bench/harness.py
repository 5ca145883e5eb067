"""Run greedy generation through real vLLM (the CPU backend here) once per speculation method.

The end-to-end harness that the integration tests, the benchmarks and ``arctic-bench`` share:
it starts an engine on a model directory with a given ``speculative_config``, generates from
token-id prompts, and reads vLLM's own spec-decode counters (``vllm:spec_decode_*``) as deltas
around the run.

``TINY_MODEL`` is the tiny target bundled with a checkout of the arctic repository
(``models/arctic-tiny-llama``; ``ARCTIC_TINY_MODEL`` overrides it). Installed from a wheel
there is no bundled model: pass a model directory (``arctic-bench --model DIR``).
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _checkout_root() -> Path | None:
    """The repository root when this file is a checkout's
    ``packages/arctic-vllm/src/arctic_vllm/bench/harness.py`` (the workspace's editable
    install); None when it was installed from a wheel."""
    parents = Path(__file__).resolve().parents
    if len(parents) > 5 and (parents[4].name, parents[3].name) == ("packages", "arctic-vllm"):
        return parents[5]
    return None


REPO_ROOT = _checkout_root()
# Outside a checkout this names models/arctic-tiny-llama under the working directory (a
# clone's root); `has_bundled_model()` says whether a model is there.
TINY_MODEL = Path(
    os.environ.get("ARCTIC_TINY_MODEL", (REPO_ROOT or Path()) / "models" / "arctic-tiny-llama")
)

# Defaults for vLLM's CPU backend on these 2-core machines (shared/ENVIRONMENT.md); a value
# the user already set wins.
CPU_ENV_DEFAULTS = {
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache; the default 4 is far more than needed
    "HF_HUB_OFFLINE": "1",  # no hub here: a model is a local directory
    # Engine in this process: starts in ~4 s instead of ~60 s for a spawned engine core here,
    # and lets tests inspect the model runner. (A second engine in one process needs the
    # arctic-vllm plugin's triton_dispatcher patch: see arctic_vllm.patches.LEDGER.)
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "TOKENIZERS_PARALLELISM": "false",
    "VLLM_LOGGING_LEVEL": "WARNING",
}

NUM_SPECULATIVE_TOKENS = 8
BATCH_SIZES = (1, 4)  # what the integration tests check every method at

# Built-in vLLM methods. ``None`` is the baseline without speculation.
BUILTIN_METHODS: dict[str, dict[str, Any] | None] = {
    "none": None,
    "ngram": {
        "method": "ngram",
        "num_speculative_tokens": NUM_SPECULATIVE_TOKENS,
        "prompt_lookup_min": 2,
        "prompt_lookup_max": 5,
    },
    # vLLM's own suffix decoding, backed by arctic-inference's suffix tree. (With arctic-vllm
    # installed, method "suffix" is ours unless this key hands it back to vLLM.)
    "suffix": {
        "method": "suffix",
        "num_speculative_tokens": NUM_SPECULATIVE_TOKENS,
        "suffix_decoding_backend": "arctic_inference",
    },
}

TINY_DRAFTERS = TINY_MODEL.parent / f"{TINY_MODEL.name}-drafters"

# Our methods, served by arctic-vllm.
ARCTIC_METHODS: dict[str, dict[str, Any]] = {
    "arctic-suffix": {"method": "suffix", "num_speculative_tokens": NUM_SPECULATIVE_TOKENS},
    "arctic-mlp": {"method": "arctic", "model": str(TINY_DRAFTERS / "mlp")},
    "arctic-lstm": {"method": "arctic", "model": str(TINY_DRAFTERS / "lstm")},
    "arctic-lstm-fp8": {
        "method": "arctic",
        "model": str(TINY_DRAFTERS / "lstm"),
        "drafter_fp8": True,
    },
    "arctic-hybrid": {
        "method": "arctic",
        "model": str(TINY_DRAFTERS / "lstm"),
        "enable_suffix_decoding": True,
        "num_speculative_tokens": NUM_SPECULATIVE_TOKENS,
    },
}

_SPEC_COUNTERS = (
    "vllm:spec_decode_num_drafts",
    "vllm:spec_decode_num_draft_tokens",
    "vllm:spec_decode_num_accepted_tokens",
)


def has_bundled_model() -> bool:
    """Whether ``TINY_MODEL`` is a checkpoint directory (a checkout with its models/)."""
    return (TINY_MODEL / "config.json").is_file()


def configure_cpu_env() -> None:
    for key, value in CPU_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)


@dataclass
class SpecCounters:
    num_drafts: int = 0
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0

    def as_draft_counts(self) -> Any:
        """vLLM's counters as arctic-runtime's one acceptance counter type."""
        from arctic_runtime import DraftCounts

        return DraftCounts(self.num_drafts, self.num_draft_tokens, self.num_accepted_tokens)

    @property
    def mean_acceptance_length(self) -> float:
        """Tokens emitted per verification step: 1 (bonus) + accepted per draft, as vLLM."""
        return float(self.as_draft_counts().mean_acceptance_length)

    @property
    def acceptance_rate(self) -> float:
        return float(self.as_draft_counts().acceptance_rate)

    def __add__(self, other: SpecCounters) -> SpecCounters:
        return SpecCounters(
            self.num_drafts + other.num_drafts,
            self.num_draft_tokens + other.num_draft_tokens,
            self.num_accepted_tokens + other.num_accepted_tokens,
        )

    def __sub__(self, other: SpecCounters) -> SpecCounters:
        return SpecCounters(
            self.num_drafts - other.num_drafts,
            self.num_draft_tokens - other.num_draft_tokens,
            self.num_accepted_tokens - other.num_accepted_tokens,
        )


@dataclass
class RunResult:
    method: str
    outputs: list[list[int]]  # generated token ids, one list per prompt, in prompt order
    seconds: float
    counters: SpecCounters = field(default_factory=SpecCounters)

    @property
    def generated_tokens(self) -> int:
        return sum(len(o) for o in self.outputs)

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds > 0 else 0.0


def first_divergence(a: Sequence[int], b: Sequence[int]) -> int | None:
    """Index of the first position where two token sequences differ (None if equal)."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def assert_same_outputs(
    method: str,
    results: Mapping[int, RunResult],
    baseline: Mapping[int, RunResult],
    names: Sequence[str],
) -> None:
    """Lossless: every request's tokens at every batch size equal the baseline's."""
    for batch_size, want in baseline.items():
        got = results[batch_size]
        for name, out, ref in zip(names, got.outputs, want.outputs, strict=True):
            assert out == ref, (
                f"{method} batch {batch_size}: request {name} diverges "
                f"at token {first_divergence(out, ref)}"
            )


def read_spec_counters(llm: Any) -> SpecCounters:
    values = dict.fromkeys(_SPEC_COUNTERS, 0)
    for metric in llm.get_metrics():
        if metric.name in values:
            values[metric.name] += int(metric.value)
    return SpecCounters(*(values[name] for name in _SPEC_COUNTERS))


class Engine:
    """A vLLM ``LLM`` on a local model directory with one speculative configuration."""

    def __init__(
        self,
        model_dir: Path | str = TINY_MODEL,
        speculative_config: Mapping[str, Any] | None = None,
        *,
        name: str = "",
        max_model_len: int = 1024,
        max_num_seqs: int = 8,
        enforce_eager: bool = True,
        enable_prefix_caching: bool = False,
        seed: int = 0,
        dtype: str = "float32",
        **llm_kwargs: Any,
    ) -> None:
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            hint = (
                "train the tiny target with `uv run tools/train_target.py`"
                if model_dir == TINY_MODEL
                else "pass a Hugging Face checkpoint directory"
            )
            raise FileNotFoundError(
                f"no Hugging Face checkpoint at {model_dir} (config.json missing); {hint}"
            )
        self.name = name or (str(speculative_config["method"]) if speculative_config else "none")
        configure_cpu_env()
        from vllm import LLM

        self.llm = LLM(
            model=str(model_dir),
            speculative_config=dict(speculative_config) if speculative_config else None,
            max_model_len=max_model_len,
            max_num_seqs=max_num_seqs,
            enforce_eager=enforce_eager,
            enable_prefix_caching=enable_prefix_caching,
            seed=seed,
            # float32 by default: verifying k+1 positions in one pass and decoding one at a
            # time use different GEMM shapes; in bf16 near-ties can flip the argmax and
            # make a lossless method look lossy. The tiny model is fast in float32 here.
            dtype=dtype,
            disable_log_stats=False,  # the spec-decode counters live in the stat loggers
            **llm_kwargs,
        )

    def generate(
        self, prompts: Sequence[Sequence[int]], max_tokens: Sequence[int] | int
    ) -> RunResult:
        """Greedy generation of all prompts in one batch (vLLM schedules them together)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        limits = [max_tokens] * len(prompts) if isinstance(max_tokens, int) else list(max_tokens)
        if len(limits) != len(prompts):
            raise ValueError(f"{len(limits)} max_tokens for {len(prompts)} prompts")
        params = [SamplingParams(temperature=0.0, max_tokens=n) for n in limits]
        before = read_spec_counters(self.llm)
        start = time.perf_counter()
        outs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params, use_tqdm=False
        )
        seconds = time.perf_counter() - start
        counters = read_spec_counters(self.llm) - before
        return RunResult(self.name, [list(o.outputs[0].token_ids) for o in outs], seconds, counters)

    def run(
        self, prompts: Sequence[Sequence[int]], max_tokens: Sequence[int], batch_size: int
    ) -> RunResult:
        """Generate in consecutive batches of ``batch_size`` requests (1: as an agent waits)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        total = RunResult(self.name, [], 0.0)
        for i in range(0, len(prompts), batch_size):
            part = self.generate(prompts[i : i + batch_size], max_tokens[i : i + batch_size])
            total.outputs.extend(part.outputs)
            total.seconds += part.seconds
            total.counters = total.counters + part.counters
        return total

    def close(self) -> None:
        llm = self.llm
        del self.llm
        engine = getattr(llm, "llm_engine", None)
        shutdown = getattr(engine, "shutdown", None)
        if callable(shutdown):
            shutdown()
        del llm
        gc.collect()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def model_runner(engine: Engine) -> Any:
    """The model runner of an in-process engine (VLLM_ENABLE_V1_MULTIPROCESSING=0)."""
    core = engine.llm.llm_engine.engine_core
    core = getattr(core, "engine_core", core)  # InprocClient wraps the EngineCore
    executor = core.model_executor
    worker = executor.driver_worker
    worker = getattr(worker, "worker", worker)  # WorkerWrapperBase wraps the worker
    return worker.model_runner


def run_all_batch_sizes(engine: Engine, requests: Sequence[Any]) -> dict[int, RunResult]:
    """Run ``requests`` (objects with ``prompt_ids`` and ``max_tokens``) at each batch size."""
    prompts = [r.prompt_ids for r in requests]
    limits = [r.max_tokens for r in requests]
    return {b: engine.run(prompts, limits, batch_size=b) for b in BATCH_SIZES}
