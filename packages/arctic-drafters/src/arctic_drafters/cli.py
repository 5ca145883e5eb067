"""``arctic-train``: generate data, cache hidden states, train and evaluate drafters.

arctic-train generate --target DIR --prompts rows.jsonl --out DATA [--greedy]
arctic-train train    --target DIR --data DATA --out RUN --kind lstm [--cache CACHE]
arctic-train evaluate --target DIR --data HELDOUT --drafter RUN/final
arctic-train quantize --target DIR --data DATA --drafter RUN/final [--cache CACHE]

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
from .cli_parser import PROG, build_parser
from .config import LSTMSpeculatorConfig, MLPSpeculatorConfig, SpeculatorConfig
from .exceptions import TrainingStateError
from .speculator import Speculator

# What a user can fix from the message alone: ours (CheckpointError, DatasetError and
# IncompatibleTargetError are ValueErrors, as are config validation's), files (OSError) and a
# missing extra (ImportError naming the pip install). Anything else is a bug: traceback.
USER_ERRORS = (ValueError, TrainingStateError, OSError, ImportError)


def quantize(
    drafter: Speculator,
    data: Any,
    states: Any,
    drafter_dir: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    positions: int = 8192,
    seed: int = 0,
    activation_scheme: str = "none",
    float32_logits: bool = True,
    include_projections: bool = False,
) -> dict[str, Any]:
    """GPTQ-round the drafter's heads (and projections) on `positions` random calibration
    positions of `data` (its target's hidden `states`) and save them with
    arctic_kernels.save_fp8_layers to `out` (default: fp8_layers.safetensors in
    `drafter_dir`, where arctic-vllm's drafter_fp8 looks); returns a summary."""
    try:
        import arctic_kernels as ak
        from arctic_kernels.quantize_drafter import PROJECTION_PATTERNS
    except ImportError as exc:
        raise ImportError(
            "arctic-train quantize needs arctic-kernels: pip install 'arctic-drafters[fp8]'"
        ) from exc
    if positions < 1:
        raise ValueError(f"positions must be >= 1, got {positions}")
    n = drafter.config.n_predict
    tokens = data.tokens
    t = torch.arange(data.prompt_len - 1, tokens.shape[1] - 1)  # a state and its next token
    seq = torch.arange(tokens.shape[0]).repeat_interleave(t.numel())
    pos = t.repeat(tokens.shape[0])
    pick = torch.randperm(len(seq), generator=torch.Generator().manual_seed(seed))
    pick = pick[:positions]
    seq, pos = seq[pick], pos[pick]
    dtype = next(drafter.parameters()).dtype
    hidden, last = states.hidden[seq, pos].to(dtype), tokens[seq, pos + 1]

    def calibrate(model: torch.nn.Module) -> None:
        for i in range(0, len(last), 4096):
            model.propose(hidden[i : i + 4096], last[i : i + 4096], n)  # type: ignore[operator]

    # Projections first (then the heads calibrate on the quantized projections' outputs, as
    # served); only the heads get float32 outputs.
    replaced: list[str] = []
    if include_projections:
        projections = ak.quantize_drafter(
            drafter,
            patterns=PROJECTION_PATTERNS,
            activation_scheme=activation_scheme,  # type: ignore[arg-type]
            calibration=calibrate,
        )
        replaced += projections.replaced
    report = ak.quantize_drafter(
        drafter,
        activation_scheme=activation_scheme,  # type: ignore[arg-type]
        calibration=calibrate,
        out_dtype=torch.float32 if float32_logits else None,
    )
    replaced += report.replaced
    path = ak.save_fp8_layers(drafter, out or Path(drafter_dir) / ak.FP8_LAYERS_FILE)
    return {
        "file": str(path),
        "layers": replaced,
        "calibration_positions": len(last),
        "activation_scheme": report.activation_scheme,
        "rounding": report.rounding,
        "head_weight_bytes_before": report.bytes_before,
        "head_weight_bytes_fp8": report.bytes_after,
    }


def drafter_config(args: argparse.Namespace, target_config: Any) -> SpeculatorConfig:
    common = {
        "vocab_size": int(target_config.vocab_size),
        "hidden_size": int(target_config.hidden_size),
        "inner_dim": args.inner_dim,
        "n_predict": args.n_predict,
        "tie_weights": not args.no_tie_weights,
    }
    if args.kind == "mlp":
        return MLPSpeculatorConfig(**common)
    return LSTMSpeculatorConfig(method=args.method, **common)


def hidden_states_for(target_dir: str, data: Any, cache: str | None, target: Any = None) -> Any:
    from .training import compute_hidden_states, load_hidden_cache, load_target, save_hidden_cache

    states = load_hidden_cache(cache) if cache else None
    if states is None:
        model = target if target is not None else load_target(target_dir)[0]
        states = compute_hidden_states(model, data.tokens)
        if cache:
            save_hidden_cache(cache, states)
    return states


def _debug_requested(args: argparse.Namespace) -> bool:
    return bool(args.debug) or os.environ.get("ARCTIC_DEBUG", "") not in ("", "0")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
    if args.threads:
        torch.set_num_threads(args.threads)
    from .training import (
        TrainConfig,
        evaluate_acceptance,
        generate_shards,
        load_prompts,
        load_target,
        load_target_config,
        read_shards,
        train_drafter,
    )

    if args.command == "generate":
        model, tokenizer = load_target(args.target)
        prompts = load_prompts(args.prompts, tokenizer, args.prompt_len, args.max_prompts)
        generate_shards(
            model,
            prompts,
            args.out,
            args.gen_len,
            batch_size=args.batch_size,
            temperature=0.0 if args.greedy else args.temperature,
            top_k=args.top_k,
            seed=args.seed,
        )
        return 0
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
    data = read_shards(args.data)
    model, _ = load_target(args.target)
    if args.command == "quantize":
        states = hidden_states_for(args.target, data, args.cache, model)
        summary = quantize(
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
