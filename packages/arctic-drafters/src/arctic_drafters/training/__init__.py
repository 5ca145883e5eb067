"""Distillation training of drafters from a frozen target (the ArcticTraining part).

Stage 1 (``datagen``; through vLLM: arctic-vllm's ``datagen_engine``, see ``engines``): the target answers the user's prompts (``prompts``:
jsonl / parquet / arrow / Hugging Face datasets, chunked or chat) through vLLM or
transformers -> resumable token shards (``shards``).
Stage 2 (``distill``): the drafter is trained with the frozen target in the loop (its states
computed per micro-batch, no gradient), on one process or many under torchrun
(``distributed``: DDP, FSDP2 for the target, bf16 autocast on CUDA), logged to JSONL and
TensorBoard (``run_log``). ``trainer`` is the first, in-memory trainer: every hidden state
computed once and cached (``hidden``), for small data on one process.
``evaluate`` measures acceptance on held-out shards; ``quantize`` rounds a trained drafter's
layers to FP8 by GPTQ for serving (the [fp8] extra).
"""

from .datagen import GenerationEngine, TransformersEngine, generate_shards, request_seed
from .distill import DistillConfig, SequenceOrder, train_online
from .distributed import Runtime, init_runtime, place_target, shutdown_runtime
from .engines import generate_with_vllm, vllm_available
from .evaluate import AcceptanceReport, acceptance_table, evaluate_acceptance, evaluate_online
from .hidden import (
    HiddenStates,
    TargetStates,
    compute_hidden_states,
    load_hidden_cache,
    save_hidden_cache,
)
from .prompts import iter_rows, load_chat_prompts, load_prompts
from .quantize import quantize_for_serving
from .run_log import RunLog
from .shards import SequenceBatch, SequenceStore, TokenShards, read_shards
from .target import load_target, load_target_config, load_target_model
from .trainer import TrainConfig, train_drafter

__all__ = [
    "AcceptanceReport",
    "DistillConfig",
    "GenerationEngine",
    "HiddenStates",
    "RunLog",
    "Runtime",
    "SequenceBatch",
    "SequenceOrder",
    "SequenceStore",
    "TargetStates",
    "TokenShards",
    "TrainConfig",
    "TransformersEngine",
    "acceptance_table",
    "compute_hidden_states",
    "evaluate_acceptance",
    "evaluate_online",
    "generate_shards",
    "generate_with_vllm",
    "init_runtime",
    "iter_rows",
    "load_chat_prompts",
    "load_hidden_cache",
    "load_prompts",
    "load_target",
    "load_target_config",
    "load_target_model",
    "place_target",
    "quantize_for_serving",
    "read_shards",
    "request_seed",
    "save_hidden_cache",
    "shutdown_runtime",
    "train_drafter",
    "train_online",
    "vllm_available",
]
