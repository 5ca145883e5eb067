"""Engine-agnostic speculation loop: proposers, the draft loop, acceptance counts.

No vLLM import here: arctic-vllm adapts vLLM's model runner to these pieces. The reference
engine and its verifiers live in `arctic_runtime.reference` and are re-exported here:
`generate` drives a Hugging Face transformers model with them (the oracle for the plugin).
"""

from __future__ import annotations

from .acceptance import AcceptanceTracker, DraftCounts
from .acceptance_curves import AcceptanceCurves, CurveKey, curve_key, suffix_bucket
from .distribution_check import HomogeneityResult, chi_square_homogeneity, chi_square_survival
from .draft import DRAFTER, SUFFIX, Draft
from .draft_allocation import Allocation, best_lengths, expected_throughput
from .draft_loop import DraftLoop, default_batch_sizes
from .draft_planner import DraftPlanner, PlannerCounters, PlanRequest
from .drafter_builder import WEIGHT_FORMATS, DrafterBuild, build_drafter, loop_capture
from .drafter_proposer import DrafterProposer
from .exceptions import DraftShapeError, TargetShapeError, TensorDtypeError, VerifyInputError
from .hybrid import HybridProposer
from .policy import SpeculationPolicy
from .proposer import Proposer, ProposeRequest
from .reference import (
    GenerationResult,
    GenerationStats,
    SourceStats,
    StepPolicy,
    TreeInputs,
    accept_tree,
    build_tree_inputs,
    generate,
    verify_greedy,
    verify_sampling,
    verify_sampling_draft,
)
from .step_cost import LinearCostFit, StepTimer
from .suffix_proposer import SuffixProposer
from .tp_draft import VocabParallelDraftRunner, shard_sizes

__version__ = "0.1.0"

__all__ = [
    "DRAFTER",
    "SUFFIX",
    "WEIGHT_FORMATS",
    "AcceptanceCurves",
    "AcceptanceTracker",
    "Allocation",
    "CurveKey",
    "Draft",
    "DraftCounts",
    "DraftLoop",
    "DraftPlanner",
    "DraftShapeError",
    "DrafterBuild",
    "DrafterProposer",
    "GenerationResult",
    "GenerationStats",
    "HomogeneityResult",
    "HybridProposer",
    "LinearCostFit",
    "PlanRequest",
    "PlannerCounters",
    "ProposeRequest",
    "Proposer",
    "SourceStats",
    "SpeculationPolicy",
    "StepPolicy",
    "StepTimer",
    "SuffixProposer",
    "TargetShapeError",
    "TensorDtypeError",
    "TreeInputs",
    "VerifyInputError",
    "VocabParallelDraftRunner",
    "__version__",
    "accept_tree",
    "best_lengths",
    "build_drafter",
    "build_tree_inputs",
    "chi_square_homogeneity",
    "chi_square_survival",
    "curve_key",
    "default_batch_sizes",
    "expected_throughput",
    "generate",
    "loop_capture",
    "shard_sizes",
    "suffix_bucket",
    "verify_greedy",
    "verify_sampling",
    "verify_sampling_draft",
]
