"""Patch: give ArcticProposer what custom_class proposers lack (see LEDGER)."""

from __future__ import annotations

from typing import Any

from . import is_patched, patch_attribute


def apply() -> bool:
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    if is_patched(GPUModelRunner, "propose_draft_token_ids"):
        return False

    def propose_draft_token_ids(
        self: Any,
        scheduler_output: Any,
        sampled_token_ids: Any,
        sampling_metadata: Any,
        hidden_states: Any,
        sample_hidden_states: Any,
        aux_hidden_states: Any,
        spec_decode_metadata: Any,
        common_attn_metadata: Any,
        slot_mappings: Any,
    ) -> Any:
        from ..proposer import ArcticProposer

        drafter = getattr(self, "drafter", None)
        if isinstance(drafter, ArcticProposer):
            from ..draft_probs import clear_draft_probs

            clear_draft_probs(self)  # as vLLM's own body does first; set again if sampled
            return drafter.propose_for_runner(
                self, scheduler_output, sampled_token_ids, sample_hidden_states,
                spec_decode_metadata,
            )  # fmt: skip
        return original(
            self, scheduler_output, sampled_token_ids, sampling_metadata, hidden_states,
            sample_hidden_states, aux_hidden_states, spec_decode_metadata,
            common_attn_metadata, slot_mappings,
        )  # fmt: skip

    original = patch_attribute(GPUModelRunner, "propose_draft_token_ids", propose_draft_token_ids)
    return True
