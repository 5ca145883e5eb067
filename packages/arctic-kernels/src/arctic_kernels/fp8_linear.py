"""`Fp8Linear`: FP8 e4m3 weights with scales; activations quantized per call, or kept exact.

W8A8 (`activation_scheme="per_token"` / `"per_tensor"`): the matmul runs through
`torch._scaled_mm` where the device supports it (this CPU build of torch; CUDA compute
capability >= 8.9), else it dequantizes and multiplies. Which path a layer uses is decided
once, at construction, by a tiny probe call, and kept in `Fp8Linear.matmul_backend` (also
logged). Weight-only W8A16 (`activation_scheme="none"`) always dequantizes.
"""

from __future__ import annotations

import functools
import logging
from typing import Literal

import torch

from arctic_kernels.fp8 import (
    FP8_DTYPE,
    quantize_per_channel,
    quantize_per_tensor,
    quantize_per_token,
)
from arctic_kernels.gptq import DEFAULT_DAMP, quantize_gptq


def _check_prequantized(
    weight: torch.Tensor,
    scale: torch.Tensor,
    hessian: torch.Tensor | None,
    out_dtype: torch.dtype | None,
) -> None:
    n = weight.shape[0]
    if weight.dtype != FP8_DTYPE:
        raise TypeError(f"a weight with weight_scale must be {FP8_DTYPE}, got {weight.dtype}")
    if scale.numel() != n or scale.dim() > 2 or (scale.dim() == 2 and 1 not in scale.shape):
        raise ValueError(
            f"weight_scale must hold one scale per output row ({n}), got {tuple(scale.shape)}"
        )
    if not bool(torch.isfinite(scale).all()) or not bool((scale > 0).all()):
        raise ValueError("weight_scale must be finite and > 0 everywhere")
    if hessian is not None:
        raise ValueError("a weight that is already e4m3 cannot be rounded again (hessian=)")
    if out_dtype is None:
        raise ValueError("out_dtype is required with an e4m3 weight (there is no float dtype)")


WeightScheme = Literal["per_tensor", "per_channel"]
ActivationScheme = Literal["per_token", "per_tensor", "none"]
ACTIVATION_SCHEMES: tuple[ActivationScheme, ...] = ("per_token", "per_tensor", "none")
MatmulBackend = Literal["scaled_mm", "dequantize"]

logger = logging.getLogger("arctic_kernels")


@functools.cache
def _scaled_mm_works(device: torch.device, out_dtype: torch.dtype) -> bool:
    """Probe `_scaled_mm` once per (device, out dtype) with row-wise and scalar scales."""
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 9):
        return False  # no FP8 tensor cores before Ada / Hopper
    try:
        a = torch.ones(16, 16, device=device).to(FP8_DTYPE)
        b = torch.ones(16, 16, device=device).to(FP8_DTYPE).t()  # column-major, as required
        one = torch.ones((), device=device)
        torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=out_dtype)
        row = torch.ones(16, 1, device=device)
        out = torch._scaled_mm(a, b, scale_a=row, scale_b=row.t(), out_dtype=out_dtype)
        return bool((out.float() == 16.0).all())
    except (RuntimeError, NotImplementedError, TypeError, AttributeError):
        return False


class Fp8Linear(torch.nn.Module):
    """A drop-in for nn.Linear with FP8 weights (buffers `weight_fp8`, `weight_scale`).

    weight_scheme: "per_tensor" (one scale, as Arctic's FP8 draft head) or "per_channel".
    activation_scheme:
      - "per_token" (W8A8, dynamic, one scale per row) or "per_tensor" (W8A8, dynamic, one
        scale per call): activations are cast to e4m3 and the product runs on FP8 tensor
        cores through `torch._scaled_mm` (CUDA sm89+, this CPU build), reading 1 byte per
        weight. Costs accuracy twice: weight and activation rounding (3 mantissa bits each).
      - "none" (weight-only, W8A16): activations stay exact; the e4m3 weight is cast to the
        activation dtype (exact: e4m3 values are bf16 / fp16 / fp32 values), multiplied in
        that dtype, and the weight scales applied to the (M, N) output in float32. Only
        the weight is rounded (measured on the tiny drafters: 0.3-1.0 points more top-1
        agreement than per-token W8A8, see the README). In plain torch the cast
        materialises a transient (N, K) weight in the activation dtype on every call, so
        the stored weight is halved but the bytes moved per call are not (1 read + 2 written
        + 2 read per weight vs 2 for bf16): the small-batch bandwidth win needs a fused
        dequantize-GEMM kernel (FP8-Marlin style), which this package does not have yet.
    hessian: the (K, K) second moment of the layer's inputs on calibration data
    (`arctic_kernels.gptq.HessianAccumulator`); when given, the weight is rounded by GPTQ
    (error feedback onto the columns not yet rounded) instead of to nearest: same scales,
    same storage, a smaller output error on inputs like the calibration ones.
    check_finite: raise on NaN/Inf activations (they have no FP8 scale); set False inside
    CUDA graphs (then NaN/Inf rows give NaN outputs, see fp8.py). Weight-only layers compute
    no activation scale, never check (NaN/Inf propagate as in nn.Linear) and keep it False.
    """

    weight_fp8: torch.Tensor  # (N, K) float8_e4m3fn
    weight_scale: torch.Tensor  # (1, N) float32
    bias: torch.Tensor | None  # (N,) in out_dtype

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        *,
        weight_scheme: WeightScheme = "per_channel",
        activation_scheme: ActivationScheme = "per_token",
        out_dtype: torch.dtype | None = None,
        check_finite: bool = True,
        hessian: torch.Tensor | None = None,
        gptq_damp: float = DEFAULT_DAMP,
        weight_scale: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if weight_scheme not in ("per_tensor", "per_channel"):
            raise ValueError(
                f"weight_scheme must be 'per_tensor' or 'per_channel', got {weight_scheme!r}"
            )
        if activation_scheme not in ACTIVATION_SCHEMES:
            raise ValueError(
                f"activation_scheme must be one of {list(ACTIVATION_SCHEMES)} ('none': "
                f"weight-only), got {activation_scheme!r}"
            )
        if weight.dim() != 2:
            raise ValueError(
                f"weight must be (out_features, in_features), got {tuple(weight.shape)}"
            )
        weight = weight.detach()
        self.out_features, self.in_features = weight.shape
        if weight_scale is not None:
            _check_prequantized(weight, weight_scale, hessian, out_dtype)
        self.weight_scheme = weight_scheme
        self.activation_scheme = activation_scheme
        self.out_dtype = out_dtype or weight.dtype
        # No activation scale, so nothing to check (and no host sync to keep out of graphs).
        self.check_finite = check_finite and activation_scheme != "none"
        self.rounding = "nearest" if hessian is None else "gptq"
        if weight_scale is not None:  # already e4m3 (from_fp8)
            # clone: a row shard of a bigger layer must not keep the whole storage alive
            w_q, w_scale = weight.clone(), weight_scale.detach().float().reshape(-1, 1)
        elif hessian is not None:
            w_q, w_scale = quantize_gptq(
                weight, hessian, per_channel=weight_scheme == "per_channel", damp=gptq_damp
            )
        elif weight_scheme == "per_tensor":
            w_q, w_scale = quantize_per_tensor(weight)
        else:
            w_q, w_scale = quantize_per_channel(weight)
        if weight_scheme == "per_tensor" and weight_scale is None:
            w_scale = w_scale.expand(self.out_features).reshape(1, -1).clone()
        else:
            w_scale = w_scale.reshape(1, -1).clone()
        self.register_buffer("weight_fp8", w_q)  # (N, K) row-major: .t() is column-major
        self.register_buffer("weight_scale", w_scale.float())  # (1, N)
        self.register_buffer("bias", None if bias is None else bias.detach().to(self.out_dtype))
        # _scaled_mm on CUDA needs K and N to be multiples of 16.
        aligned = self.in_features % 16 == 0 and self.out_features % 16 == 0
        use_mm = (
            activation_scheme != "none"
            and aligned
            and _scaled_mm_works(weight.device, self.out_dtype)
        )
        self.matmul_backend: MatmulBackend = "scaled_mm" if use_mm else "dequantize"
        logger.info(
            "arctic_kernels: Fp8Linear(%d -> %d, activations %s) on %s uses %s",
            self.in_features,
            self.out_features,
            activation_scheme,
            weight.device.type,
            self.matmul_backend,
        )

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, **kwargs: object) -> Fp8Linear:
        return cls(linear.weight, linear.bias, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_fp8(
        cls,
        weight_fp8: torch.Tensor,
        weight_scale: torch.Tensor,
        bias: torch.Tensor | None = None,
        *,
        out_dtype: torch.dtype,
        rounding: str = "nearest",
        **kwargs: object,
    ) -> Fp8Linear:
        """An Fp8Linear from stored e4m3 weights and their (N,) / (N, 1) / (1, N) float32
        scales (a saved layer, or a row shard of one), without rounding anything again."""
        layer = cls(weight_fp8, bias, weight_scale=weight_scale, out_dtype=out_dtype, **kwargs)  # type: ignore[arg-type]
        layer.rounding = rounding
        return layer

    def rows(self, start: int, stop: int) -> Fp8Linear:
        """The layer of output rows [start, stop) (a vocab shard): same schemes, the stored
        e4m3 values and per-row scales as they are, nothing rounded again."""
        return Fp8Linear.from_fp8(
            self.weight_fp8[start:stop],
            self.weight_scale[0, start:stop],
            None if self.bias is None else self.bias[start:stop],
            out_dtype=self.out_dtype,
            rounding=self.rounding,
            weight_scheme=self.weight_scheme,
            activation_scheme=self.activation_scheme,
            check_finite=self.check_finite,
        )

    def weight_bytes(self) -> int:
        """Bytes held by the quantized weight and its scales (the bias excluded)."""
        return sum(t.numel() * t.element_size() for t in (self.weight_fp8, self.weight_scale))

    def _quantize_input(self, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.activation_scheme == "per_token":
            return quantize_per_token(x2, check_finite_input=self.check_finite)  # (M, 1)
        x_q, x_scale = quantize_per_tensor(x2, check_finite_input=self.check_finite)
        return x_q, x_scale.reshape(1, 1).expand(x2.shape[0], 1).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"expected last dim {self.in_features}, got {tuple(x.shape)}")
        x2 = x.reshape(-1, self.in_features)  # (M, K)
        if self.activation_scheme == "none":
            return self._forward_weight_only(x2).reshape(*x.shape[:-1], self.out_features)
        x_q, x_scale = self._quantize_input(x2)
        if self.matmul_backend == "scaled_mm":
            out = torch._scaled_mm(
                x_q,
                self.weight_fp8.t(),
                scale_a=x_scale,
                scale_b=self.weight_scale,
                out_dtype=self.out_dtype,
            )
        else:
            # Off the FP8 tensor-core path: same quantization error, float32 accumulation.
            w = self.weight_fp8.float() * self.weight_scale.t()  # (N, K)
            out = ((x_q.float() @ w.t()) * x_scale).to(self.out_dtype)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

    def _forward_weight_only(self, x2: torch.Tensor) -> torch.Tensor:
        # Scaling the output, not the weight, keeps the cast exact: one rounding fewer.
        out = torch.nn.functional.linear(x2, self.weight_fp8.to(x2.dtype)).float()  # (M, N)
        out = out * self.weight_scale
        if self.bias is not None:
            out = out + self.bias.float()
        return out.to(self.out_dtype)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"weight_scheme={self.weight_scheme}, activation_scheme={self.activation_scheme}, "
            f"rounding={self.rounding}, matmul_backend={self.matmul_backend}"
        )
