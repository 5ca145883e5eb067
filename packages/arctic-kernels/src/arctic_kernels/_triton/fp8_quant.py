# Triton kernels take untyped pointer / block arguments; @triton.jit is untyped.
# mypy: disable-error-code="no-untyped-def, untyped-decorator"
"""Per-token dynamic FP8 e4m3 quantization in one pass: row amax, scale, scaled cast."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from arctic_kernels._fp8_format import FP8_DTYPE, MIN_SCALE
from arctic_kernels._triton.math import FP8_MAX, round_to_e4m3_grid


@triton.jit
def _quantize_per_token_kernel(x_ptr, q_ptr, scale_ptr, n_cols, min_scale, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    mask = offs < n_cols
    x = tl.load(x_ptr + row * n_cols + offs, mask=mask, other=0.0).to(tl.float32)
    amax = tl.max(tl.abs(x), axis=0)
    scale = tl.maximum(amax / FP8_MAX, min_scale)
    y = tl.minimum(tl.maximum(x / scale, -FP8_MAX), FP8_MAX)
    q = round_to_e4m3_grid(y)
    tl.store(q_ptr + row * n_cols + offs, q.to(q_ptr.dtype.element_ty), mask=mask)
    tl.store(scale_ptr + row, scale)


def quantize_per_token_triton(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as `quantize_per_token_reference`; one program per row."""
    n_cols = x.shape[-1]
    x2 = x.reshape(-1, n_cols).contiguous()  # (M, K)
    q = torch.empty(x2.shape, dtype=FP8_DTYPE, device=x.device)
    scale = torch.empty((x2.shape[0], 1), dtype=torch.float32, device=x.device)
    if x2.shape[0]:
        block = triton.next_power_of_2(n_cols)
        _quantize_per_token_kernel[(x2.shape[0],)](x2, q, scale, n_cols, MIN_SCALE, BLOCK=block)
    return q.reshape(x.shape), scale.reshape(*x.shape[:-1], 1)
