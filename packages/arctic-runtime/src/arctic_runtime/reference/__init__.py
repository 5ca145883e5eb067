"""The reference engine: speculative decoding over a Hugging Face causal LM, and its verifiers.

Not used for serving (arctic-vllm verifies with vLLM's own samplers): `generate` is the
oracle the plugin is checked against, token for token, and a way to speculate without vLLM.
The verifiers are tensor-only and engine-agnostic: greedy (`verify_greedy`), one pass over
a draft tree (`build_tree_inputs` / `accept_tree`) and lossless rejection sampling
(`verify_sampling`).
"""

from __future__ import annotations

from .engine import StepPolicy, generate
from .hf_target import HFTarget
from .result import GenerationResult, GenerationStats, SourceStats
from .verify_greedy import PAD_TOKEN, verify_greedy
from .verify_sampling import verify_sampling, verify_sampling_draft
from .verify_tree import TreeInputs, accept_tree, build_tree_inputs

__all__ = [
    "PAD_TOKEN",
    "GenerationResult",
    "GenerationStats",
    "HFTarget",
    "SourceStats",
    "StepPolicy",
    "TreeInputs",
    "accept_tree",
    "build_tree_inputs",
    "generate",
    "verify_greedy",
    "verify_sampling",
    "verify_sampling_draft",
]
