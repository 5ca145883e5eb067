"""From a drafter checkpoint to a ready DrafterProposer: the one place that decides how a
drafter runs (device, dtype, weight format, CUDA graph or compiled loop, tensor parallelism).

An engine integration (arctic-vllm) only says where the target lives and what the user asked
for; the choices and their measured reasons live here:

- weights: ``"fp8"`` serves the layers in ``<drafter>/fp8_layers.safetensors`` when present
  (GPTQ-rounded offline by ``arctic-train quantize``), else rounds the heads to nearest
  (W8A8) at load; ``"int8"`` makes heads and projections ``Int8Linear`` (torch's fused CPU
  kernel); ``"auto"`` is int8 exactly where the drafter runs on the CPU; ``"none"`` keeps
  them as loaded.
- the loop: with a TP group the heads are vocab-parallel (each rank 1/world of every head,
  one all-gather per head); else on CUDA the whole draft loop is one CUDA graph per padded
  batch size, and elsewhere it is compiled by torch.compile (eager if that fails), both at
  build time, never on a serving step.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from arctic_drafters import Speculator, load_drafter

from .draft_loop import DraftLoop
from .drafter_proposer import DrafterProposer

logger = logging.getLogger(__name__)

WEIGHT_FORMATS = ("auto", "none", "fp8", "int8")


@dataclass(frozen=True)
class DrafterBuild:
    proposer: DrafterProposer
    speculator: Speculator
    mode: str  # how it drafts: "cuda_graph", "compiled", "eager", or the TP runner's class
    weights: str  # what the weights are, for the log line ("" when as loaded)
    runner: Any = None  # the DraftLoop or VocabParallelDraftRunner (None: eager)


def loop_capture(
    device: torch.device | str, *, cuda_graph: bool, compile: bool, tp_group: Any | None
) -> str | None:
    """What `build_drafter` does to the draft loop at start-up with these settings:
    "cuda_graph" (captured per padded batch size), "compiled" (torch.compile) or None (the
    loop stays eager, or the TP runner drafts). Callers announce the slow start with it."""
    if tp_group is not None:
        return None
    if torch.device(device).type == "cuda" and cuda_graph:
        return "cuda_graph"
    return "compiled" if compile else None


def build_drafter(
    path: str | os.PathLike[str] | Speculator,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    num_tokens: int | None = None,
    max_batch_size: int = 256,
    weights: str = "auto",
    cuda_graph: bool = True,
    compile: bool = True,
    tp_group: Any | None = None,
) -> DrafterBuild:
    """Load (or take) a speculator and make it a DrafterProposer drafting ``num_tokens``
    (default: its n_predict; at most that) per call for batches up to ``max_batch_size``."""
    if weights not in WEIGHT_FORMATS:
        raise ValueError(f"weights must be one of {WEIGHT_FORMATS}, got {weights!r}")
    if (
        isinstance(max_batch_size, bool)
        or not isinstance(max_batch_size, int)
        or max_batch_size < 1
    ):
        raise ValueError(f"max_batch_size must be an int >= 1, got {max_batch_size!r}")
    device = torch.device(device)
    if isinstance(path, Speculator):
        speculator, source = path.to(device), None
        if dtype is not None:
            speculator = speculator.to(dtype)
    else:
        speculator, source = load_drafter(path, dtype=dtype, device=device), Path(path)
    n_predict = speculator.config.n_predict
    n = n_predict if num_tokens is None else min(num_tokens, n_predict)
    if n < 1:
        raise ValueError(f"num_tokens must be >= 1, got {num_tokens!r}")
    fp8_pending, note = _quantize(speculator, source, device, weights)
    runner: Any = None
    if tp_group is not None:
        from .tp_draft import VocabParallelDraftRunner

        # The runner owns the heads: it shards them as stored, or rounds its shard to FP8.
        runner = VocabParallelDraftRunner(speculator, tp_group, fp8=fp8_pending)
        fp8_pending = False
    if fp8_pending:
        from arctic_kernels import Fp8Linear, quantize_drafter

        quantize_drafter(speculator)
        for module in speculator.modules():
            if isinstance(module, Fp8Linear):
                # NaN/Inf checks sync with the host: not allowed inside a CUDA graph.
                module.check_finite = False
    captured = loop_capture(device, cuda_graph=cuda_graph, compile=compile, tp_group=tp_group)
    if captured is not None:
        graphs = captured == "cuda_graph"
        loop = DraftLoop(speculator, n, max_batch_size=max_batch_size, compile=not graphs)
        loop.capture()
        runner = loop
    mode = "eager" if runner is None else getattr(runner, "mode", type(runner).__name__)
    proposer = DrafterProposer(speculator, n, draft_runner=runner)
    return DrafterBuild(proposer, speculator, mode, note, runner)


def _quantize(
    speculator: Speculator, source: Path | None, device: torch.device, weights: str
) -> tuple[bool, str]:
    """Apply the weight format in place where it can be done here. Returns (FP8 rounding
    still to do: by the TP runner or the caller, a note for the log line)."""
    if weights == "fp8":
        from arctic_kernels import FP8_LAYERS_FILE, load_fp8_layers

        saved = None if source is None else source / FP8_LAYERS_FILE
        if saved is None or not saved.is_file():
            return True, ", FP8 heads (round-to-nearest W8A8 at load)"
        # Layers quantized offline (GPTQ needs calibration data): used as saved. NaN/Inf
        # checks sync with the host: not allowed inside a CUDA graph.
        report = load_fp8_layers(speculator, saved, check_finite=False)
        return False, (
            f", FP8 layers from {FP8_LAYERS_FILE} ({report.rounding}, activations "
            f"{report.activation_scheme})"
        )
    if weights == "none" or (weights == "auto" and device.type != "cpu"):
        return False, ""
    from arctic_kernels import quantize_drafter_int8

    report = quantize_drafter_int8(speculator)
    backends = sorted(set(report.matmul_backends.values()))
    return False, (
        f", int8 weights ({len(report.replaced)} layers, {report.bytes_before} -> "
        f"{report.bytes_after} bytes, {'/'.join(backends)})"
    )
