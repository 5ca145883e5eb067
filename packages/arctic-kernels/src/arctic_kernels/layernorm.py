"""The speculator's RMS-style layer norm with weight and bias (MLPSpeculator, arXiv 2404.19124).

`y = x * rsqrt(mean(x**2, -1) + eps) * weight + bias`: no mean subtraction, unlike
nn.LayerNorm. Computed in float32, returned in the input's dtype.
"""

from __future__ import annotations

import torch

from arctic_kernels._dispatch import Backend, choose_backend


def speculator_layer_norm_reference(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Plain-torch reference over the last dimension."""
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + eps)
    return (y * weight.float() + bias.float()).to(x.dtype)


def _check(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> None:
    hidden = x.shape[-1] if x.dim() else 0
    if hidden == 0:
        raise ValueError(f"x must have a non-empty last dimension, got {tuple(x.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        if tuple(t.shape) != (hidden,):
            raise ValueError(f"{name} must have shape ({hidden},), got {tuple(t.shape)}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")


def speculator_layer_norm(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float = 1e-6,
    *,
    backend: Backend | None = None,
) -> torch.Tensor:
    """Dispatching entry point; `selected_backend("speculator_layer_norm")` says which ran."""
    _check(x, weight, bias, eps)
    if choose_backend("speculator_layer_norm", x.device, backend) == "triton":
        from arctic_kernels._triton.layernorm import speculator_layer_norm_triton

        return speculator_layer_norm_triton(x, weight, bias, eps)
    return speculator_layer_norm_reference(x, weight, bias, eps)


class SpeculatorLayerNorm(torch.nn.Module):
    """Module form with learnable weight (init 1) and bias (init 0)."""

    def __init__(self, hidden: int, eps: float = 1e-6) -> None:
        super().__init__()
        if hidden <= 0:
            raise ValueError(f"hidden must be > 0, got {hidden}")
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(hidden))
        self.bias = torch.nn.Parameter(torch.zeros(hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return speculator_layer_norm(x, self.weight, self.bias, self.eps)
