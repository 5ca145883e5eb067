"""Engine-agnostic speculation loop: proposers, the draft loop, verifiers, a reference engine.

No vLLM import here: arctic-vllm adapts vLLM's model runner to these pieces, and
`generate` drives a Hugging Face transformers model with them (the oracle for the plugin).
"""

from __future__ import annotations

from .acceptance import AcceptanceTracker
from .distribution_check import HomogeneityResult, chi_square_homogeneity, chi_square_survival
from .draft import DRAFTER, SUFFIX, Draft
from .draft_loop import DraftLoop, default_batch_sizes
from .drafter_proposer import DrafterProposer
from .engine import StepPolicy, generate
from .exceptions import DraftShapeError, TargetShapeError, TensorDtypeError, VerifyInputError
from .generation_result import GenerationResult, GenerationStats, SourceStats
from .hybrid import HybridProposer
from .policy import SpeculationPolicy
from .proposer import Proposer, ProposeRequest
from .suffix_proposer import SuffixProposer
from .tp_draft import VocabParallelDraftRunner, shard_sizes
from .verify_greedy import verify_greedy
from .verify_sampling import verify_sampling, verify_sampling_draft
from .verify_tree import TreeInputs, accept_tree, build_tree_inputs

__version__ = "0.1.0"

__all__ = [
    "DRAFTER",
    "SUFFIX",
    "AcceptanceTracker",
    "Draft",
    "DraftLoop",
    "DraftShapeError",
    "DrafterProposer",
    "GenerationResult",
    "GenerationStats",
    "HomogeneityResult",
    "HybridProposer",
    "ProposeRequest",
    "Proposer",
    "SourceStats",
    "SpeculationPolicy",
    "StepPolicy",
    "SuffixProposer",
    "TargetShapeError",
    "TensorDtypeError",
    "TreeInputs",
    "VerifyInputError",
    "VocabParallelDraftRunner",
    "__version__",
    "accept_tree",
    "build_tree_inputs",
    "chi_square_homogeneity",
    "chi_square_survival",
    "default_batch_sizes",
    "generate",
    "shard_sizes",
    "verify_greedy",
    "verify_sampling",
    "verify_sampling_draft",
]
