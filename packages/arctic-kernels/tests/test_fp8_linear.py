"""Fp8Linear: accuracy against nn.Linear, the two matmul paths, weight-only, bad input."""

from __future__ import annotations

import pytest
import torch

from arctic_kernels import FP8_DTYPE, Fp8Linear, NonFiniteInputError, dequantize


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


def _weight_only_reference(fp8: Fp8Linear, x: torch.Tensor) -> torch.Tensor:
    """Plain float32 math: x @ dequantize(weight).T + bias, cast to the layer's out dtype."""
    w = dequantize(fp8.weight_fp8, fp8.weight_scale.t())  # (N, K) float32
    out = x.float() @ w.t()
    if fp8.bias is not None:
        out = out + fp8.bias.float()
    return out.to(fp8.out_dtype)


@pytest.mark.parametrize("weight_scheme", ["per_tensor", "per_channel"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("in_features", "out_features", "batch_shape", "bias"),
    [
        (128, 48, (2, 5), True),
        (64, 32, (1,), False),
        (40, 24, (3,), True),
        (208, 8192, (7,), False),
    ],
)
def test_weight_only_matches_its_reference(  # type: ignore[no-untyped-def]
    weight_scheme, dtype, in_features, out_features, batch_shape, bias
) -> None:
    lin = _linear(in_features, out_features, bias, dtype)
    fp8 = Fp8Linear.from_linear(lin, weight_scheme=weight_scheme, activation_scheme="none")
    x = torch.randn(*batch_shape, in_features).to(dtype)
    out = fp8(x)
    assert out.shape == (*batch_shape, out_features) and out.dtype == dtype
    ref = _weight_only_reference(fp8, x.reshape(-1, in_features)).reshape(out.shape)
    if dtype == torch.float32:
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    else:
        # bf16 products summed in the matmul's own order: a few bf16 ulps of the output.
        torch.testing.assert_close(out.float(), ref.float(), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_weight_only_is_closer_to_the_linear_than_w8a8(dtype: torch.dtype) -> None:
    lin = _linear(256, 512, True, dtype)
    x = torch.randn(64, 256).to(dtype)
    ref = lin(x).float()
    errors = {}
    for scheme in ("none", "per_token"):
        out = Fp8Linear.from_linear(lin, activation_scheme=scheme)(x).float()
        errors[scheme] = ((out - ref).norm() / ref.norm()).item()
    # One 3-bit-mantissa rounding (weights) instead of two: ~2.6 % of the output rms vs ~3.7 %.
    assert errors["none"] < 0.035, errors
    assert errors["none"] < 0.85 * errors["per_token"], errors


def test_weight_only_dequantizes_and_keeps_activations_exact() -> None:
    lin = _linear(64, 32, False, torch.float32)
    fp8 = Fp8Linear.from_linear(lin, activation_scheme="none")
    assert fp8.matmul_backend == "dequantize"  # never _scaled_mm: it needs FP8 activations
    assert "activation_scheme=none" in repr(fp8)
    assert fp8.weight_bytes() == Fp8Linear.from_linear(lin).weight_bytes()
    # Activations are not rounded: a nudge far below e4m3's resolution (which per-token
    # W8A8 would round away) moves the output by exactly nudge * that weight column.
    x = torch.randn(2, 64)
    x[:, 0] = 4.0  # the rows' amax, so the nudged element below moves no per-token scale
    x[0, 3] = 0.5
    y = x.clone()
    y[0, 3] += 2.0**-8  # e4m3 steps by 2**-4 around 0.5: per-token W8A8 rounds this away
    out_x, out_y = fp8(x), fp8(y)
    column = dequantize(fp8.weight_fp8, fp8.weight_scale.t())[:, 3]
    torch.testing.assert_close(out_y[0] - out_x[0], 2.0**-8 * column, atol=1e-5, rtol=0)
    assert torch.equal(out_y[1], out_x[1])
    w8a8 = Fp8Linear.from_linear(lin)  # the contrast: its output does not move at all
    assert torch.equal(w8a8(y)[0], w8a8(x)[0])


def test_weight_only_never_checks_activations_and_lets_nan_propagate_per_row() -> None:
    fp8 = Fp8Linear.from_linear(_linear(32, 16, False, torch.float32), activation_scheme="none")
    # No activation scale to compute, so no host sync: CUDA-graph safe as built.
    assert fp8.check_finite is False
    x = torch.randn(2, 32)
    x[0, 0] = float("nan")
    out = fp8(x)
    assert torch.isnan(out[0]).all() and torch.isfinite(out[1]).all()
    with pytest.raises(ValueError, match="last dim 32"):
        fp8(torch.randn(2, 31))
