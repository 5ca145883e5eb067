"""What ``arctic-train generate`` and the online ``train`` / ``evaluate`` run (``cli.py``
parses the flags and calls these; ``train --cache`` keeps the in-memory path there).

``generate`` picks vLLM when it imports (``--engine auto``), else transformers. ``train``
and ``evaluate`` run under ``torchrun`` as well as alone: every process calls the same
function; only rank 0 writes files and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import save_drafter
from ..speculator import Speculator
from .datagen import generate_shards
from .distill import DistillConfig, train_online
from .distributed import init_runtime, place_target, shutdown_runtime
from .engines import generate_with_vllm, vllm_available
from .evaluate import AcceptanceReport, acceptance_table, evaluate_online
from .hidden import TargetStates
from .prompts import load_chat_prompts, load_prompts
from .run_log import RunLog
from .shards import SequenceStore
from .target import load_target_model, require_transformers

ACCEPTANCE_FILE = "acceptance.json"
FINAL_DIR = "final"


def _generation_dtype(name: str) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return getattr(torch, name)  # type: ignore[no-any-return]


def run_generate(args: argparse.Namespace) -> int:
    tokenizer = require_transformers().AutoTokenizer.from_pretrained(args.target)
    if args.chat:
        prompts = load_chat_prompts(
            args.prompts,
            tokenizer,
            args.max_prompt_len,
            args.max_prompts,
            split=args.split,
            text_field=args.text_field,
        )
    else:
        prompts = load_prompts(
            args.prompts,
            tokenizer,
            args.prompt_len,
            args.max_prompts,
            split=args.split,
            text_field=args.text_field,
        )
    engine = args.engine
    if engine == "auto":
        engine = "vllm" if vllm_available() else "transformers"
    common: dict[str, Any] = {
        "shard_size": args.shard_size,
        "temperature": 0.0 if args.greedy else args.temperature,
        "top_k": args.top_k,
        "seed": args.seed,
        "stop_at_eos": args.chat,
    }
    if engine == "vllm":
        generate_with_vllm(
            args.target,
            prompts,
            args.out,
            args.gen_len,
            data_parallel_size=args.data_parallel_size,
            tensor_parallel_size=args.tensor_parallel_size,
            dtype=args.dtype,
            engine_kwargs=args.vllm_kwargs,
            **common,
        )
    else:
        if args.data_parallel_size > 1 or args.tensor_parallel_size > 1:
            raise ValueError(
                "--data-parallel-size / --tensor-parallel-size need --engine vllm "
                "(the transformers engine runs one process)"
            )
        model = load_target_model(args.target, dtype=_generation_dtype(args.dtype))
        if torch.cuda.is_available():
            model.to("cuda")
        generate_shards(model, prompts, args.out, args.gen_len, args.batch_size, **common)
    store = SequenceStore(args.out)
    summary = {
        "out": str(args.out),
        "engine": engine,
        "sequences": len(store),
        "tokens": int(store.lengths.sum()),
    }
    print(json.dumps(summary))
    return 0


def _tensorboard(choice: str) -> bool | None:
    return {"auto": None, "on": True, "off": False}[choice]


def _report_dict(report: AcceptanceReport) -> dict[str, Any]:
    return {
        "per_position": report.per_position,
        "mean_accepted": report.mean_accepted,
        "tokens_per_step": report.tokens_per_step,
        "positions": report.positions,
    }


def run_online(args: argparse.Namespace, drafter: Speculator) -> int:
    """``train`` (without ``--cache``) or ``evaluate`` with the target in the loop."""
    runtime = init_runtime(args.device, args.precision)
    log: RunLog | None = None
    try:
        if args.command == "train" and runtime.is_main:  # a missing tensorboard fails first
            log = RunLog(args.out, tensorboard=_tensorboard(args.tensorboard))
        store = SequenceStore(args.data)
        eval_store = SequenceStore(args.eval_data) if getattr(args, "eval_data", None) else None
        model = load_target_model(args.target, dtype=runtime.target_dtype)
        states = TargetStates(place_target(model, runtime, shard=args.shard_target))
        if args.command == "evaluate":
            result = evaluate_online(
                drafter, store, states, runtime, n=args.n, batch_sequences=args.batch_sequences
            )
            if runtime.is_main:
                print(json.dumps(_report_dict(result), indent=2))
            return 0
        config = DistillConfig(
            steps=args.steps,
            batch_sequences=args.batch_sequences,
            lr=args.lr,
            weight_decay=args.weight_decay,
            warmup_frac=args.warmup_frac,
            grad_clip=args.grad_clip,
            kl_weight=args.kl_weight,
            seed=args.seed,
        )
        out = Path(args.out)
        if runtime.is_main:
            how = "sharded by FSDP2" if args.shard_target and runtime.distributed else "replicated"
            print(f"arctic-train: training on {runtime.describe()}, target {how}", file=sys.stderr)
        report = train_online(
            drafter,
            store,
            states,
            out,
            config,
            runtime,
            micro_batch_sequences=args.micro_batch_sequences,
            checkpoint_every=args.checkpoint_every,
            resume=not args.no_resume,
            stop_after_steps=args.stop_after_steps,
            log=log,
        )
        if report["steps_done"] < config.steps:
            if runtime.is_main:
                print(json.dumps(report, indent=2))
            return 0  # stopped early on purpose: rerun to continue
        acceptance = None
        if eval_store is not None:
            micro = report["micro_batch_sequences"]
            acceptance = evaluate_online(
                drafter, eval_store, states, runtime, batch_sequences=micro
            )
        if runtime.is_main:
            metadata: dict[str, Any] = {"target": args.target, "train_report": report}
            if acceptance is not None:
                metadata["heldout_acceptance"] = _report_dict(acceptance)
                (out / ACCEPTANCE_FILE).write_text(
                    json.dumps(_report_dict(acceptance), indent=2) + "\n"
                )
            save_drafter(
                drafter, out / FINAL_DIR, dtype=getattr(torch, args.dtype), metadata=metadata
            )
            if acceptance is not None:
                report = {**report, "heldout_acceptance": _report_dict(acceptance)}
            print(json.dumps(report, indent=2))
            if acceptance is not None:
                table = acceptance_table(acceptance)
                print(f"held-out acceptance ({args.eval_data}):\n{table}", file=sys.stderr)
            print(f"arctic-train: drafter ready to serve: {out / FINAL_DIR}", file=sys.stderr)
        return 0
    finally:
        if log is not None:
            log.close()
        shutdown_runtime(runtime)
