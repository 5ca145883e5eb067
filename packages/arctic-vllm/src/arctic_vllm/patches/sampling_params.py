"""Patch: min_p and logit_bias requests under arctic speculation (see LEDGER).

vLLM refuses both whenever speculation is configured ("The min_p and logit_bias sampling
parameters are not yet supported with speculative decoding"): its rejection sampler applies
neither to draft positions, so verifying drafts for such a request would change its output.
A request with no draft tokens is sampled by vLLM's ordinary sampler, which applies both.
Under arctic's methods such requests are therefore accepted and never drafted for
(ArcticProposer: no speculation for them), which keeps them exact; under every other
method vLLM's check runs unchanged.
"""

from __future__ import annotations

from typing import Any

from ..options import OPTIONS_ATTR, undraftable
from . import is_patched, patch_attribute


def apply() -> bool:
    from vllm.sampling_params import SamplingParams

    if is_patched(SamplingParams, "_validate_spec_decode"):
        return False

    def _validate_spec_decode(self: Any, speculative_config: Any) -> None:
        if getattr(speculative_config, OPTIONS_ATTR, None) is not None and undraftable(self):
            return  # arctic serves it undrafted: exact (see module docstring)
        original(self, speculative_config)

    original = patch_attribute(SamplingParams, "_validate_spec_decode", _validate_spec_decode)
    return True
