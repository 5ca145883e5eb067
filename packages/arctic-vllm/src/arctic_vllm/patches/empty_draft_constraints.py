"""Patch: sampling constraints on a step without draft tokens (see LEDGER).

With speculation configured, vLLM runs every step through the rejection sampler, also a
step where no request got a draft token (nothing matched, drafts capped by max_tokens, or
per-request speculation off). Its `apply_sampling_constraints` then gets a (0, V) logits
tensor, and with a top-k request in the batch (and no top-p) the top-k-only path calls
`k.max()` on an empty tensor: "max(): Expected reduction dim to be specified for
input.numel() == 0", and the engine dies. With no draft positions there is nothing to
constrain, so such a call returns its input; every other call is vLLM's own.
"""

from __future__ import annotations

from typing import Any

from . import is_patched, patch_attribute


def apply() -> bool:
    from vllm.v1.sample import rejection_sampler

    if is_patched(rejection_sampler, "apply_sampling_constraints"):
        return False

    def apply_sampling_constraints(logits: Any, *args: Any, **kwargs: Any) -> Any:
        if logits.shape[0] == 0:
            return logits  # no draft positions this step: nothing to constrain
        return original(logits, *args, **kwargs)

    original = patch_attribute(
        rejection_sampler, "apply_sampling_constraints", apply_sampling_constraints
    )
    return True
