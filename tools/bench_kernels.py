"""arctic-kernels benchmark: each fused op against its plain-torch reference, and TP bytes.

    uv run python tools/bench_kernels.py [--out results/bench_kernels.json] [--quick]
        [--check-interpreted] [--threads N]
        [--drafter DIR [DIR ...] --hidden hidden.safetensors --tokens shard.safetensors]

Per op and shape: the reference's median time, the fused (Triton) kernel's median time
where it can run (a CUDA GPU with triton), the minimum bytes the op must move (read inputs
once, write outputs once) and the bandwidth that implies. Then Fp8Linear against the bf16
nn.Linear it replaces (weight bytes and time; W8A8 and weight-only W8A16), and the
tensor-parallel top-k table (bytes every rank receives per step: naive logits all-gather vs
one all-gather of packed top-k). With --drafter: on each trained arctic-drafters checkpoint,
both FP8 schemes (heads, heads + projections) against the bf16 drafter on held-out target
states: top-1 agreement per draft position, acceptance-length change, weight bytes ratio,
beside the noise floor of recomputing the bf16 drafter in float32.

Honest labels: every row carries the device it ran on. CPU numbers are CPU numbers and say
nothing about a GPU. The Triton interpreter (--check-interpreted sets TRITON_INTERPRET=1)
only checks that the kernels agree with the references on this machine; it is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if "--check-interpreted" in sys.argv:
    os.environ["TRITON_INTERPRET"] = "1"  # must precede the first triton import

import torch
from tqdm import tqdm

import arctic_kernels as ak
from arctic_kernels._dispatch import triton_available
from arctic_kernels.fp8_linear import ActivationScheme


def median_ms(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time of `fn` in ms after warm-up (synchronised on CUDA)."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def op_cases(device: torch.device, quick: bool) -> list[dict[str, Any]]:
    """(name, shape, dtype, reference call, fused call, bytes moved) for each op and shape."""
    rows = [1, 8] if quick else [1, 8, 64]
    hidden = 1024 if quick else 4096
    dtype = torch.bfloat16
    gen = torch.Generator(device="cpu").manual_seed(0)
    cases: list[dict[str, Any]] = []
    for m in rows:
        x = torch.randn(m, hidden, generator=gen).to(device=device, dtype=dtype)
        w = torch.rand(hidden, generator=gen).to(device=device, dtype=dtype)
        b = torch.randn(hidden, generator=gen).to(device=device, dtype=dtype)
        z = torch.randn(m, 4 * hidden, generator=gen).to(device=device, dtype=dtype)
        size = dtype.itemsize
        cases += [
            {
                "op": "quantize_per_token",
                "shape": [m, hidden],
                "reference": lambda x=x: ak.quantize_per_token(x, backend="reference"),
                "fused": lambda x=x: ak.quantize_per_token(
                    x, backend="triton", check_finite_input=False
                ),
                "bytes": m * hidden * (size + 1) + m * 4,  # read x, write fp8 + scales
            },
            {
                "op": "speculator_layer_norm",
                "shape": [m, hidden],
                "reference": lambda x=x, w=w, b=b: ak.speculator_layer_norm(
                    x, w, b, backend="reference"
                ),
                "fused": lambda x=x, w=w, b=b: ak.speculator_layer_norm(x, w, b, backend="triton"),
                "bytes": (2 * m + 2) * hidden * size,
            },
            {
                "op": "sum_lstm_cell",
                "shape": [m, hidden],
                "reference": lambda z=z, x=x, w=w, b=b: ak.sum_lstm_cell(
                    z, x, w, b, w, b, backend="reference"
                ),
                "fused": lambda z=z, x=x, w=w, b=b: ak.sum_lstm_cell(
                    z, x, w, b, w, b, backend="triton"
                ),
                "bytes": (4 * m + m + 2 * m + 4) * hidden * size,  # z, c in; h', c' out; LN params
            },
        ]
    return cases


def compare(ref_out: object, fused_out: object) -> float:
    """Largest absolute difference over the (tuple of) outputs, in float32."""
    refs = ref_out if isinstance(ref_out, tuple) else (ref_out,)
    fuseds = fused_out if isinstance(fused_out, tuple) else (fused_out,)
    return max(
        (r.float() - f.float()).abs().max().item() for r, f in zip(refs, fuseds, strict=True)
    )


def bench_ops(device: torch.device, repeats: int, quick: bool) -> list[dict[str, Any]]:
    can_time_fused = device.type == "cuda" and triton_available()
    interpreted = (
        device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1" and triton_available()
    )
    results = []
    for case in tqdm(op_cases(device, quick), desc="ops", unit="case"):
        row: dict[str, Any] = {
            "op": case["op"],
            "shape": case["shape"],
            "dtype": "bfloat16",
            "device": device.type,
            "bytes_moved_min": case["bytes"],
        }
        row["reference_ms"] = median_ms(case["reference"], device, repeats)
        row["reference_GBps"] = case["bytes"] / row["reference_ms"] / 1e6
        if can_time_fused:
            row["fused_ms"] = median_ms(case["fused"], device, repeats)
            row["fused_GBps"] = case["bytes"] / row["fused_ms"] / 1e6
            row["speedup"] = row["reference_ms"] / row["fused_ms"]
            row["max_abs_diff"] = compare(case["reference"](), case["fused"]())
            row["fused"] = "triton (timed)"
        elif interpreted:
            row["max_abs_diff"] = compare(case["reference"](), case["fused"]())
            row["fused"] = "triton interpreter: correctness only, not a speed measurement"
        else:
            row["fused"] = "not run: needs a CUDA GPU with triton (or --check-interpreted)"
        results.append(row)
    return results


def bench_fp8_linear(device: torch.device, repeats: int, quick: bool) -> list[dict[str, Any]]:
    """A drafter LM head: bf16 nn.Linear vs Fp8Linear (same weights)."""
    inner, vocab = (512, 8192) if quick else (1024, 32000)
    torch.manual_seed(0)
    lin = torch.nn.Linear(inner, vocab, bias=False).to(device=device, dtype=torch.bfloat16)
    torch.nn.init.normal_(lin.weight, std=inner**-0.5)
    fp8 = ak.Fp8Linear.from_linear(lin, weight_scheme="per_tensor")
    fp8_dequant = ak.Fp8Linear.from_linear(lin, weight_scheme="per_tensor")
    fp8_dequant.matmul_backend = "dequantize"  # the fallback path, timed for comparison
    weight_only = ak.Fp8Linear.from_linear(
        lin, weight_scheme="per_tensor", activation_scheme="none"
    )
    int8 = ak.Int8Linear.from_linear(lin)  # the CPU kernel where it runs
    results = []
    for batch in tqdm([1, 8], desc="fp8 head", unit="batch"):
        x = torch.randn(batch, inner, device=device, dtype=torch.bfloat16)
        with torch.no_grad():
            bf16_ms = median_ms(lambda x=x: lin(x), device, repeats)
            fp8_ms = median_ms(lambda x=x: fp8(x), device, repeats)
            dequant_ms = median_ms(lambda x=x: fp8_dequant(x), device, repeats)
            weight_only_ms = median_ms(lambda x=x: weight_only(x), device, repeats)
            int8_ms = median_ms(lambda x=x: int8(x), device, repeats)
        results.append(
            {
                "op": "lm_head",
                "in_features": inner,
                "out_features": vocab,
                "batch": batch,
                "device": device.type,
                "matmul_backend": fp8.matmul_backend,
                "bf16_weight_bytes": lin.weight.numel() * 2,
                "fp8_weight_bytes": fp8.weight_bytes(),
                "bf16_ms": bf16_ms,
                "fp8_ms": fp8_ms,
                "fp8_dequantize_ms": dequant_ms,
                "fp8_weight_only_ms": weight_only_ms,
                "fp8_over_bf16_time": fp8_ms / bf16_ms,
                "weight_only_over_bf16_time": weight_only_ms / bf16_ms,
                "int8_backend": int8.matmul_backend,
                "int8_ms": int8_ms,
                "int8_over_bf16_time": int8_ms / bf16_ms,
            }
        )
    return results


@dataclass(frozen=True)
class Fp8Variant:
    label: str
    activation_scheme: ActivationScheme
    include_projections: bool = False
    gptq: bool = False  # rounded by GPTQ on the calibration states, else to nearest
    float32_logits: bool = False  # the quantized layers output float32


FP8_VARIANTS: tuple[Fp8Variant, ...] = (
    Fp8Variant("W8A8 per-token, heads", "per_token"),
    Fp8Variant("W8A16 weight-only, heads", "none"),
    Fp8Variant("W8A8 per-token, heads + projections", "per_token", include_projections=True),
    Fp8Variant("W8A16 weight-only, heads + projections", "none", include_projections=True),
    Fp8Variant("W8A8 per-token, heads, GPTQ, fp32 logits", "per_token", gptq=True,
               float32_logits=True),
    Fp8Variant("W8A16 weight-only, heads, GPTQ", "none", gptq=True),
    Fp8Variant("W8A16 weight-only, heads, GPTQ, fp32 logits", "none", gptq=True,
               float32_logits=True),
)  # fmt: skip
CHUNK = 4096  # positions per forward: bounds the (3, CHUNK, vocab) logits in memory


def drafter_positions(
    hidden_path: Path, tokens_path: Path, prompt_len: int, n: int, sequences: slice
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(states (P, H), last tokens (P,), the stored greedy continuation (P, n)) for every
    position after the prompt of the chosen sequences."""
    from safetensors.torch import load_file

    hidden = load_file(hidden_path)["hidden"][sequences]  # (S, T, H)
    tokens = load_file(tokens_path)["tokens"].long()[sequences]  # (S, T)
    t = torch.arange(prompt_len - 1, tokens.shape[1] - n - 1)
    seq = torch.arange(tokens.shape[0]).repeat_interleave(t.numel())
    t = t.repeat(tokens.shape[0])
    truth = tokens[seq[:, None], t[:, None] + 2 + torch.arange(n)]
    return hidden[seq, t], tokens[seq, t + 1], truth


def bench_trained_drafter(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """FP8 heads on a trained arctic-drafters checkpoint, on held-out target states.

    A draft at position t (state h_t, last token x_{t+1}) is accepted up to its first token
    differing from the stored greedy continuation x_{t+2}... (as arctic-drafters' evaluate).
    Agreement with the bf16 drafter (`arctic_kernels.AgreementEvaluator`, whose docstring
    defines it): "chain" compares greedy chains (later positions inherit earlier flips);
    "teacher-forced" feeds every variant the bf16 chain and counts a pick as agreeing when
    it is *a* top-1 of the bf16 logits (tie-aware; the exact rate is kept too). The noise
    floor is the same bf16 weights computed in float32. GPTQ variants are calibrated on
    --calibration-hidden/--calibration-tokens (the training split), or else on the first
    --calibration-sequences held-out sequences, which are then not evaluated.
    """
    import copy

    import arctic_drafters  # only for this optional section; not a dependency of arctic-kernels

    drafter = arctic_drafters.load_drafter(path, dtype=torch.bfloat16).eval()
    n = drafter.config.n_predict
    if args.calibration_hidden is not None:
        calib_desc = f"{args.calibration_sequences} sequences of {args.calibration_hidden}"
        cal_states, cal_last, _ = drafter_positions(
            args.calibration_hidden,
            args.calibration_tokens,
            args.prompt_len,
            n,
            slice(0, args.calibration_sequences),
        )
        evaluated = slice(None)
    else:
        calib_desc = f"held-out sequences 0-{args.calibration_sequences - 1} (not evaluated)"
        cal_states, cal_last, _ = drafter_positions(
            args.hidden, args.tokens, args.prompt_len, n, slice(0, args.calibration_sequences)
        )
        evaluated = slice(args.calibration_sequences, None)
    states, last, truth = drafter_positions(args.hidden, args.tokens, args.prompt_len, n, evaluated)
    calibrate = ak.draft_calibration(cal_states, cal_last, n, dtype=torch.bfloat16, chunk=CHUNK)
    evaluator = ak.AgreementEvaluator(
        drafter, states, last, truth, reference_dtype=torch.bfloat16, chunk=CHUNK
    )
    base_accepted = evaluator.reference_mean_accepted

    def row(label: str, model: torch.nn.Module, dtype: torch.dtype) -> dict[str, Any]:
        report = evaluator.evaluate(model, dtype)  # type: ignore[arg-type]
        flip = report.largest_flip
        return {
            "variant": label,
            "agreement_per_position": report.chain,
            "teacher_forced_agreement": report.teacher_forced,
            "teacher_forced_exact_agreement": report.teacher_forced_exact,
            "mean_accepted": report.mean_accepted,
            "relative_change": report.relative_change,
            # One near-tie in a repeated context can flip many positions the same way.
            "largest_flip_pair": {
                "bf16": flip.reference,
                "variant": flip.variant,
                "share": flip.share,
            },
        }

    result: dict[str, Any] = {
        "drafter": str(path),
        "positions": len(last),
        "calibration": f"{len(cal_last)} positions: {calib_desc}",
        "bf16_mean_accepted": base_accepted,
        "variants": [
            row(
                "noise floor: bf16 weights in float32",
                copy.deepcopy(drafter).float(),
                torch.float32,
            )
        ],
    }
    for v in tqdm(FP8_VARIANTS, desc=f"fp8 {path.name}", unit="variant"):
        quantized = copy.deepcopy(drafter)
        report = ak.quantize_drafter(
            quantized,
            include_projections=v.include_projections,
            activation_scheme=v.activation_scheme,
            calibration=calibrate if v.gptq else None,
            out_dtype=torch.float32 if v.float32_logits else None,
        )
        entry = row(v.label, quantized, torch.bfloat16)
        entry.update(
            activation_scheme=v.activation_scheme,
            rounding=report.rounding,
            replaced=report.replaced,
            matmul_backends=sorted(set(report.matmul_backends.values())),
            weight_bytes_bf16=report.bytes_before,
            weight_bytes_fp8=report.bytes_after,
            weight_bytes_ratio=report.bytes_after / report.bytes_before,
        )
        result["variants"].append(entry)
    for projections in (False, True):  # int8 weight-only: arctic-vllm's CPU default (both)
        quantized = copy.deepcopy(drafter)
        report = ak.quantize_drafter_int8(quantized, include_projections=projections)
        label = "int8 weight-only, heads" + (" + projections" if projections else "")
        entry = row(label, quantized, torch.bfloat16)
        entry.update(
            activation_scheme="none (bf16 into the kernel)",
            rounding=report.rounding,
            replaced=report.replaced,
            matmul_backends=sorted(set(report.matmul_backends.values())),
            weight_bytes_ratio=report.bytes_after / report.bytes_before,
        )
        result["variants"].append(entry)
    saved = path / ak.FP8_LAYERS_FILE
    if saved.is_file():  # what arctic-vllm's drafter_fp8 serves for this drafter
        quantized = copy.deepcopy(drafter)
        report = ak.load_fp8_layers(quantized, saved)
        entry = row(f"served: {ak.FP8_LAYERS_FILE} ({report.rounding})", quantized, torch.bfloat16)
        entry.update(
            activation_scheme=report.activation_scheme,
            rounding=report.rounding,
            replaced=report.replaced,
            weight_bytes_ratio=report.bytes_after / report.bytes_before,
        )
        result["variants"].append(entry)
    return result


def print_drafter_table(result: dict[str, Any]) -> None:
    def pct(values: list[float]) -> str:
        return " / ".join(f"{100 * v:.2f}" for v in values)

    print(
        f"\nFP8 on {result['drafter']} ({result['positions']} held-out positions, bf16 mean "
        f"accepted {result['bf16_mean_accepted']:.4f}); agreement with the bf16 drafter, %"
    )
    print(f"GPTQ calibration: {result['calibration']}")
    print(
        "variant | chain agreement | teacher-forced (tie-aware) | teacher-forced exact | "
        "accepted (change) | bytes ratio | top flip"
    )
    for v in result["variants"]:
        flip = v["largest_flip_pair"]
        print(
            f"{v['variant']} | {pct(v['agreement_per_position'])} | "
            f"{pct(v['teacher_forced_agreement'])} | "
            f"{pct(v['teacher_forced_exact_agreement'])} | {v['mean_accepted']:.4f} "
            f"({100 * v['relative_change']:+.2f} %) | {v.get('weight_bytes_ratio', 1.0):.3f} | "
            f"{flip['bf16']}->{flip['variant']} ({100 * flip['share']:.0f} % of flips)"
        )


def plot(output: dict[str, Any], path: Path) -> None:
    """PNG beside the JSON: TP bytes per step (log scale) and reference/fused op times."""
    import matplotlib

    matplotlib.use("Agg")  # no display on CI machines
    import matplotlib.pyplot as plt

    fig, (ax_tp, ax_ops) = plt.subplots(1, 2, figsize=(12, 4.5))
    world8 = [r for r in output["tp_topk_bytes"] if r["world_size"] == 8]
    labels = [f"V={r['vocab']}\nk={r['k']}" for r in world8]
    xs = range(len(world8))
    ax_tp.bar(
        [x - 0.2 for x in xs], [r["naive_bytes"] for r in world8], 0.4, label="logits all-gather"
    )
    ax_tp.bar(
        [x + 0.2 for x in xs], [r["sharded_bytes"] for r in world8], 0.4, label="sharded_topk"
    )
    ax_tp.set_yscale("log")
    ax_tp.set_xticks(list(xs), labels, fontsize=7)
    ax_tp.set_ylabel("bytes received per rank per step")
    ax_tp.set_title("TP top-k, world 8, batch 1, bf16 logits")
    ax_tp.legend()
    ops = output["ops"]
    names = [f"{r['op']}\n{r['shape']}" for r in ops]
    ax_ops.barh(names, [r["reference_ms"] for r in ops], label="reference")
    if any("fused_ms" in r for r in ops):
        ax_ops.barh(names, [r.get("fused_ms", 0.0) for r in ops], label="fused (Triton)", alpha=0.7)
    ax_ops.set_xscale("log")
    ax_ops.tick_params(axis="y", labelsize=6)
    ax_ops.set_xlabel(f"ms (median), {output['environment']['device']}")
    ax_ops.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    print(f"\n{title}")
    print(" | ".join(columns))
    for row in rows:
        cells = []
        for col in columns:
            value = row.get(col, "-")
            cells.append(f"{value:.4g}" if isinstance(value, float) else str(value))
        print(" | ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("results/bench_kernels.json"))
    parser.add_argument("--quick", action="store_true", help="smaller shapes, fewer repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--check-interpreted",
        action="store_true",
        help="on CPU: run the Triton kernels in the interpreter to check them (untimed)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (on a busy 2-core box, 2 threads made a 1x1024 GELU take 12 ms)",
    )
    drafter = parser.add_argument_group("optional: FP8 on a trained arctic-drafters checkpoint")
    drafter.add_argument(
        "--drafter",
        type=Path,
        nargs="+",
        action="extend",
        help="checkpoint directories (needs arctic-drafters); each gets both FP8 schemes",
    )
    drafter.add_argument("--hidden", type=Path, help="safetensors with 'hidden' (S, T, H)")
    drafter.add_argument("--tokens", type=Path, help="safetensors with 'tokens' (S, T)")
    drafter.add_argument("--prompt-len", type=int, default=64)
    drafter.add_argument(
        "--calibration-hidden", type=Path, help="GPTQ calibration states (the training split)"
    )
    drafter.add_argument("--calibration-tokens", type=Path)
    drafter.add_argument(
        "--calibration-sequences",
        type=int,
        default=64,
        help="sequences used for GPTQ calibration (from --calibration-*, else the first "
        "held-out ones, which are then left out of the evaluation)",
    )
    args = parser.parse_args()
    if args.drafter and (args.hidden is None or args.tokens is None):
        parser.error("--drafter needs --hidden and --tokens (held-out target states)")
    if (args.calibration_hidden is None) != (args.calibration_tokens is None):
        parser.error("--calibration-hidden and --calibration-tokens go together")
    if args.calibration_sequences < 1:
        parser.error(f"--calibration-sequences must be >= 1, got {args.calibration_sequences}")
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (5 if args.quick else 30)
    env = {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "arctic_kernels": ak.__version__,
        "triton_available": triton_available(),
        "cpu_threads": torch.get_num_threads(),
        "note": "CPU numbers are CPU numbers; the Triton interpreter is never timed.",
    }
    ops = bench_ops(device, repeats, args.quick)
    heads = bench_fp8_linear(device, repeats, args.quick)
    tp = ak.topk_bytes_table()
    print(f"device: {env['device_name']} ({device.type}), torch {env['torch']}; {env['note']}")
    print_table(
        "Fused ops (bf16): reference vs fused",
        ops,
        [
            "op",
            "shape",
            "reference_ms",
            "fused_ms",
            "speedup",
            "bytes_moved_min",
            "max_abs_diff",
            "fused",
        ],
    )
    print_table(
        "LM head: bf16 nn.Linear vs Fp8Linear (W8A8 _scaled_mm / W8A8 dequantize / W8A16) "
        "vs Int8Linear",
        heads,
        [
            "batch",
            "matmul_backend",
            "bf16_weight_bytes",
            "fp8_weight_bytes",
            "bf16_ms",
            "fp8_ms",
            "fp8_dequantize_ms",
            "fp8_weight_only_ms",
            "fp8_over_bf16_time",
            "weight_only_over_bf16_time",
            "int8_ms",
            "int8_over_bf16_time",
        ],
    )
    print_table(
        "TP top-k: bytes each rank receives per step (batch 1, bf16 logits)",
        tp,
        ["vocab", "world_size", "k", "naive_bytes", "sharded_bytes", "ratio"],
    )
    output: dict[str, Any] = {
        "environment": env,
        "ops": ops,
        "lm_head": heads,
        "tp_topk_bytes": tp,
    }
    if args.drafter:
        output["trained_drafters"] = [bench_trained_drafter(path, args) for path in args.drafter]
        for result in output["trained_drafters"]:
            print_drafter_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(output, indent=2))
    print(f"\nwrote {args.out}")
    try:
        plot(output, args.out.with_suffix(".png"))
        print(f"wrote {args.out.with_suffix('.png')}")
    except ImportError:
        print("matplotlib is not installed: no PNG written")


if __name__ == "__main__":
    main()
