# Triton kernels take untyped pointer / block arguments; @triton.jit is untyped.
# mypy: disable-error-code="no-untyped-def, untyped-decorator"
"""Fused sum-LSTM gate update: one program per row reads z (4H) and c (H) once."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from arctic_kernels._triton.math import gelu_erf, rms_norm_affine


@triton.jit
def _sum_lstm_kernel(
    z_ptr,
    c_ptr,
    cw_ptr,
    cb_ptr,
    sw_ptr,
    sb_ptr,
    h_out_ptr,
    c_out_ptr,
    hidden,
    eps,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    mask = offs < hidden
    z_row = z_ptr + row * 4 * hidden
    z_f = tl.load(z_row + offs, mask=mask, other=0.0).to(tl.float32)
    z_i = tl.load(z_row + hidden + offs, mask=mask, other=0.0).to(tl.float32)
    z_o = tl.load(z_row + 2 * hidden + offs, mask=mask, other=0.0).to(tl.float32)
    z_c = tl.load(z_row + 3 * hidden + offs, mask=mask, other=0.0).to(tl.float32)
    c = tl.load(c_ptr + row * hidden + offs, mask=mask, other=0.0).to(tl.float32)
    cw = tl.load(cw_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    cb = tl.load(cb_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    sw = tl.load(sw_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    sb = tl.load(sb_ptr + offs, mask=mask, other=0.0).to(tl.float32)

    cand = gelu_erf(rms_norm_affine(z_c, cw, cb, mask, hidden, eps))
    c_new = tl.sigmoid(z_f) * c + tl.sigmoid(z_i) * cand
    # Masked lanes of c_new are GELU(0 * w + 0) terms times 0: zero, so the mean stays exact.
    c_new = tl.where(mask, c_new, 0.0)
    h_new = gelu_erf(rms_norm_affine(c_new, sw, sb, mask, hidden, eps)) * tl.sigmoid(z_o)
    tl.store(c_out_ptr + row * hidden + offs, c_new.to(c_out_ptr.dtype.element_ty), mask=mask)
    tl.store(h_out_ptr + row * hidden + offs, h_new.to(h_out_ptr.dtype.element_ty), mask=mask)


def sum_lstm_cell_triton(
    z: torch.Tensor,
    c: torch.Tensor,
    cand_weight: torch.Tensor,
    cand_bias: torch.Tensor,
    state_weight: torch.Tensor,
    state_bias: torch.Tensor,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    hidden = z.shape[-1] // 4
    z2 = z.reshape(-1, 4 * hidden).contiguous()  # (M, 4H)
    c2 = c.reshape(-1, hidden).contiguous()  # (M, H)
    h_out = torch.empty(c2.shape, dtype=z.dtype, device=z.device)
    c_out = torch.empty(c2.shape, dtype=z.dtype, device=z.device)
    if z2.shape[0]:
        params = [p.contiguous() for p in (cand_weight, cand_bias, state_weight, state_bias)]
        block = triton.next_power_of_2(hidden)
        _sum_lstm_kernel[(z2.shape[0],)](z2, c2, *params, h_out, c_out, hidden, eps, BLOCK=block)
    out_shape = (*z.shape[:-1], hidden)
    return h_out.reshape(out_shape), c_out.reshape(out_shape)
