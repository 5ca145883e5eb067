"""GPTQ rounding of a weight to FP8 e4m3: round column by column and push each column's
rounding error onto the columns not yet rounded, weighted by the layer's input statistics
(Frantar et al., "GPTQ", arXiv 2210.17323; here with the e4m3 grid instead of integers).

Round-to-nearest minimises each weight's error; GPTQ minimises the error of the layer's
*output* on the calibration inputs, E||X W^T - X Q^T||^2, which is what decides a draft
head's top-1. The scales are those of round-to-nearest (amax / 448 per output channel or
per tensor), so a GPTQ weight is stored and multiplied exactly like any other e4m3 weight.

    acc = HessianAccumulator(in_features)
    acc.add(x)                     # every calibration input of the layer, (..., in_features)
    q, scale = quantize_gptq(weight, acc.hessian())
"""

from __future__ import annotations

import torch

from arctic_kernels.fp8 import FP8_DTYPE, FP8_MAX, _require_float, _scale_from_amax, check_finite

DEFAULT_DAMP = 0.01  # of the mean diagonal, added to the diagonal (the GPTQ paper's value)
_MAX_DAMP = 10.0  # damping retried x10 from `damp` up to this before giving up


class HessianAccumulator:
    """Running X^T X / n over every row fed to `add` (float64 on the inputs' device)."""

    def __init__(self, in_features: int) -> None:
        if in_features < 1:
            raise ValueError(f"in_features must be >= 1, got {in_features}")
        self.in_features = in_features
        self.rows = 0
        self._sum: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:
        _require_float(x, "x")
        if x.shape[-1] != self.in_features:
            raise ValueError(f"expected last dim {self.in_features}, got {tuple(x.shape)}")
        x2 = x.detach().reshape(-1, self.in_features).double()
        check_finite(x2, "calibration input")
        if self._sum is None:
            self._sum = torch.zeros(
                self.in_features, self.in_features, dtype=torch.float64, device=x2.device
            )
        self._sum.addmm_(x2.t(), x2)
        self.rows += x2.shape[0]

    def hessian(self) -> torch.Tensor:
        """The (in_features, in_features) float32 second moment of the inputs seen."""
        if self._sum is None or self.rows == 0:
            raise ValueError("no calibration input was added: the Hessian is undefined")
        return (self._sum / self.rows).float()


def _inverse_cholesky(h: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor of (H + damp * mean(diag H) * I)^-1, damping raised x10 until
    positive definite."""
    k = h.shape[0]
    eye = torch.eye(k, dtype=torch.float64, device=h.device)
    mean_diag = float(h.diagonal().mean()) or 1.0
    d = damp
    while True:
        chol, info = torch.linalg.cholesky_ex(h + d * mean_diag * eye)
        if int(info) == 0:
            inv = torch.cholesky_inverse(chol)
            upper, info = torch.linalg.cholesky_ex(inv, upper=True)
            if int(info) == 0:
                return torch.as_tensor(upper)
        if d >= _MAX_DAMP:
            raise ValueError(
                f"the Hessian is not positive definite even with damping {d:g} x mean "
                "diagonal; the calibration inputs are degenerate"
            )
        d *= 10


def quantize_gptq(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    *,
    per_channel: bool = True,
    damp: float = DEFAULT_DAMP,
    block_size: int = 128,
    act_order: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GPTQ-round a (N, K) weight to e4m3. Returns (q (N, K) float8_e4m3fn, scale), scale
    (N, 1) float32 per channel or 0-dim per tensor, as `quantize_per_channel` /
    `quantize_per_tensor` return them.

    hessian: (K, K) second moment of the layer's inputs (`HessianAccumulator.hessian()`).
    Inputs never seen (zero diagonal) round to nearest and pass no error on. Columns are
    processed in blocks of `block_size` with one GEMM per block for the rest of the weight;
    act_order rounds the columns of the largest inputs first (more columns left to absorb
    their error), then puts the columns back in place.
    """
    _require_float(weight, "weight")
    if weight.dim() != 2:
        raise ValueError(
            f"weight must be 2-D (out_features, in_features), got {tuple(weight.shape)}"
        )
    n, k = weight.shape
    if hessian.shape != (k, k):
        raise ValueError(f"hessian must be ({k}, {k}) for this weight, got {tuple(hessian.shape)}")
    if not damp > 0:
        raise ValueError(f"damp must be > 0, got {damp!r}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    check_finite(weight, "weight")
    check_finite(hessian, "hessian")
    w = weight.detach().double().clone()
    amax = w.abs().amax(dim=1, keepdim=True) if per_channel else w.abs().amax()
    scale = _scale_from_amax(amax)  # float32, as round-to-nearest
    s = scale.double().expand(n, 1) if per_channel else scale.double().reshape(1, 1)
    h = hessian.detach().double().to(w.device).clone()
    h = (h + h.t()) / 2
    dead = h.diagonal() <= 0
    h[dead, :] = 0
    h[:, dead] = 0
    h[dead, dead] = 1  # an input never seen: round to nearest, pass no error on
    order = torch.argsort(h.diagonal(), descending=True) if act_order else None
    if order is not None:
        w, h = w[:, order], h[order][:, order]
    u = _inverse_cholesky(h, damp)  # (K, K) upper
    q = torch.empty(n, k, dtype=FP8_DTYPE, device=w.device)
    for start in range(0, k, block_size):
        end = min(start + block_size, k)
        block = w[:, start:end]  # a view: updated in place below
        errors = torch.empty_like(block)
        for j in range(end - start):
            col = block[:, j : j + 1]  # (N, 1)
            qc = (col / s).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
            q[:, start + j : start + j + 1] = qc
            err = (col - qc.double() * s) / u[start + j, start + j]
            errors[:, j : j + 1] = err
            block[:, j + 1 :] -= err @ u[start + j : start + j + 1, start + j + 1 : end]
        if end < k:
            w[:, end:] -= errors @ u[start:end, end:]
    if order is not None:
        q = q[:, torch.argsort(order)]
    return q, scale
