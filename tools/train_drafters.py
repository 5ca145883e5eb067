"""Recipe: MLP and LSTM drafters for the tiny target (models/arctic-tiny-llama).

    .venv/bin/python tools/train_drafters.py            # ~26 min on 2 CPU cores (the bundled ones)
    .venv/bin/python tools/train_drafters.py --steps 200 --batch-positions 768 \
        --train-prompts 1024                            # the first, 5x shorter recipe
    .venv/bin/python tools/train_drafters.py --quick    # a 2-minute smoke run into results/

Stage 1: the target continues 64-token chunks of the TRAIN split of arctic_vllm.bench's
corpus (sampled, temperature 1, top-k 10, as ArcticTraining does) and, for evaluation, chunks
of the HELD-OUT split (greedy). Stage 2: both drafters are distilled on the target's cached
final-norm hidden states (cross-entropy on the target's tokens + KL to its distribution).
Then per-position acceptance on the held-out greedy continuations and the draft cost
relative to one target decode step, written to <out>/eval.json and printed as the README's
table.

Seeded and resumable: shards, the hidden-state cache and training checkpoints live under
--work and are reused when the run is restarted.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

from arctic_drafters import (
    LSTMSpeculatorConfig,
    MLPSpeculatorConfig,
    build_speculator,
    check_compatible,
    load_drafter,
    save_drafter,
)
from arctic_drafters.training import (
    TrainConfig,
    compute_hidden_states,
    evaluate_acceptance,
    generate_shards,
    load_hidden_cache,
    load_prompts,
    load_target,
    quantize_for_serving,
    read_shards,
    save_hidden_cache,
    train_drafter,
)
from arctic_vllm.bench import humaneval_tasks, stdlib_files

ROOT = Path(__file__).resolve().parent.parent


def write_prompt_rows(path: Path, split: str) -> Path:
    texts = [f.text for f in stdlib_files(split)]
    texts += [t.prompt for t in humaneval_tasks(split)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts if t.strip()))
    return path


def sampled_prompts(
    rows: Path, tokenizer, prompt_len: int, count: int, seed: int
) -> list[list[int]]:
    chunks = load_prompts(rows, tokenizer, prompt_len)
    random.Random(seed).shuffle(chunks)
    return chunks[:count]


def shards_for(
    target, tokenizer, work: Path, name: str, split: str, count: int, args, greedy: bool, seed: int
):
    """Token shards and hidden states of ``count`` prompts of ``split``, continued by the
    target (greedy or sampled), cached under ``work`` as shards-<name> / hidden-<name>."""
    out = work / f"shards-{name}"
    if not (out / "manifest.json").is_file() or not list(out.glob("shard-*.safetensors")):
        rows = write_prompt_rows(work / f"prompts-{split}.jsonl", split)
        prompts = sampled_prompts(rows, tokenizer, args.prompt_len, count, seed)
        generate_shards(
            target,
            prompts,
            out,
            args.gen_len,
            batch_size=64,
            shard_size=512,
            temperature=0.0 if greedy else 1.0,
            top_k=10,
            seed=args.seed,
        )
    shards = read_shards(out)
    cache = work / f"hidden-{name}"
    states = load_hidden_cache(cache)
    if states is None:
        states = compute_hidden_states(target, shards.tokens, batch_size=64)
        save_hidden_cache(cache, states)
    return shards, states


def write_fp8_layers(drafter_dir: Path, shards, states, args) -> None:
    """FP8 heads for serving (`drafter_fp8: true`): weight-only e4m3 rounded by GPTQ on
    positions of GREEDY continuations of TRAIN-split prompts, float32 logits (`arctic-train
    quantize`'s defaults). Greedy, because that is the text a served greedy drafter reads:
    calibrated on the sampled (temperature 1) training continuations instead, the retrained
    LSTM's second head agreed with bf16 on 98.83 % of held-out positions, on greedy ones
    99.31 % (tools/bench_kernels.py, tie-aware)."""
    drafter = load_drafter(drafter_dir, dtype=torch.bfloat16)
    summary = quantize_for_serving(
        drafter, shards, states, drafter_dir, positions=args.fp8_positions, seed=args.seed
    )
    print(json.dumps(summary, indent=2))


@torch.no_grad()
def draft_cost(target, drafter, context: int, batch: int, n: int, repeats: int = 50) -> dict:
    """Median seconds of one target decode step (KV cache over ``context`` tokens) and of one
    n-token draft, both at ``batch``, measured in the same process."""
    ids = torch.randint(1, target.config.vocab_size, (batch, context))
    out = target(input_ids=ids, use_cache=True)
    past, nxt = out.past_key_values, ids[:, -1:]
    hidden = torch.randn(batch, target.config.hidden_size)

    def median(fn) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2]

    import copy

    def target_step():
        target(input_ids=nxt, past_key_values=copy.copy(past), use_cache=True)

    target_s = median(target_step)
    draft_s = median(lambda: drafter.propose(hidden, nxt[:, 0], n))
    return {
        "batch": batch,
        "target_step_ms": target_s * 1e3,
        "draft_ms": draft_s * 1e3,
        "draft_over_target": draft_s / target_s,
    }


def plot(results: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for kind, e in results["drafters"].items():
        a = e["per_position_acceptance"]
        label = f"{kind} ({e['parameters'] / 1e6:.2f}M, {e['tokens_per_target_step']:.2f} tok/step)"
        ax.plot(range(1, len(a) + 1), a, marker="o", label=label)
    ax.set_xlabel("draft position")
    ax.set_ylabel("P(accepted up to here)")
    ax.set_title("held-out acceptance vs the tiny target's greedy output")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", default=str(ROOT / "models/arctic-tiny-llama"))
    p.add_argument("--out", default=str(ROOT / "models/arctic-tiny-llama-drafters"))
    p.add_argument("--work", default=str(ROOT / "results/drafters-work"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--gen-len", type=int, default=128)
    p.add_argument("--train-prompts", type=int, default=3072)
    p.add_argument("--heldout-prompts", type=int, default=128)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-positions", type=int, default=1024)
    p.add_argument("--kl-weight", type=float, default=1.0)
    # Similar parameter counts (the 8192 x D embedding and head dominate): MLP 3.51M, LSTM 3.49M.
    p.add_argument("--mlp-inner-dim", type=int, default=208)
    p.add_argument("--lstm-inner-dim", type=int, default=192)
    p.add_argument("--quick", action="store_true", help="tiny smoke run (not for the README)")
    p.add_argument(
        "--fp8-only",
        action="store_true",
        help="only (re)write each trained drafter's FP8 layers (GPTQ, fp8_layers.safetensors)",
    )
    p.add_argument("--fp8-positions", type=int, default=8192, help="GPTQ calibration positions")
    p.add_argument(
        "--fp8-prompts",
        type=int,
        default=512,
        help="train-split prompts continued greedily for GPTQ",
    )
    args = p.parse_args()
    if args.quick:
        args.train_prompts, args.heldout_prompts, args.steps = 64, 32, 40
        args.fp8_prompts = 32
        args.work, args.out = args.work + "-quick", str(ROOT / "results/drafters-quick")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    target_dir = Path(args.target)
    if not (target_dir / "training_report.json").is_file():
        print(
            f"{target_dir} has no training_report.json: the target is not trained yet",
            file=sys.stderr,
        )
        return 2
    work, out = Path(args.work), Path(args.out)
    target, tokenizer = load_target(str(target_dir))
    began = time.perf_counter()
    train_shards, train_states = shards_for(
        target, tokenizer, work, "train", "train", args.train_prompts, args, False, args.seed
    )
    held_shards, held_states = shards_for(
        target, tokenizer, work, "heldout", "heldout", args.heldout_prompts, args, True, args.seed
    )
    # Other prompts of the train split than the training ones' order (seed + 1), greedy.
    fp8_shards, fp8_states = shards_for(
        target, tokenizer, work, "train-greedy", "train", args.fp8_prompts, args, True,
        args.seed + 1,
    )  # fmt: skip
    data_seconds = time.perf_counter() - began

    if args.fp8_only:
        for kind in ("mlp", "lstm"):
            write_fp8_layers(out / kind, fp8_shards, fp8_states, args)
        return 0

    c = target.config
    configs = {
        "mlp": MLPSpeculatorConfig(c.vocab_size, c.hidden_size, args.mlp_inner_dim, n_predict=3),
        "lstm": LSTMSpeculatorConfig(c.vocab_size, c.hidden_size, args.lstm_inner_dim, n_predict=3),
    }
    train = TrainConfig(
        steps=args.steps,
        batch_positions=args.batch_positions,
        lr=1e-3,
        weight_decay=0.1,
        warmup_frac=0.05,
        grad_clip=1.0,
        kl_weight=args.kl_weight,
        checkpoint_every=100,
        seed=args.seed,
    )
    results: dict = {
        "target": str(
            target_dir.relative_to(ROOT)
            if target_dir.is_absolute() and ROOT in target_dir.parents
            else target_dir
        ),
        "data_seconds": round(data_seconds, 1),
        "threads": args.threads,
        "train_sequences": int(train_shards.tokens.shape[0]),
        "heldout_sequences": int(held_shards.tokens.shape[0]),
        "prompt_len": args.prompt_len,
        "gen_len": args.gen_len,
        "args": {k: v for k, v in vars(args).items() if k not in ("target", "out", "work")},
        "drafters": {},
    }
    for kind, config in configs.items():
        torch.manual_seed(args.seed)
        drafter = build_speculator(config)
        check_compatible(drafter, c)
        report = train_drafter(drafter, train_shards, train_states, work / f"run-{kind}", train)
        save_drafter(
            drafter,
            out / kind,
            dtype=torch.bfloat16,
            metadata={
                "target": "arctic-tiny-llama",
                "recipe": "tools/train_drafters.py",
                "train_report": report,
            },
        )
        write_fp8_layers(out / kind, fp8_shards, fp8_states, args)
        # Measure what is committed: the bf16 weights, run in float32.
        drafter = load_drafter(out / kind, dtype=torch.float32)
        acc = evaluate_acceptance(drafter, held_shards, held_states)
        costs = [
            draft_cost(target, drafter, args.prompt_len + args.gen_len // 2, b, 3) for b in (1, 16)
        ]
        entry = {
            "parameters": drafter.num_parameters(),
            "config": config.to_dict(),
            "per_position_acceptance": acc.per_position,
            "mean_accepted": acc.mean_accepted,
            "tokens_per_target_step": acc.tokens_per_step,
            "heldout_positions": acc.positions,
            "train_seconds": report["seconds"],
            "draft_cost": costs,
        }
        results["drafters"][kind] = entry
        print(json.dumps({kind: entry}, indent=2))
    (out / "eval.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out / "acceptance.png")
    print(
        "| drafter | params | acc@1 | acc@2 | acc@3 | mean accepted | tokens/step | draft/target (b=1) | (b=16) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for kind, e in results["drafters"].items():
        a = e["per_position_acceptance"]
        print(
            f"| {kind} | {e['parameters'] / 1e6:.2f}M | {a[0]:.3f} | {a[1]:.3f} | {a[2]:.3f} | "
            f"{e['mean_accepted']:.3f} | {e['tokens_per_target_step']:.3f} | "
            f"{e['draft_cost'][0]['draft_over_target']:.2f} | {e['draft_cost'][1]['draft_over_target']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
