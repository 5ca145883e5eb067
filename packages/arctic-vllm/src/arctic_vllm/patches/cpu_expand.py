"""Patch: vLLM's CPU stand-in for the rejection sampler's `expand_kernel` (see LEDGER).

The rejection sampler widens per-request sampling parameters (temperature, top-k, top-p) to
one value per draft position with `expand_batch_to_tokens`, whose Triton kernel vLLM's CPU
platform replaces by `vllm.utils.cpu_triton_utils._expand_kernel_impl`. That stand-in hands
the C++ op `_ensure_int64(output)`, which for any output that is not int64 is a *copy*: the
op fills the copy, and the real output (from `new_empty`) keeps whatever memory it had.
Float inputs are also truncated to int64 on the way in. So on the CPU every speculative step
with a sampled request divides the target logits by garbage temperatures and applies garbage
top-k / top-p: the distribution changes at temperature > 0, greedy rows of a mixed batch
take the argmax of rescaled (possibly negated) logits, and a garbage top-k indexes out of
bounds (`index -930510574 is out of bounds for dimension 1 with size 8192`).

The replacement below computes the same thing in plain torch for every dtype. It takes the
stand-in's place in `cpu_triton_utils` (which vLLM's CPU platform registers after loading
plugins) and, if registration already happened in this process, inside the registered
kernel override too. Nothing changes on platforms that run the Triton kernel.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

_MARK = "__arctic_patched__"
STAND_IN = "_expand_kernel_impl"
KERNEL = "vllm.v1.sample.rejection_sampler.expand_kernel"


def expand_kernel_reference(
    output: torch.Tensor,  # (T,) any dtype: one value per draft position
    input_val: torch.Tensor,  # (B,) same dtype: one value per request
    cu_num_tokens: torch.Tensor,  # (B,) cumulative draft positions per request
    replace_from: Any,
    replace_to: Any,
    MAX_NUM_TOKENS: int | None = None,
) -> None:
    """``output[t] = input_val[r]`` for each position t of request r, ``replace_from`` ->
    ``replace_to`` on the way; what the Triton kernel computes. Parameter names follow
    vLLM's stand-in so the kernel override binds it identically."""
    del MAX_NUM_TOKENS  # a Triton block size; nothing to size here
    counts = torch.diff(cu_num_tokens, prepend=cu_num_tokens.new_zeros(1)).to(torch.int64)
    values = torch.where(
        input_val == replace_from,
        torch.tensor(replace_to, dtype=input_val.dtype, device=input_val.device),
        input_val,
    )
    total = int(cu_num_tokens[-1]) if cu_num_tokens.numel() else 0
    output[:total] = values.repeat_interleave(counts, output_size=total).to(output.dtype)


setattr(expand_kernel_reference, _MARK, True)


def apply() -> bool:
    try:
        cpu_tl = importlib.import_module("vllm.utils.cpu_triton_utils")
    except ImportError:
        return False  # no CPU platform code in this vLLM: nothing to fix
    current = getattr(cpu_tl, STAND_IN, None)
    if current is None or getattr(current, _MARK, False):
        return False
    expand_kernel_reference.__wrapped__ = current  # type: ignore[attr-defined]
    setattr(cpu_tl, STAND_IN, expand_kernel_reference)
    _repoint_registered_override(current)
    return True


def _repoint_registered_override(broken: Any) -> None:
    """If the CPU platform registered its overrides before this patch, swap the registered
    override's implementation in place (every holder shares that one wrapper object)."""
    try:
        dispatcher = importlib.import_module("vllm.triton_utils.dispatcher")
        sampler = importlib.import_module("vllm.v1.sample.rejection_sampler")
    except ImportError:
        return
    registry = getattr(dispatcher, "_registry", {})
    entry = registry.get(KERNEL)
    if entry is None or entry[1] is not broken:
        return
    registry[KERNEL] = (entry[0], expand_kernel_reference)
    wrapper = getattr(sampler, "expand_kernel", None)
    if getattr(wrapper, "_impl", None) is broken:
        wrapper._impl = expand_kernel_reference  # type: ignore[union-attr]
        wrapper.func = expand_kernel_reference  # type: ignore[union-attr]
