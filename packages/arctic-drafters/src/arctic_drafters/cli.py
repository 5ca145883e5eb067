"""``arctic-train``: generate data, cache hidden states, train and evaluate drafters.

arctic-train generate --target DIR --prompts rows.jsonl --out DATA [--greedy]
arctic-train train    --target DIR --data DATA --out RUN --kind lstm [--cache CACHE]
arctic-train evaluate --target DIR --data HELDOUT --drafter RUN/final
arctic-train quantize --target DIR --data DATA --drafter RUN/final [--cache CACHE]
arctic-train export   --drafter RUN/final --out DIR --format arctic|mlp_speculator

Flags are checked up front (``cli_parser``); an error the user can fix (a bad flag, a broken
checkpoint, a dataset that does not fit) is one line on stderr and exit status 2. ``--debug``
or ``ARCTIC_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from .checkpoint import build_speculator, check_compatible, load_drafter, save_drafter
from .cli_parser import PROG, build_parser, check_combinations, expand_config
from .config import LSTMSpeculatorConfig, MLPSpeculatorConfig, SpeculatorConfig
from .exceptions import TrainingStateError
from .export import export_drafter

# What a user can fix from the message alone: ours (CheckpointError, DatasetError and
# IncompatibleTargetError are ValueErrors, as are config validation's), files (OSError) and a
# missing extra (ImportError naming the pip install). Anything else is a bug: traceback.
USER_ERRORS = (ValueError, TrainingStateError, OSError, ImportError)


def drafter_config(args: argparse.Namespace, target_config: Any) -> SpeculatorConfig:
    common = {
        "vocab_size": int(target_config.vocab_size),
        "hidden_size": int(target_config.hidden_size),
        "inner_dim": args.inner_dim,
        "n_predict": args.n_predict,
        "tie_weights": not args.no_tie_weights,
        # Recorded so check_compatible (and Arctic Inference, after export) refuse other targets.
        "base_model_archs": tuple(getattr(target_config, "architectures", None) or ()),
    }
    if args.kind == "mlp":
        return MLPSpeculatorConfig(**common)
    return LSTMSpeculatorConfig(method=args.method, **common)


def hidden_states_for(target_dir: str, data: Any, cache: str | None, target: Any = None) -> Any:
    from .training import (
        compute_hidden_states,
        load_hidden_cache,
        load_target_model,
        save_hidden_cache,
    )

    states = load_hidden_cache(cache) if cache else None
    if states is None:
        model = target if target is not None else load_target_model(target_dir)
        states = compute_hidden_states(model, data.tokens)
        if cache:
            save_hidden_cache(cache, states)
    return states


def export_command(args: argparse.Namespace) -> int:
    """``arctic-train export``: the drafter's architectures from --base-model-arch, else its
    own record, else --target's config.json (which it is also checked against)."""
    drafter = load_drafter(args.drafter)
    archs = args.base_model_archs
    if args.target is not None:
        from .training import load_target_config

        target_config = load_target_config(args.target)
        check_compatible(drafter, target_config)
        if archs is None and not drafter.config.base_model_archs:
            archs = list(getattr(target_config, "architectures", None) or []) or None
    out = export_drafter(
        drafter, args.out, args.format, base_model_archs=archs, dtype=getattr(torch, args.dtype)
    )
    print(json.dumps({"out": str(out), "format": args.format, "files": sorted(os.listdir(out))}))
    return 0


def _debug_requested(args: argparse.Namespace) -> bool:
    return bool(args.debug) or os.environ.get("ARCTIC_DEBUG", "") not in ("", "0")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    try:
        argv = expand_config(parser, argv)  # --config FILE: its flags, then the command line's
    except USER_ERRORS as exc:
        parser.error(" ".join(str(exc).split()))
    args = parser.parse_args(argv)  # a bad flag exits here with status 2
    try:
        return run(parser, args)
    except USER_ERRORS as exc:
        if _debug_requested(args):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__  # one line
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """The command ``args`` names; a flag that only its combination with others (or with the
    drafter) rules out is reported through ``parser.error``, before the target is loaded."""
    if args.command == "train" and not args.no_tie_weights and args.n_predict < 2:
        parser.error(f"--n-predict must be >= 2 unless --no-tie-weights, got {args.n_predict}")
    check_combinations(parser, args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.command == "export":
        return export_command(args)
    from .training import (
        TrainConfig,
        evaluate_acceptance,
        load_target_config,
        load_target_model,
        quantize_for_serving,
        read_shards,
        train_drafter,
    )

    if args.command == "generate":
        from .training.commands import run_generate

        return run_generate(args)
    # The cheap checks first: a broken drafter, one made for another target (read from the
    # target's config.json alone) or unusable data fail before the target's weights load.
    target_config = load_target_config(args.target)
    if args.command == "evaluate":
        drafter = load_drafter(args.drafter).float()
        n_predict = drafter.config.n_predict
        if args.n is not None and args.n > n_predict:
            parser.error(f"--n must be <= the drafter's n_predict ({n_predict}), got {args.n}")
    elif args.command == "quantize":
        drafter = load_drafter(args.drafter, dtype=getattr(torch, args.dtype))
    else:
        torch.manual_seed(args.seed)
        drafter = build_speculator(drafter_config(args, target_config))
    check_compatible(drafter, target_config)
    if args.command in ("train", "evaluate") and not args.cache:
        from .training.commands import run_online  # the target in the loop, torchrun-ready

        return run_online(args, drafter)
    data = read_shards(args.data)
    model = load_target_model(args.target)  # no tokenizer: token ids only
    if args.command == "quantize":
        states = hidden_states_for(args.target, data, args.cache, model)
        summary = quantize_for_serving(
            drafter,
            data,
            states,
            args.drafter,
            out=args.out,
            positions=args.positions,
            seed=args.seed,
            activation_scheme=args.activation_scheme,
            float32_logits=args.logits_dtype == "float32",
            include_projections=args.include_projections,
        )
        print(json.dumps(summary, indent=2))
        return 0
    if args.command == "train":
        config = TrainConfig(
            steps=args.steps,
            batch_positions=args.batch_positions,
            lr=args.lr,
            weight_decay=args.weight_decay,
            warmup_frac=args.warmup_frac,
            grad_clip=args.grad_clip,
            kl_weight=args.kl_weight,
            checkpoint_every=args.checkpoint_every,
            seed=args.seed,
        )
        states = hidden_states_for(args.target, data, args.cache, model)
        report = train_drafter(drafter, data, states, args.out, config, resume=not args.no_resume)
        save_drafter(
            drafter,
            Path(args.out) / "final",
            dtype=getattr(torch, args.dtype),
            metadata={"target": args.target, "train_report": report},
        )
        print(json.dumps(report, indent=2))
        return 0
    states = hidden_states_for(args.target, data, args.cache, model)
    result = evaluate_acceptance(drafter, data, states, n=args.n)
    print(
        json.dumps(
            {
                "per_position": result.per_position,
                "mean_accepted": result.mean_accepted,
                "tokens_per_step": result.tokens_per_step,
                "positions": result.positions,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
