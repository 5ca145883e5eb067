"""Small building blocks shared by both drafter families."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SpeculatorNorm(nn.Module):
    """RMS normalisation with an optional elementwise weight *and* bias.

    This is the norm of arXiv 2404.19124's speculator (no mean subtraction, unlike
    LayerNorm, but with a bias, unlike RMSNorm); imported checkpoints need exactly it.
    """

    def __init__(self, dim: int, eps: float, affine: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(dim))
            self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., D) -> (..., D)
        # torch's fused kernels: a draft step is a few dozen tiny ops, so on the CPU their
        # count, not their FLOPs, is the drafter's latency (same math as
        # x * rsqrt(mean(x^2) + eps) * weight + bias).
        x = F.rms_norm(x, (x.shape[-1],), None, self.eps)
        if self.affine:
            x = torch.addcmul(self.bias, x, self.weight)
        return x


def tied_index(head: int, tie: bool) -> int:
    """Which stored copy head ``head`` uses for per-head modules shared under tie_weights."""
    return 0 if tie else head


def tied_proj_index(head: int, tie: bool) -> int:
    """Under tie_weights the first projection reads the target's state (another width), so it
    stays separate; heads 1.. share the second one."""
    return min(head, 1) if tie else head


def unique_count(n_predict: int, tie: bool, proj: bool = False) -> int:
    if not tie:
        return n_predict
    return min(n_predict, 2) if proj else 1
