"""FP8 e4m3 quantization: scales, saturation, zeros, NaN/Inf, round trip."""

from __future__ import annotations

import pytest
import torch

from arctic_kernels import (
    FP8_DTYPE,
    FP8_MAX,
    MIN_SCALE,
    NonFiniteInputError,
    dequantize,
    quantize_per_channel,
    quantize_per_tensor,
    quantize_per_token,
)

# e4m3 keeps 3 mantissa bits: a round-to-nearest error of at most 2**-4 of the value, and
# values far below the scale (subnormals) are off by at most half the 2**-9 step.
REL = 2.0**-4


def _assert_close_fp8(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor) -> None:
    back = dequantize(q, scale)
    bound = x.float().abs() * REL + scale.float() * 2.0**-10
    assert bool(((back - x.float()).abs() <= bound * 1.0001).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_per_tensor_round_trip_and_saturation(dtype: torch.dtype) -> None:
    x = (torch.randn(64, 96) * 37).to(dtype)
    q, scale = quantize_per_tensor(x)
    assert q.dtype == FP8_DTYPE and scale.shape == () and scale.dtype == torch.float32
    assert q.float().abs().max().item() == FP8_MAX  # the amax maps onto +-448 exactly
    _assert_close_fp8(x, q, scale)


def test_per_channel_has_one_scale_per_output_row() -> None:
    w = torch.randn(32, 64) * torch.logspace(-3, 2, 32).unsqueeze(1)  # rows of very different size
    q, scale = quantize_per_channel(w)
    assert scale.shape == (32, 1)
    assert torch.equal(q.float().abs().amax(dim=1), torch.full((32,), FP8_MAX))
    _assert_close_fp8(w, q, scale)


@pytest.mark.parametrize("shape", [(1, 16), (7, 33), (2, 3, 64)])
def test_per_token_scales_each_row(shape: tuple[int, ...]) -> None:
    x = torch.randn(shape) * torch.rand(*shape[:-1], 1) * 100
    q, scale = quantize_per_token(x)
    assert scale.shape == (*shape[:-1], 1)
    assert torch.equal(q.float().abs().amax(dim=-1), torch.full(shape[:-1], FP8_MAX))
    _assert_close_fp8(x, q, scale)


def test_values_beyond_the_range_saturate_instead_of_becoming_nan() -> None:
    # Half of the tensor at 1e30 in float32: scale = 1e30 / 448, nothing overflows e4m3.
    x = torch.tensor([[1e30, -1e30, 1.0, 0.0]])
    q, scale = quantize_per_tensor(x)
    assert q.float().tolist() == [[448.0, -448.0, 0.0, 0.0]]
    assert not torch.isnan(dequantize(q, scale)).any()


@pytest.mark.parametrize(
    "quantize",
    [quantize_per_tensor, quantize_per_channel, quantize_per_token],
    ids=lambda f: f.__name__,
)
def test_zeros_give_a_positive_scale_and_exact_zeros(quantize) -> None:  # type: ignore[no-untyped-def]
    x = torch.zeros(4, 32)
    x[1] = torch.randn(32)  # one live row beside all-zero rows / channels
    q, scale = quantize(x)
    assert bool((scale >= MIN_SCALE).all()) and not torch.isnan(scale).any()
    assert torch.equal(q[0].float(), torch.zeros(32))
    assert not torch.isnan(dequantize(q, scale)).any()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize(
    "quantize",
    [quantize_per_tensor, quantize_per_channel, quantize_per_token],
    ids=lambda f: f.__name__,
)
def test_non_finite_input_is_refused_by_default(quantize, bad: float) -> None:  # type: ignore[no-untyped-def]
    x = torch.randn(4, 32)
    x[2, 5] = bad
    word = "1 NaN" if bad != bad else "1 Inf"
    with pytest.raises(NonFiniteInputError, match=word):
        quantize(x)


def test_unchecked_nan_propagates_to_its_row_only() -> None:
    # The documented behaviour with check_finite_input=False (CUDA graphs): NaN rows stay NaN.
    x = torch.randn(3, 32)
    x[1, 0] = float("nan")
    q, scale = quantize_per_token(x, check_finite_input=False)
    back = dequantize(q, scale)
    assert torch.isnan(scale[1]).all() and torch.isnan(back[1]).all()
    assert not torch.isnan(back[[0, 2]]).any()


def test_integer_and_fp8_inputs_are_refused() -> None:
    with pytest.raises(TypeError, match="int64"):
        quantize_per_tensor(torch.arange(4))
    with pytest.raises(TypeError, match="float8"):
        quantize_per_token(torch.ones(2, 4).to(FP8_DTYPE))
    with pytest.raises(ValueError, match="2-D"):
        quantize_per_channel(torch.ones(2, 3, 4))
