# Triton kernels take untyped pointer / block arguments; @triton.jit is untyped.
# mypy: disable-error-code="no-untyped-def, untyped-decorator"
"""Fused speculator layer norm: one program per row, the row kept in registers."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from arctic_kernels._triton.math import rms_norm_affine


@triton.jit
def _speculator_layer_norm_kernel(x_ptr, w_ptr, b_ptr, y_ptr, n_cols, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    mask = offs < n_cols
    x = tl.load(x_ptr + row * n_cols + offs, mask=mask, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    y = rms_norm_affine(x, w, b, mask, n_cols, eps)
    tl.store(y_ptr + row * n_cols + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


def speculator_layer_norm_triton(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float
) -> torch.Tensor:
    n_cols = x.shape[-1]
    x2 = x.reshape(-1, n_cols).contiguous()  # (M, H)
    y = torch.empty_like(x2)
    if x2.shape[0]:
        block = triton.next_power_of_2(n_cols)
        _speculator_layer_norm_kernel[(x2.shape[0],)](
            x2, weight.contiguous(), bias.contiguous(), y, n_cols, eps, BLOCK=block
        )
    return y.reshape(x.shape)
