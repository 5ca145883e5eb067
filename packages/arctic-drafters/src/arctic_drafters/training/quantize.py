"""FP8 layers for serving: a drafter's heads (and projections) rounded to e4m3 by GPTQ on
its target's hidden states, saved where arctic-vllm's ``drafter_fp8`` looks.

What ``arctic-train quantize`` runs. arctic-kernels does the rounding and the file; it is
the ``[fp8]`` extra, imported only when this is called.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..speculator import Speculator
from .hidden import HiddenStates
from .shards import TokenShards

CALIBRATION_CHUNK = 4096  # draft points per calibration call: bounds the (chunk, V) logits


def quantize_for_serving(
    drafter: Speculator,
    data: TokenShards,
    states: HiddenStates,
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
    `drafter_dir`, where arctic-vllm's drafter_fp8 looks); returns a summary (the file, the
    layers replaced, calibration positions, scheme, rounding, head weight bytes).

    The drafter is quantized in place. A calibration position is a state of the prompt's
    last token or of the continuation, and the token after it; the drafter drafts its
    n_predict tokens from each (`arctic_kernels.draft_calibration`), in its own dtype.
    Weight-only (activation_scheme "none") with float32 logits by default: on the bundled
    drafters >= 99.3 % top-1 agreement per head with bf16 (arctic-kernels' README).
    """
    try:
        import arctic_kernels as ak
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
    calibrate = ak.draft_calibration(hidden, last, n, chunk=CALIBRATION_CHUNK)

    # Projections first (then the heads calibrate on the quantized projections' outputs, as
    # served); only the heads get float32 outputs.
    replaced: list[str] = []
    if include_projections:
        projections = ak.quantize_drafter(
            drafter,
            patterns=ak.PROJECTION_PATTERNS,
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
