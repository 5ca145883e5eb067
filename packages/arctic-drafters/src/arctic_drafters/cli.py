"""``arctic-train``: generate data, cache hidden states, train and evaluate drafters.

arctic-train generate --target DIR --prompts rows.jsonl --out DATA [--greedy]
arctic-train train    --target DIR --data DATA --out RUN --kind lstm [--cache CACHE]
arctic-train evaluate --target DIR --data HELDOUT --drafter RUN/final
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
from .config import LSTMSpeculatorConfig, MLPSpeculatorConfig, SpeculatorConfig
from .speculator import Speculator


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="arctic-train", description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="stage 1: the target continues prompt chunks")
    g.add_argument("--target", required=True)
    g.add_argument("--prompts", required=True, help="jsonl rows {'text'} or {'messages'}")
    g.add_argument("--out", required=True)
    g.add_argument("--prompt-len", type=int, default=64)
    g.add_argument("--gen-len", type=int, default=256)
    g.add_argument("--max-prompts", type=int, default=None)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=10)
    g.add_argument("--greedy", action="store_true", help="temperature 0 (evaluation data)")
    g.add_argument("--seed", type=int, default=0)

    t = sub.add_parser("train", help="stage 2: distil a drafter on the target's hidden states")
    t.add_argument("--target", required=True)
    t.add_argument("--data", required=True, help="output dir of `generate`")
    t.add_argument("--out", required=True)
    t.add_argument("--kind", choices=["mlp", "lstm"], default="lstm")
    t.add_argument("--method", choices=["sum_lstm", "sum_rnn"], default="sum_lstm")
    t.add_argument("--inner-dim", type=int, default=256)
    t.add_argument("--n-predict", type=int, default=3)
    t.add_argument("--no-tie-weights", action="store_true")
    t.add_argument("--cache", default=None, help="dir to cache hidden states in / read them from")
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--batch-positions", type=int, default=1024)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--weight-decay", type=float, default=0.1)
    t.add_argument("--warmup-frac", type=float, default=0.05)
    t.add_argument("--grad-clip", type=float, default=1.0)
    t.add_argument("--kl-weight", type=float, default=0.0)
    t.add_argument("--checkpoint-every", type=int, default=100)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-resume", action="store_true")
    t.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="bfloat16")

    e = sub.add_parser("evaluate", help="acceptance against greedy continuations")
    e.add_argument("--target", required=True)
    e.add_argument("--data", required=True, help="`generate --greedy` output on held-out prompts")
    e.add_argument("--drafter", required=True)
    e.add_argument("--cache", default=None)
    e.add_argument("--n", type=int, default=None)

    q = sub.add_parser(
        "quantize",
        help="FP8 drafter layers rounded by GPTQ on the target's hidden states, saved beside "
        "the drafter for serving (needs arctic-kernels: the [fp8] extra)",
    )
    q.add_argument("--target", required=True)
    q.add_argument("--data", required=True, help="`generate` output to calibrate on (training)")
    q.add_argument("--drafter", required=True)
    q.add_argument("--cache", default=None)
    q.add_argument("--positions", type=int, default=8192, help="calibration positions (random)")
    q.add_argument(
        "--activation-scheme", choices=["none", "per_token", "per_tensor"], default="none"
    )
    q.add_argument(
        "--logits-dtype", choices=["float32", "drafter"], default="float32",
        help="float32: no bf16 rounding ties in the FP8 heads' logits",
    )  # fmt: skip
    q.add_argument("--include-projections", action="store_true")
    q.add_argument(
        "--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16",
        help="the dtype the drafter is calibrated in (the target's serving dtype)",
    )  # fmt: skip
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out", default=None, help="default: <drafter>/fp8_layers.safetensors")
    return p


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
        raise SystemExit(
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from .training import (
        TrainConfig,
        evaluate_acceptance,
        generate_shards,
        load_prompts,
        load_target,
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
    model, _ = load_target(args.target)
    if args.command == "evaluate":  # a drafter for another target fails before any work
        drafter = load_drafter(args.drafter).float()
        check_compatible(drafter, model.config)
    if args.command == "quantize":
        drafter = load_drafter(args.drafter, dtype=getattr(torch, args.dtype))
        check_compatible(drafter, model.config)
    data = read_shards(args.data)
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
        torch.manual_seed(args.seed)
        drafter = build_speculator(drafter_config(args, model.config))
        check_compatible(drafter, model.config)
        states = hidden_states_for(args.target, data, args.cache, model)
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
