# Triton kernels take untyped pointer / block arguments; @triton.jit is untyped.
# mypy: disable-error-code="no-untyped-def, untyped-decorator"
"""Device helpers shared by the kernels (Triton jit functions, called from other kernels)."""

from __future__ import annotations

import triton
import triton.language as tl

from .._fp8_format import FP8_MAX as _FP8_MAX

FP8_MAX: tl.constexpr = tl.constexpr(_FP8_MAX)  # the one value, as a Triton constant


@triton.jit
def gelu_erf(x):
    # The exact (erf) GELU, as nn.GELU() in MLPSpeculator / the Arctic LSTM speculator.
    return 0.5 * x * (1.0 + tl.erf(x * 0.7071067811865476))


@triton.jit
def rms_norm_affine(x, weight, bias, mask, n_cols, eps):
    # MLPSpeculator's LayerNorm (arXiv 2404.19124): x * rsqrt(mean(x^2) + eps) * w + b,
    # over one row held in registers; masked lanes are 0 and do not count in the mean.
    mean_sq = tl.sum(tl.where(mask, x * x, 0.0), axis=0) / n_cols
    return x * tl.rsqrt(mean_sq + eps) * weight + bias


@triton.jit
def round_to_e4m3_grid(y):
    # Round a float32 already clamped to [-448, 448] onto the e4m3fn grid, nearest-even.
    # Doing it by hand makes the final cast exact: the Triton interpreter's float -> fp8 cast
    # (triton 3.9) loses the carry into the next binade (124.4 -> 64) and rounds ties away
    # from zero, so without this the CPU tests would check a cast no GPU performs.
    a = tl.abs(y)
    bits = a.to(tl.int32, bitcast=True)
    exponent = ((bits >> 23) & 0xFF) - 127
    # Below 2**-6 e4m3 is subnormal with a fixed step 2**-9; above, 3 mantissa bits.
    exponent = tl.maximum(exponent, -6)
    step = ((exponent - 3 + 127) << 23).to(tl.float32, bitcast=True)
    units = a / step  # exact: step is a power of two
    floor_units = tl.floor(units)
    frac = units - floor_units
    odd = (floor_units - 2.0 * tl.floor(floor_units * 0.5)) == 1.0
    round_up = (frac > 0.5) | ((frac == 0.5) & odd)
    rounded = tl.where(round_up, floor_units + 1.0, floor_units) * step
    rounded = tl.minimum(rounded, FP8_MAX)
    return tl.where(y < 0, -rounded, rounded)
