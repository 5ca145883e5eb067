"""The prepared GPU check: everything arctic can only check on a CUDA GPU, in one command.

    python tools/gpu_check.py                 # on a machine with one NVIDIA GPU
    python tools/gpu_check.py --json out.json # also the figures as JSON

Needs torch with CUDA and triton, nothing else of the workspace's environment (no vLLM):
the pure-Python packages are imported from this checkout (``packages/*/src``), arctic-suffix
(C++) is built into a temporary directory if it does not import (scikit-build-core,
pybind11 and cmake must be there; no network). In order, each timed, within ~8 minutes:

1. ``pytest -m gpu`` over arctic-kernels, arctic-runtime and arctic-drafters (every
   ``gpu``-marked test: Triton kernels vs their plain-torch references, FP8 linear layers,
   the CUDA-graph draft loop vs eager, training steps on CUDA with bf16 autocast);
2. at Llama-3.1-8B shapes (hidden 4096, vocab 128256, 3 heads, inner 4096, tied, random
   weights, bf16): the CUDA-graph draft loop equals eager ``propose`` token for token at
   batch 1 / 8 / 32, and the FP8 heads (round-to-nearest, as served without GPTQ layers)
   agree with bf16 on most tokens;
3. the draft latency per token of that LSTM head, CUDA graph and eager, bf16 and FP8, at
   batch 1 / 8 / 32 (the seed's anchor: 0.47 ms/token).

Exits 0 when every check passed, 1 when one failed, 2 without a CUDA device.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PURE_PACKAGES = ("arctic-drafters", "arctic-kernels", "arctic-runtime")  # no vLLM there
GPU_TEST_DIRS = ("arctic-kernels", "arctic-runtime", "arctic-drafters")
LLAMA_8B = {"vocab_size": 128256, "hidden_size": 4096, "inner_dim": 4096, "n_predict": 3}
BATCHES = (1, 8, 32)
ANCHOR_MS_PER_TOKEN = 0.47


def no_cuda_message() -> str | None:
    try:
        import torch
    except ImportError:
        return "gpu_check: torch is not installed; install torch with CUDA"
    if not torch.cuda.is_available():
        return (
            f"gpu_check: no CUDA device (torch {torch.__version__} sees none); run this on a "
            "machine with an NVIDIA GPU"
        )
    return None


def import_paths() -> list[str]:
    """sys.path entries for this checkout's packages (and a built arctic-suffix)."""
    paths = [str(ROOT / "packages" / p / "src") for p in PURE_PACKAGES]
    sys.path[:0] = paths
    try:
        importlib.import_module("arctic_suffix")
        return paths
    except ImportError:
        pass
    target = Path(tempfile.mkdtemp(prefix="arctic-suffix-"))
    print("building arctic-suffix (C++) into", target, flush=True)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    cmd += ["--no-index", "--target", str(target), str(ROOT / "packages" / "arctic-suffix")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"arctic-suffix did not build (arctic-runtime's tests will not import):\n"
              f"{done.stderr[-2000:]}")  # fmt: skip
        return paths
    sys.path.insert(0, str(target))
    return [str(target), *paths]


def run_gpu_tests(paths: list[str], timeout_s: int) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rA", "-p", "no:cacheprovider"]
    cmd += ["--continue-on-collection-errors"]  # one package that cannot import is reported
    cmd += [str(ROOT / "packages" / d / "tests") for d in GPU_TEST_DIRS]
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout_s)  # fmt: skip
        out, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        out, code = f"{exc.stdout or ''}\ntimed out after {timeout_s} s", 124
    print(out[-6000:])
    return {"exit_code": code, "seconds": time.perf_counter() - start, "passed": code == 0}


def _build_lstm(torch, shape: dict, device: str):
    from arctic_drafters import LSTMSpeculatorConfig, build_speculator

    config = LSTMSpeculatorConfig(**shape, tie_weights=True)
    torch.manual_seed(0)
    with torch.device(device):
        drafter = build_speculator(config)
    return drafter.to(torch.bfloat16).eval()


def _median_ms(torch, fn, repeats: int = 100, warmup: int = 10) -> float:
    """Median of ``fn``'s time: CUDA events around each call (host clock off CUDA)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if not torch.cuda.is_available():
            start_s = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start_s) * 1e3)
            continue
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def draft_checks(shape: dict = LLAMA_8B, device: str = "cuda", repeats: int = 100) -> dict:
    """CUDA graph == eager at 8B shapes; FP8 agreement; latency per token. (``device="cpu"``
    with a small ``shape`` runs the same steps eagerly: a smoke test of this script.)"""
    import torch

    from arctic_kernels import Fp8Linear, quantize_drafter
    from arctic_runtime import DraftLoop

    n = shape["n_predict"]
    graphs = device == "cuda"
    results: dict = {"equal": {}, "latency_ms_per_token": {}, "fp8_agreement": {}}
    bf16 = _build_lstm(torch, shape, device)
    fp8 = _build_lstm(torch, shape, device)
    quantize_drafter(fp8)  # round-to-nearest W8A8 heads, as served without GPTQ layers
    for module in fp8.modules():
        if isinstance(module, Fp8Linear):
            module.check_finite = False  # a host sync: not allowed in a CUDA graph
    g = torch.Generator(device=device).manual_seed(1)
    for name, drafter in (("bf16", bf16), ("fp8", fp8)):
        graphed = DraftLoop(drafter, n, max_batch_size=max(BATCHES), batch_sizes=BATCHES,
                            use_cuda_graph=graphs)  # fmt: skip
        eager = DraftLoop(drafter, n, max_batch_size=max(BATCHES), batch_sizes=BATCHES,
                          use_cuda_graph=False)  # fmt: skip
        if graphs:
            graphed.capture()
        for batch in BATCHES:
            hidden = torch.randn(batch, shape["hidden_size"], device=device, generator=g)
            hidden = hidden.to(torch.bfloat16)
            tokens = torch.randint(0, shape["vocab_size"], (batch,), device=device, generator=g)
            out = graphed.run(hidden, tokens)
            same = bool(torch.equal(out, eager.run(hidden, tokens)))
            same = same and bool(torch.equal(out, drafter.propose(hidden, tokens, n)))
            results["equal"][f"{name}@{batch}"] = same
            for mode, loop in (("cuda_graph", graphed), ("eager", eager)):

                def call(loop=loop, hidden=hidden, tokens=tokens):
                    return loop.run(hidden, tokens)

                ms = _median_ms(torch, call, repeats=repeats)
                results["latency_ms_per_token"][f"{name} {mode} @{batch}"] = ms / n
            if name == "fp8":
                reference = bf16.propose(hidden, tokens, n)
                agree = (out == reference).float().mean().item()
                results["fp8_agreement"][f"@{batch}"] = agree
    # Agreement is a figure, not a pass condition: random weights put many near-ties at
    # the top of 128256 logits (the FP8 kernels' accuracy is pytest's to check).
    results["passed"] = all(results["equal"].values())
    return results


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    p.add_argument("--skip-tests", action="store_true", help="only the draft checks (2-3)")
    p.add_argument("--tests-timeout", type=int, default=360, help="seconds for pytest -m gpu")
    args = p.parse_args()
    message = no_cuda_message()
    if message is not None:
        print(message, file=sys.stderr)
        return 2
    import torch

    began = time.perf_counter()
    report: dict = {
        "device": torch.cuda.get_device_name(),
        "capability": list(torch.cuda.get_device_capability()),
        "torch": torch.__version__,
    }
    print(f"gpu_check on {report['device']} (sm {report['capability']}, torch {torch.__version__})")
    paths = import_paths()
    if not args.skip_tests:
        print("\n== pytest -m gpu", flush=True)
        report["gpu_tests"] = run_gpu_tests(paths, args.tests_timeout)
    print("\n== draft loop at Llama-3.1-8B shapes", flush=True)
    start = time.perf_counter()
    report["draft"] = draft_checks()
    report["draft"]["seconds"] = time.perf_counter() - start
    report["seconds"] = time.perf_counter() - began
    draft = report["draft"]
    print(f"\n{'check':<40} result")
    if "gpu_tests" in report:
        t = report["gpu_tests"]
        print(
            f"{'pytest -m gpu':<40} {'passed' if t['passed'] else 'FAILED'} ({t['seconds']:.0f} s)"
        )
    for key, same in draft["equal"].items():
        print(f"{'CUDA graph == eager, ' + key:<40} {'equal' if same else 'DIFFERENT'}")
    for key, agree in draft["fp8_agreement"].items():
        print(f"{'FP8 heads agree with bf16 ' + key:<40} {agree:.1%} of draft tokens")
    print(f"\ndraft latency per token (LSTM, hidden 4096, vocab 128256, 3 heads; anchor "
          f"{ANCHOR_MS_PER_TOKEN} ms/token)")  # fmt: skip
    for key, ms in draft["latency_ms_per_token"].items():
        print(f"  {key:<28} {ms:7.3f} ms/token")
    print(f"\ntotal {report['seconds']:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    ok = draft["passed"] and report.get("gpu_tests", {"passed": True})["passed"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
