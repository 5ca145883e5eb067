"""Fp8Linear: accuracy against nn.Linear, the two matmul paths, bad input."""

from __future__ import annotations

import pytest
import torch

from arctic_kernels import FP8_DTYPE, Fp8Linear, NonFiniteInputError


def _linear(in_features: int, out_features: int, bias: bool, dtype: torch.dtype) -> torch.nn.Linear:
    torch.manual_seed(in_features + out_features)
    lin = torch.nn.Linear(in_features, out_features, bias=bias)
    torch.nn.init.normal_(lin.weight, std=in_features**-0.5)
    return lin.to(dtype)


def test_scaled_mm_is_chosen_on_this_cpu_build_and_reported() -> None:
    fp8 = Fp8Linear.from_linear(_linear(64, 32, False, torch.bfloat16))
    assert fp8.matmul_backend == "scaled_mm"
    assert "matmul_backend=scaled_mm" in repr(fp8)
    assert fp8.weight_fp8.dtype == FP8_DTYPE and fp8.weight_scale.shape == (1, 32)


@pytest.mark.parametrize("weight_scheme", ["per_tensor", "per_channel"])
@pytest.mark.parametrize("activation_scheme", ["per_token", "per_tensor"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_output_is_close_to_the_unquantized_linear(weight_scheme, activation_scheme, dtype) -> None:  # type: ignore[no-untyped-def]
    lin = _linear(128, 48, True, dtype)
    fp8 = Fp8Linear.from_linear(
        lin, weight_scheme=weight_scheme, activation_scheme=activation_scheme
    )
    x = torch.randn(2, 5, 128).to(dtype)
    out, ref = fp8(x).float(), lin(x).float()
    assert out.shape == (2, 5, 48) and fp8(x).dtype == dtype
    # Two 3-bit-mantissa roundings per product, averaged over K=128: ~3 % of the output rms.
    rel = (out - ref).norm() / ref.norm()
    assert rel < 0.06, rel


@pytest.mark.parametrize("weight_scheme", ["per_tensor", "per_channel"])
def test_dequantize_path_matches_scaled_mm_path(weight_scheme: str) -> None:
    lin = _linear(64, 32, True, torch.float32)
    fast = Fp8Linear.from_linear(lin, weight_scheme=weight_scheme)
    slow = Fp8Linear.from_linear(lin, weight_scheme=weight_scheme)
    slow.matmul_backend = "dequantize"
    x = torch.randn(7, 64)
    torch.testing.assert_close(fast(x), slow(x), atol=1e-4, rtol=1e-4)


def test_unaligned_shapes_fall_back_to_dequantize() -> None:
    # _scaled_mm needs K and N to be multiples of 16 on CUDA; the layer decides once.
    lin = _linear(40, 24, False, torch.float32)
    fp8 = Fp8Linear.from_linear(lin)
    assert fp8.matmul_backend == "dequantize"
    x = torch.randn(3, 40)
    assert (fp8(x) - lin(x)).norm() / lin(x).norm() < 0.06


def test_weight_bytes_are_a_quarter_of_float32() -> None:
    fp8 = Fp8Linear.from_linear(_linear(256, 512, False, torch.float32), weight_scheme="per_tensor")
    assert fp8.weight_bytes() == 256 * 512 + 512 * 4  # fp8 weight + one float32 scale per row


def test_bad_activations_are_refused() -> None:
    fp8 = Fp8Linear.from_linear(_linear(32, 16, False, torch.float32))
    with pytest.raises(ValueError, match="last dim 32"):
        fp8(torch.randn(2, 31))
    x = torch.randn(2, 32)
    x[0, 0] = float("inf")
    with pytest.raises(NonFiniteInputError, match="Inf"):
        fp8(x)
    fp8.check_finite = False  # as inside a CUDA graph: the bad row is NaN, the others fine
    out = fp8(x)
    assert not torch.isfinite(out[0]).all() and torch.isfinite(out[1]).all()


def test_bad_construction_is_refused() -> None:
    with pytest.raises(ValueError, match="weight_scheme"):
        Fp8Linear(torch.randn(16, 16), weight_scheme="per_row")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="activation_scheme"):
        Fp8Linear(torch.randn(16, 16), activation_scheme="static")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out_features, in_features"):
        Fp8Linear(torch.randn(16))
