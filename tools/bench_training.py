"""Benchmark: drafter training and data generation at scale, as ratios measured in one run.

    .venv/bin/python tools/bench_training.py                  # all three, bundled tiny target
    .venv/bin/python tools/bench_training.py --only memory --sequences 512

1. **memory**: peak RSS of a training process (a fresh one per cell) for a dataset of N and
   4N sequences, with the target in the loop (arctic-train's default: flat) and with every
   hidden state computed up front and held in memory (the first trainer, `--cache`: grows).
   Its target is a random 1-layer Llama 1024 wide (`--memory-hidden`): states of 2 KiB a
   token, so that they, not the process's ~1 GiB of libraries, show in the peak.
2. **throughput**: training positions/s at 1 and 2 processes (torchrun, gloo on the CPU,
   NCCL on CUDA), the same global batch; the ratio.
3. **datagen**: tokens/s of greedy data generation through vLLM and through transformers on
   the same prompts; the ratio.

Prints a table, writes JSON and a PNG (`--out`, default results/bench_training.*). The data
of 1-2 is synthetic (random token sequences written as arctic-train's shards): neither memory
nor speed depends on which tokens they are.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "models" / "arctic-tiny-llama"


class RandomEngine:
    """A GenerationEngine writing random continuations: synthetic shards, fast."""

    name = "random"

    def __init__(self, vocab_size: int, max_positions: int | None) -> None:
        self.vocab_size, self.max_positions = vocab_size, max_positions

    def generate(self, prompts, first_index, gen_len, temperature, top_k, seed, stop_at_eos):
        g = torch.Generator().manual_seed(seed * 7919 + first_index)
        return torch.randint(0, self.vocab_size, (len(prompts), gen_len), generator=g).tolist()


def synthetic_data(target: Path, out: Path, sequences: int, prompt_len: int, gen_len: int) -> Path:
    from arctic_drafters.training import generate_shards, load_target_config

    config = load_target_config(str(target))
    g = torch.Generator().manual_seed(sequences)
    prompts = torch.randint(0, config.vocab_size, (sequences, prompt_len), generator=g).tolist()
    engine = RandomEngine(int(config.vocab_size), config.max_position_embeddings)
    generate_shards(engine, prompts, out, gen_len, temperature=0.0, progress=False)
    return out


def child(args: argparse.Namespace) -> None:
    """One training run in this (fresh) process; prints its peak RSS and throughput."""
    torch.set_num_threads(args.threads)
    from arctic_drafters.cli import main

    out = Path(args.run_dir)
    argv = ["train", "--target", str(args.target), "--data", str(args.data), "--out", str(out)]
    argv += ["--steps", str(args.steps), "--inner-dim", str(args.inner_dim), "--no-resume"]
    argv += ["--tensorboard", "off", "--checkpoint-every", str(args.steps)]
    if args.mode == "cached":
        argv += ["--cache", str(out / "cache"), "--batch-positions", str(args.batch_positions)]
    else:
        argv += ["--batch-sequences", str(args.batch_sequences)]
    start = time.perf_counter()
    code = main(argv)
    report = json.loads((out / "train_report.json").read_text())
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    print(json.dumps({"code": code, "peak_rss_mib": peak_kib / 1024, "report": report,
                      "wall_s": time.perf_counter() - start}))  # fmt: skip


def run_child(args, data: Path, mode: str, work: Path, torchrun: int = 0) -> dict:
    cmd = [sys.executable]
    if torchrun:
        cmd += ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(torchrun)]
    cmd += [__file__, "--child", "--mode", mode, "--target", str(args.target), "--data", str(data)]
    cmd += ["--run-dir", str(work), "--steps", str(args.steps), "--threads", str(args.threads)]
    cmd += ["--batch-sequences", str(args.batch_sequences), "--inner-dim", str(args.inner_dim)]
    cmd += ["--batch-positions", str(args.batch_positions)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} run failed:\n{done.stderr[-3000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"code"')]
    results = [json.loads(line) for line in lines]  # one per process under torchrun
    report = results[0]["report"]
    # The in-memory trainer's report has no rate: its steps are batch_positions each.
    rate = (
        report.get("positions_per_s") or report["steps"] * args.batch_positions / report["seconds"]
    )
    return {
        "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
        "positions_per_s": rate,
        "seconds": report["seconds"],
    }


def wide_target(out: Path, hidden: int) -> Path:
    """A random 1-layer Llama ``hidden`` wide (vocab 2048): its states weigh 2 * hidden
    bytes a token in bf16 (an 8B target's: 8 KiB), while its forward stays cheap here."""
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=2048, hidden_size=hidden, intermediate_size=hidden, num_hidden_layers=1,
        num_attention_heads=max(1, hidden // 128), num_key_value_heads=max(1, hidden // 128),
        max_position_embeddings=2048,
    )  # fmt: skip
    transformers.LlamaForCausalLM(config).save_pretrained(out)
    return out


def bench_memory(args, work: Path) -> dict:
    rows = {}
    target = args.target
    if args.memory_hidden:
        target = wide_target(work / "wide-target", args.memory_hidden)
    child_args = argparse.Namespace(**{**vars(args), "target": target})
    for scale in (1, 4):
        n = args.sequences * scale
        data = synthetic_data(target, work / f"data-{n}", n, args.prompt_len, args.gen_len)
        for mode in ("online", "cached"):
            r = run_child(child_args, data, mode, work / f"run-{mode}-{n}")
            rows[f"{mode}-{scale}x"] = {"sequences": n, **r}
            print(f"  memory {mode:7s} {n:6d} sequences: peak RSS {r['peak_rss_mib']:8.1f} MiB")
    tokens = args.sequences * (args.prompt_len + args.gen_len)
    return {
        "target": str(target)
        if not args.memory_hidden
        else f"random 1-layer Llama, hidden {args.memory_hidden}",
        "tokens_1x": tokens,
        "rows": rows,
        "online_4x_over_1x": rows["online-4x"]["peak_rss_mib"] / rows["online-1x"]["peak_rss_mib"],
        "cached_4x_over_1x": rows["cached-4x"]["peak_rss_mib"] / rows["cached-1x"]["peak_rss_mib"],
    }


def bench_throughput(args, work: Path) -> dict:
    data = synthetic_data(
        args.target, work / "data-tp", args.sequences, args.prompt_len, args.gen_len
    )
    one = run_child(args, data, "online", work / "tp-1")
    two = run_child(args, data, "online", work / "tp-2", torchrun=2)
    print(f"  throughput 1 process {one['positions_per_s']:9.0f} positions/s")
    print(f"  throughput 2 processes {two['positions_per_s']:7.0f} positions/s")
    return {"one": one, "two": two, "ratio": two["positions_per_s"] / one["positions_per_s"]}


def bench_datagen(args, work: Path) -> dict:
    from arctic_drafters.training import (
        SequenceStore,
        generate_shards,
        load_target_model,
        vllm_available,
    )

    if not vllm_available():
        print("  datagen: vLLM is not installed, skipped")
        return {}
    from arctic_vllm.datagen_engine import VllmEngine

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(1, 8000, (args.datagen_prompts, args.prompt_len), generator=g).tolist()
    greedy = {"gen_len": args.gen_len, "temperature": 0.0, "progress": False, "shard_size": 4096}
    result = {}
    dtype = "bfloat16" if torch.cuda.is_available() else "float32"
    with VllmEngine(args.target, dtype=dtype, engine_kwargs={"enforce_eager": True}) as engine:
        generate_shards(engine, prompts[:2], work / "warm", **greedy)  # start-up stays out
        start = time.perf_counter()
        generate_shards(engine, prompts, work / "gen-vllm", **greedy)
        result["vllm_s"] = time.perf_counter() - start
    model = load_target_model(str(args.target), getattr(torch, dtype))
    if torch.cuda.is_available():
        model.to("cuda")
    start = time.perf_counter()
    generate_shards(model, prompts, work / "gen-hf", batch_size=args.datagen_prompts, **greedy)
    result["transformers_s"] = time.perf_counter() - start
    tokens = len(prompts) * args.gen_len
    result |= {
        "generated_tokens": tokens,
        "vllm_tokens_per_s": tokens / result["vllm_s"],
        "transformers_tokens_per_s": tokens / result["transformers_s"],
    }
    result["ratio"] = result["vllm_tokens_per_s"] / result["transformers_tokens_per_s"]
    same = [
        SequenceStore(work / d).batch(list(range(len(prompts)))).tokens
        for d in ("gen-vllm", "gen-hf")
    ]
    result["greedy_equal"] = bool(torch.equal(*same))
    print(f"  datagen vLLM {result['vllm_tokens_per_s']:8.0f} tok/s, transformers "
          f"{result['transformers_tokens_per_s']:8.0f} tok/s")  # fmt: skip
    return result


def plot(results: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    if "memory" in results:
        rows = results["memory"]["rows"]
        for mode in ("online", "cached"):
            xs = [rows[f"{mode}-{s}x"]["sequences"] for s in (1, 4)]
            ys = [rows[f"{mode}-{s}x"]["peak_rss_mib"] for s in (1, 4)]
            axes[0].plot(xs, ys, marker="o", label=mode)
        axes[0].set(xlabel="sequences", ylabel="peak RSS (MiB)", title="memory vs dataset size")
        axes[0].legend()
    if "throughput" in results:
        t = results["throughput"]
        axes[1].bar(
            ["1 process", "2 processes"], [t["one"]["positions_per_s"], t["two"]["positions_per_s"]]
        )
        axes[1].set(ylabel="positions/s", title=f"training throughput ({t['ratio']:.2f}x)")
    if results.get("datagen"):
        d = results["datagen"]
        axes[2].bar(
            ["transformers", "vLLM"], [d["transformers_tokens_per_s"], d["vllm_tokens_per_s"]]
        )
        axes[2].set(ylabel="tokens/s", title=f"data generation ({d['ratio']:.2f}x)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--target", type=Path, default=TINY)
    p.add_argument("--only", choices=["memory", "throughput", "datagen"], action="append")
    p.add_argument("--sequences", type=int, default=256, help="N of the memory benchmark")
    p.add_argument(
        "--memory-hidden",
        type=int,
        default=1024,
        help="the memory benchmark's target: a random 1-layer Llama this wide (0: --target)",
    )
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--gen-len", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch-sequences", type=int, default=8)
    p.add_argument("--batch-positions", type=int, default=1024)
    p.add_argument("--inner-dim", type=int, default=256)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--datagen-prompts", type=int, default=32)
    p.add_argument("--out", type=Path, default=ROOT / "results" / "bench_training")
    # One training run in a fresh process (what the benchmark starts itself as).
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=["online", "cached"], help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return 0
    only = args.only or ["memory", "throughput", "datagen"]
    results: dict = {"target": str(args.target), "threads_per_process": args.threads}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, bench in (("memory", bench_memory), ("throughput", bench_throughput),
                            ("datagen", bench_datagen)):  # fmt: skip
            if name in only:
                print(f"{name}:")
                results[name] = bench(args, work)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out.with_suffix(".png"))
    print("\nsummary (ratios within this run)")
    if "memory" in results:
        m = results["memory"]
        print(f"  peak RSS, 4x the data: online {m['online_4x_over_1x']:.3f}x, "
              f"in-memory states {m['cached_4x_over_1x']:.3f}x")  # fmt: skip
    if "throughput" in results:
        print(f"  positions/s, 2 processes / 1: {results['throughput']['ratio']:.2f}x")
    if results.get("datagen"):
        d = results["datagen"]
        print(f"  data generation tokens/s, vLLM / transformers: {d['ratio']:.2f}x "
              f"(greedy outputs equal: {d['greedy_equal']})")  # fmt: skip
    print(f"wrote {args.out.with_suffix('.json')} and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
