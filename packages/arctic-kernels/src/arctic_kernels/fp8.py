"""FP8 e4m3 quantization with per-tensor, per-output-channel and dynamic per-token scales.

Convention: `q = saturate(x / scale)` stored as torch.float8_e4m3fn and `x ~= q * scale`,
with `scale = amax / 448` in float32 (448 is the largest finite e4m3fn value). The cast is
saturated explicitly: on CUDA an out-of-range cast gives NaN, not the largest value.

Zeros: an all-zero tensor / row / channel would give scale 0 and 0/0 = NaN, so scales are
floored at `MIN_SCALE`; the zeros then quantize to exact zeros.

NaN / Inf have no meaningful scale. With `check_finite=True` (the default) they raise
`NonFiniteInputError` naming the tensor and the count. With `check_finite=False` (needed
inside CUDA graphs, where the check's host sync is not allowed) they propagate: the scale
of the affected tensor / row / channel becomes NaN or Inf and so do its outputs.
"""

from __future__ import annotations

import torch

from arctic_kernels._dispatch import Backend, choose_backend
from arctic_kernels._fp8_format import FP8_DTYPE, FP8_MAX, MIN_SCALE
from arctic_kernels.exceptions import NonFiniteInputError


def check_finite(x: torch.Tensor, name: str) -> None:
    """Raise NonFiniteInputError when `x` holds NaN or Inf (a host sync on CUDA)."""
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        n_nan = int(torch.isnan(x).sum())
        raise NonFiniteInputError(
            f"{name} holds {n_nan} NaN and {int(bad.sum()) - n_nan} Inf values of "
            f"{x.numel()}; FP8 scales need finite input (clean the tensor, or pass "
            "check_finite=False to let NaN/Inf propagate into the scale)"
        )


def _scale_from_amax(amax: torch.Tensor) -> torch.Tensor:
    return (amax.float() / FP8_MAX).clamp_min(MIN_SCALE)


def _cast(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)


def _require_float(x: torch.Tensor, name: str) -> None:
    if not x.is_floating_point() or x.dtype == FP8_DTYPE:
        raise TypeError(f"{name} must be a float32/float16/bfloat16 tensor, got {x.dtype}")


def quantize_per_tensor(
    x: torch.Tensor, *, check_finite_input: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """One scale for the whole tensor. Returns (q, scale) with scale a 0-dim float32."""
    _require_float(x, "x")
    if check_finite_input:
        check_finite(x, "x")
    scale = _scale_from_amax(x.abs().amax() if x.numel() else x.new_zeros(()))
    return _cast(x, scale), scale


def quantize_per_channel(
    weight: torch.Tensor, *, check_finite_input: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """One scale per output channel (row) of a (N, K) weight. Returns (q, scale (N, 1))."""
    _require_float(weight, "weight")
    if weight.dim() != 2:
        raise ValueError(
            f"weight must be 2-D (out_features, in_features), got {tuple(weight.shape)}"
        )
    if check_finite_input:
        check_finite(weight, "weight")
    scale = _scale_from_amax(weight.abs().amax(dim=1, keepdim=True))  # (N, 1)
    return _cast(weight, scale), scale


def quantize_per_token_reference(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain-torch per-token quantization: one scale per row of the last dim, (..., 1)."""
    scale = _scale_from_amax(x.abs().amax(dim=-1, keepdim=True))
    return _cast(x, scale), scale


def quantize_per_token(
    x: torch.Tensor, *, check_finite_input: bool = True, backend: Backend | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic per-token scales (one per row of the last dim). Returns (q, scale (..., 1)).

    backend: None picks Triton on CUDA when available, else the reference
    (`selected_backend("quantize_per_token")` tells which ran).
    """
    _require_float(x, "x")
    if x.dim() == 0 or x.shape[-1] == 0:
        raise ValueError(f"x must have a non-empty last dimension, got {tuple(x.shape)}")
    if check_finite_input:
        check_finite(x, "x")
    if choose_backend("quantize_per_token", x.device, backend) == "triton":
        from arctic_kernels._triton.fp8_quant import quantize_per_token_triton

        return quantize_per_token_triton(x)
    return quantize_per_token_reference(x)


def dequantize(
    q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """q * scale in `dtype`; `scale` broadcasts (0-dim, (N, 1) or (..., 1))."""
    return (q.float() * scale.float()).to(dtype)
