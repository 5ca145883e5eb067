"""Patch: vLLM's min_p and logit_bias processors under arctic speculation (see LEDGER).

With any speculative method vLLM builds only the min-tokens processor ("min_p and
logit_bias parameters won't work with speculative decoding"), because its rejection sampler
would not apply the other two to draft positions. Arctic never drafts for a request that
sets either (patch `sampling_params`, ArcticProposer), so such a request's every token is
its bonus token, sampled by vLLM's ordinary sampler, which applies all built-in
processors. So under arctic's methods the full built-in set is built; custom processors
stay refused as vLLM refuses them.
"""

from __future__ import annotations

from typing import Any

from ..options import OPTIONS_ATTR
from . import is_patched, patch_attribute


def apply() -> bool:
    from vllm.v1.worker import gpu_model_runner

    if is_patched(gpu_model_runner, "build_logitsprocs"):
        return False

    def build_logitsprocs(
        vllm_config: Any,
        device: Any,
        is_pin_memory: bool,
        is_pooling_model: bool,
        custom_logitsprocs: Any = (),
    ) -> Any:
        spec = getattr(vllm_config, "speculative_config", None)
        ours = getattr(spec, OPTIONS_ATTR, None) is not None
        if ours and not custom_logitsprocs and not is_pooling_model:
            from vllm.v1.sample.logits_processor import (
                BUILTIN_LOGITS_PROCESSORS,
                LogitsProcessors,
            )

            return LogitsProcessors(
                ctor(vllm_config, device, is_pin_memory) for ctor in BUILTIN_LOGITS_PROCESSORS
            )
        return original(vllm_config, device, is_pin_memory, is_pooling_model, custom_logitsprocs)

    original = patch_attribute(gpu_model_runner, "build_logitsprocs", build_logitsprocs)
    return True
