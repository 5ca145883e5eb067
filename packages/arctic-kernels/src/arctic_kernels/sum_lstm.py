"""The sum-LSTM gate update of Arctic's LSTM speculator, fused into one pass.

Given `z = proj(h) + a * emb(token)` of shape (..., 4H), split in order
(forget, input, output, candidate-pre), and the previous cell `c` (..., H):

    f, i, o = sigmoid(z_f), sigmoid(z_i), sigmoid(z_o)
    cand    = GELU(LN_cand(z_c))
    c'      = f * c + i * cand
    h'      = GELU(LN_state(c')) * o

LN is the speculator's RMS-style norm with weight and bias (see layernorm.py), GELU the erf
form. The unfused version reads and writes (..., H) intermediates about ten times; the fused
kernel reads z and c once and writes h' and c' once.
"""

from __future__ import annotations

import torch

from arctic_kernels._dispatch import Backend, choose_backend
from arctic_kernels.layernorm import speculator_layer_norm_reference


def sum_lstm_cell_reference(
    z: torch.Tensor,
    c: torch.Tensor,
    cand_weight: torch.Tensor,
    cand_bias: torch.Tensor,
    state_weight: torch.Tensor,
    state_bias: torch.Tensor,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain-torch reference in float32. Returns (h', c') in z's dtype."""
    zf = z.float()
    z_f, z_i, z_o, z_c = zf.chunk(4, dim=-1)
    gelu = torch.nn.functional.gelu
    cand = gelu(speculator_layer_norm_reference(z_c, cand_weight, cand_bias, eps))
    c_new = torch.sigmoid(z_f) * c.float() + torch.sigmoid(z_i) * cand
    h_new = gelu(speculator_layer_norm_reference(c_new, state_weight, state_bias, eps))
    h_new = h_new * torch.sigmoid(z_o)
    return h_new.to(z.dtype), c_new.to(z.dtype)


def _check(z: torch.Tensor, c: torch.Tensor, params: tuple[torch.Tensor, ...]) -> None:
    if z.dim() == 0 or z.shape[-1] == 0 or z.shape[-1] % 4:
        raise ValueError(f"z must have a last dimension 4*H > 0, got {tuple(z.shape)}")
    hidden = z.shape[-1] // 4
    if tuple(c.shape) != (*z.shape[:-1], hidden):
        raise ValueError(f"c must have shape {(*z.shape[:-1], hidden)}, got {tuple(c.shape)}")
    names = ("cand_weight", "cand_bias", "state_weight", "state_bias")
    for name, p in zip(names, params, strict=True):
        if tuple(p.shape) != (hidden,):
            raise ValueError(f"{name} must have shape ({hidden},), got {tuple(p.shape)}")


def sum_lstm_cell(
    z: torch.Tensor,
    c: torch.Tensor,
    cand_weight: torch.Tensor,
    cand_bias: torch.Tensor,
    state_weight: torch.Tensor,
    state_bias: torch.Tensor,
    eps: float = 1e-6,
    *,
    backend: Backend | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dispatching entry point; `selected_backend("sum_lstm_cell")` says which ran."""
    params = (cand_weight, cand_bias, state_weight, state_bias)
    _check(z, c, params)
    if choose_backend("sum_lstm_cell", z.device, backend) == "triton":
        from arctic_kernels._triton.sum_lstm import sum_lstm_cell_triton

        return sum_lstm_cell_triton(z, c, *params, eps)
    return sum_lstm_cell_reference(z, c, *params, eps)
