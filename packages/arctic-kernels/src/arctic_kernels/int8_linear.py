"""`Int8Linear`: int8 weight-only linear layers for drafters served on the CPU.

At serving batch sizes a drafter's LM head is a GEMV over a (vocab, inner) matrix: it reads
every weight once per head and does two FLOPs with it, so its time is the bytes it moves.
On the CPU that is worse than it looks: a drafter that only runs on some steps (the hybrid)
finds its weights evicted by the target's forward and streams them from memory each time
(measured here: the tiny LSTM's draft 0.68 ms with warm caches, 0.96 ms cold).

Weights are rounded to int8 with one symmetric scale per output row (``scale = amax / 127``;
127 levels a side, finer than e4m3's 3-bit mantissa: on the bundled tiny drafters 99.2-99.7 %
of greedy picks unchanged per head, teacher-forced, tie-aware: tools/bench_kernels.py). The product runs in `torch._weight_int8pack_mm` where a probe
succeeds (this CPU build: a fused kernel that dequantizes inside the GEMM, reading 1 byte
per weight; its fast path takes bfloat16 activations, so activations are rounded to bf16
first, as a bf16 drafter's would be; in_features must be a multiple of 16). Elsewhere
(CUDA, other shapes, or no kernel) the layer dequantizes and multiplies in float32:
`int8_linear_reference`, the definition the kernel is tested against.

The kernel is a GEMV kernel: measured here (8192 x 192 head, 2 threads) it beats a float32
matmul up to ~8 rows and a bf16 one up to ~3, and loses beyond (2-4x at 32 rows). So above
``kernel_max_rows`` rows (default 4) a call multiplies by the dequantized weight instead
(the same layer, in the output dtype). That copy is made at construction, not on the first
large batch: built inside a compiled draft loop it would be a side effect of the traced
program and recompile it on a serving step. It costs the memory of the unquantized layer;
``kernel_max_rows=None`` keeps the kernel for every batch and no copy.
"""

from __future__ import annotations

import functools
import logging
from typing import Literal

import torch

INT8_MAX = 127
Int8Backend = Literal["int8pack_mm", "dequantize"]
# The kernel's fast path; float32 activations take a slow one (measured 9x slower here).
_KERNEL_ACTIVATION_DTYPE = torch.bfloat16

logger = logging.getLogger("arctic_kernels")


def quantize_int8_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) float weight -> (N, K) int8 values and (N,) float32 scales, round to nearest.

    An all-zero row gets scale 1 (its values are exact zeros). NaN / Inf raise ValueError.
    """
    if weight.dim() != 2:
        raise ValueError(f"weight must be (out_features, in_features), got {tuple(weight.shape)}")
    w = weight.detach().float()
    if not bool(torch.isfinite(w).all()):
        raise ValueError("weight holds NaN or Inf; an int8 scale needs finite values")
    amax = w.abs().amax(dim=1)  # (N,)
    scale = torch.where(amax > 0, amax / INT8_MAX, torch.ones_like(amax))
    q = torch.round(w / scale[:, None]).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q, scale


def int8_linear_reference(
    x: torch.Tensor,
    weight_int8: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """The plain-torch definition, in float32: ``x @ (weight_int8 * scale[:, None]).T + bias``."""
    w = weight_int8.float() * scale.float()[:, None]  # (N, K)
    out = x.float() @ w.t()
    return out if bias is None else out + bias.float()


@functools.cache
def _int8pack_mm_works(device: torch.device, in_features: int, out_features: int) -> bool:
    """Probe the fused CPU kernel once per (device, shape) against the reference."""
    if device.type != "cpu" or not hasattr(torch, "_weight_int8pack_mm"):
        return False
    # Measured on torch 2.13's CPU kernel: K not a multiple of 16 crashes the process
    # (K = 20, 40) or silently returns wrong values (K = 24: 68 % error; K = 8: inf), so
    # it is never called on such shapes, not even to probe.
    if in_features % 16 != 0:
        return False
    try:
        g = torch.Generator().manual_seed(0)
        w = torch.randint(-INT8_MAX, INT8_MAX + 1, (out_features, in_features), generator=g)
        w8 = w.to(torch.int8)
        scale = torch.full((out_features,), 0.01)
        x = torch.randn(2, in_features, generator=g).to(_KERNEL_ACTIVATION_DTYPE)
        out = torch._weight_int8pack_mm(x, w8, scale.to(_KERNEL_ACTIVATION_DTYPE)).float()
        ref = int8_linear_reference(x, w8, scale)
        return bool(torch.allclose(out, ref, rtol=2e-2, atol=2e-2 * float(ref.abs().max())))
    except (RuntimeError, NotImplementedError, TypeError):
        return False


class Int8Linear(torch.nn.Module):
    """A drop-in for nn.Linear with int8 weights and per-row scales (buffers `weight_int8`,
    `weight_scale`); output in ``out_dtype`` (default: the original weight's dtype)."""

    weight_int8: torch.Tensor  # (N, K) int8
    weight_scale: torch.Tensor  # (N,) float32
    bias: torch.Tensor | None  # (N,) in out_dtype

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        *,
        out_dtype: torch.dtype | None = None,
        weight_scale: torch.Tensor | None = None,
        kernel_max_rows: int | None = 4,
    ) -> None:
        """``weight``: float (N, K), rounded here; or int8 (N, K) with its (N,)
        ``weight_scale`` (already rounded: kept as is, ``out_dtype`` required).
        ``kernel_max_rows``: the most rows a call sends through the int8 kernel (None: all)."""
        super().__init__()
        if kernel_max_rows is not None:
            if isinstance(kernel_max_rows, bool) or not isinstance(kernel_max_rows, int):
                raise TypeError(f"kernel_max_rows must be an int or None, got {kernel_max_rows!r}")
            if kernel_max_rows < 1:
                raise ValueError(f"kernel_max_rows must be >= 1, got {kernel_max_rows}")
        self.kernel_max_rows = kernel_max_rows
        if weight.dim() != 2:
            raise ValueError(
                f"weight must be (out_features, in_features), got {tuple(weight.shape)}"
            )
        self.out_features, self.in_features = weight.shape
        if weight_scale is None:
            if not weight.is_floating_point():
                raise TypeError(f"a weight to round must be floating point, got {weight.dtype}")
            q, scale = quantize_int8_per_channel(weight)
            out_dtype = out_dtype or weight.dtype
        else:
            if weight.dtype != torch.int8:
                raise TypeError(f"a weight with weight_scale must be int8, got {weight.dtype}")
            if weight_scale.numel() != self.out_features:
                raise ValueError(
                    f"weight_scale must hold one scale per output row ({self.out_features}), "
                    f"got {tuple(weight_scale.shape)}"
                )
            if out_dtype is None:
                raise ValueError("out_dtype is required with an int8 weight")
            # clone: a row shard of a bigger layer must not keep the whole storage alive
            q, scale = weight.detach().clone(), weight_scale.detach().float().reshape(-1).clone()
            if not bool(torch.isfinite(scale).all()) or not bool((scale > 0).all()):
                raise ValueError("weight_scale must be finite and > 0 everywhere")
        self.out_dtype = out_dtype
        self.register_buffer("weight_int8", q)
        self.register_buffer("weight_scale", scale)
        self.register_buffer(
            "bias", None if bias is None else bias.detach().to(device=q.device, dtype=out_dtype)
        )
        use_kernel = _int8pack_mm_works(q.device, self.in_features, self.out_features)
        self.matmul_backend: Int8Backend = "int8pack_mm" if use_kernel else "dequantize"
        # The dequantized weight for batches above kernel_max_rows (a buffer: it moves with
        # the module; not saved).
        dense = None
        if use_kernel and kernel_max_rows is not None:
            dense = (q.float() * scale[:, None]).to(out_dtype)
        self._dense: torch.Tensor | None
        self.register_buffer("_dense", dense, persistent=False)
        # The kernel takes its scales in the activation dtype: converted once, here.
        self.register_buffer(
            "_kernel_scale", scale.to(_KERNEL_ACTIVATION_DTYPE) if use_kernel else None,
            persistent=False,
        )  # fmt: skip
        logger.info(
            "arctic_kernels: Int8Linear(%d -> %d) on %s uses %s",
            self.in_features,
            self.out_features,
            q.device.type,
            self.matmul_backend,
        )

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, **kwargs: object) -> Int8Linear:
        return cls(linear.weight, linear.bias, **kwargs)  # type: ignore[arg-type]

    def rows(self, start: int, stop: int) -> Int8Linear:
        """The layer of output rows [start, stop) (a vocab shard), nothing rounded again."""
        return Int8Linear(
            self.weight_int8[start:stop],
            None if self.bias is None else self.bias[start:stop],
            weight_scale=self.weight_scale[start:stop],
            out_dtype=self.out_dtype,
            kernel_max_rows=self.kernel_max_rows,
        )

    def weight_bytes(self) -> int:
        """Bytes held by the int8 weight and its float32 scales (the bias excluded)."""
        return sum(t.numel() * t.element_size() for t in (self.weight_int8, self.weight_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"expected last dim {self.in_features}, got {tuple(x.shape)}")
        x2 = x.reshape(-1, self.in_features)  # (M, K)
        if self.matmul_backend == "int8pack_mm" and (
            self._dense is None or x2.shape[0] <= self.kernel_max_rows  # type: ignore[operator]
        ):
            out = torch._weight_int8pack_mm(
                x2.to(_KERNEL_ACTIVATION_DTYPE), self.weight_int8, self._kernel_scale
            )
            out = out.to(self.out_dtype)
            if self.bias is not None:
                out = out + self.bias
        elif self._dense is not None:
            out = torch.nn.functional.linear(x2.to(self.out_dtype), self._dense, self.bias)
        else:
            out = int8_linear_reference(x2, self.weight_int8, self.weight_scale, self.bias)
            out = out.to(self.out_dtype)
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"out_dtype={self.out_dtype}, matmul_backend={self.matmul_backend}"
        )
