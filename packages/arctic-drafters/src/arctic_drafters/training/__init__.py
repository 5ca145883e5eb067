"""Distillation training of drafters from a frozen target (the ArcticTraining part).

Stage 1 (``datagen``): the target regenerates continuations of prompt chunks -> token shards.
Stage 2 (``trainer``): teacher-forced training on the target's final-norm hidden states
(``hidden``), with checkpoint/resume. ``evaluate`` measures acceptance on held-out shards;
``quantize`` rounds a trained drafter's layers to FP8 by GPTQ for serving (the [fp8] extra).
"""

from .datagen import TokenShards, generate_shards, load_prompts, read_shards
from .evaluate import AcceptanceReport, evaluate_acceptance
from .hidden import HiddenStates, compute_hidden_states, load_hidden_cache, save_hidden_cache
from .quantize import quantize_for_serving
from .target import load_target, load_target_config
from .trainer import TrainConfig, train_drafter

__all__ = [
    "AcceptanceReport",
    "HiddenStates",
    "TokenShards",
    "TrainConfig",
    "compute_hidden_states",
    "evaluate_acceptance",
    "generate_shards",
    "load_hidden_cache",
    "load_prompts",
    "load_target",
    "load_target_config",
    "quantize_for_serving",
    "read_shards",
    "save_hidden_cache",
    "train_drafter",
]
