"""Int8Linear: the fused CPU kernel against its plain-torch reference, against nn.Linear,
row shards, bad input; quantize_drafter_int8 on a drafter-like module."""

from __future__ import annotations

import pytest
import torch
from stand_ins import TinyMLPSpeculator, prototype_drafter, states_near

from arctic_kernels import (
    INT8_MAX,
    Int8Linear,
    int8_linear_reference,
    quantize_drafter_int8,
    quantize_int8_per_channel,
)


def _linear(in_features: int, out_features: int, bias: bool, dtype: torch.dtype) -> torch.nn.Linear:
    torch.manual_seed(in_features * 7 + out_features)
    lin = torch.nn.Linear(in_features, out_features, bias=bias)
    torch.nn.init.normal_(lin.weight, std=in_features**-0.5)
    return lin.to(dtype)


def test_per_channel_rounding_is_symmetric_per_row_and_exact_on_the_grid() -> None:
    scale = torch.tensor([0.5, 0.01, 2.0])
    values = torch.randint(-INT8_MAX, INT8_MAX + 1, (3, 9))
    values[:, 0] = INT8_MAX  # each row reaches amax, so the scale is recovered exactly
    q, s = quantize_int8_per_channel(values.float() * scale[:, None])
    assert q.dtype == torch.int8 and s.dtype == torch.float32 and s.shape == (3,)
    torch.testing.assert_close(s, scale)
    assert torch.equal(q, values.to(torch.int8))
    # Round to nearest: the error is at most half a step of the row's scale.
    w = torch.randn(16, 32)
    q, s = quantize_int8_per_channel(w)
    assert ((q.float() * s[:, None] - w).abs() <= s[:, None] / 2 + 1e-7).all()


def test_zero_rows_and_bad_weights() -> None:
    w = torch.randn(3, 8)
    w[1] = 0
    q, s = quantize_int8_per_channel(w)
    assert s[1] == 1.0 and not q[1].any()
    w[2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        quantize_int8_per_channel(w)
    with pytest.raises(ValueError, match=r"\(out_features, in_features\)"):
        quantize_int8_per_channel(torch.randn(8))


def test_the_fused_kernel_is_chosen_on_this_cpu_build_where_its_shapes_allow() -> None:
    layer = Int8Linear.from_linear(_linear(64, 48, False, torch.float32))
    assert layer.matmul_backend == "int8pack_mm"
    assert "matmul_backend=int8pack_mm" in repr(layer)
    # torch 2.13's kernel crashes or is wrong unless in_features % 16 == 0 (measured).
    for k in (8, 20, 24, 40):
        assert Int8Linear.from_linear(_linear(k, 16, False, torch.float32)).matmul_backend == (
            "dequantize"
        )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("k", "n"), [(192, 8192), (256, 768), (48, 33), (40, 24)])
@pytest.mark.parametrize("m", [1, 3, 4])
@pytest.mark.parametrize("bias", [False, True])
def test_kernel_matches_the_reference(
    dtype: torch.dtype, k: int, n: int, m: int, bias: bool
) -> None:
    layer = Int8Linear.from_linear(_linear(k, n, bias, dtype))
    x = torch.randn(m, k).to(dtype)
    out = layer(x)
    assert out.dtype == dtype and out.shape == (m, n)
    # The kernel rounds activations to bf16 (and accumulates in its own order): ~2^-9
    # relative error per product, averaged over K.
    ref = int8_linear_reference(x, layer.weight_int8, layer.weight_scale, layer.bias)
    rel = (out.float() - ref).norm() / ref.norm()
    assert rel < 8e-3, rel


def test_batches_above_kernel_max_rows_multiply_by_the_dequantized_weight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layer = Int8Linear.from_linear(_linear(64, 32, True, torch.float32), kernel_max_rows=2)
    assert layer._dense is not None and layer._dense.dtype == torch.float32  # made up front
    assert "_dense" not in layer.state_dict()
    assert layer.rows(0, 8).kernel_max_rows == 2
    unbounded = Int8Linear.from_linear(_linear(64, 32, True, torch.float32), kernel_max_rows=None)
    assert unbounded._dense is None
    kernel_rows = []
    real = torch._weight_int8pack_mm

    def counting(x: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
        kernel_rows.append(x.shape[0])
        return real(x, *args)

    monkeypatch.setattr(torch, "_weight_int8pack_mm", counting)
    small, big = torch.randn(2, 64), torch.randn(3, 64)
    layer(small)
    ref = int8_linear_reference(big, layer.weight_int8, layer.weight_scale, layer.bias)
    torch.testing.assert_close(layer(big), ref, atol=1e-5, rtol=1e-5)
    assert kernel_rows == [2]  # the 3-row batch took the dense weight
    unbounded(big)
    assert kernel_rows == [2, 3]
    with pytest.raises(ValueError, match="kernel_max_rows must be >= 1, got 0"):
        Int8Linear.from_linear(_linear(64, 32, True, torch.float32), kernel_max_rows=0)


def test_dequantize_backend_is_the_reference() -> None:
    layer = Int8Linear.from_linear(_linear(64, 32, True, torch.float32))
    layer.matmul_backend = "dequantize"
    x = torch.randn(5, 2, 64)
    want = int8_linear_reference(
        x.reshape(10, 64), layer.weight_int8, layer.weight_scale, layer.bias
    )
    assert torch.equal(layer(x), want.reshape(5, 2, 32))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_output_is_close_to_the_unquantized_linear(dtype: torch.dtype) -> None:
    lin = _linear(192, 1024, True, dtype)
    layer = Int8Linear.from_linear(lin)
    x = torch.randn(8, 192).to(dtype)
    rel = (layer(x).float() - lin(x).float()).norm() / lin(x).float().norm()
    assert rel < 1e-2, rel


def test_rows_shard_the_stored_layer_without_rounding_again() -> None:
    layer = Int8Linear.from_linear(_linear(32, 100, True, torch.float32))
    shard = layer.rows(40, 70)
    assert (shard.out_features, shard.in_features) == (30, 32)
    assert torch.equal(shard.weight_int8, layer.weight_int8[40:70])
    assert shard.weight_int8.untyped_storage().size() == 30 * 32  # not the whole storage
    x = torch.randn(4, 32)
    torch.testing.assert_close(shard(x), layer(x)[:, 40:70])


def test_weight_bytes_are_about_a_quarter_of_float32() -> None:
    layer = Int8Linear.from_linear(_linear(192, 8192, False, torch.float32))
    assert layer.weight_bytes() == 8192 * 192 + 8192 * 4
    assert layer.weight_bytes() / (8192 * 192 * 4) < 0.26


def test_bad_input_is_refused() -> None:
    layer = Int8Linear.from_linear(_linear(16, 8, False, torch.float32))
    with pytest.raises(ValueError, match=r"expected last dim 16, got \(2, 15\)"):
        layer(torch.randn(2, 15))
    with pytest.raises(TypeError, match="must be int8"):
        Int8Linear(torch.randn(8, 16), weight_scale=torch.ones(8), out_dtype=torch.float32)
    with pytest.raises(ValueError, match=r"one scale per output row \(8\)"):
        Int8Linear(torch.ones(8, 16, dtype=torch.int8), weight_scale=torch.ones(7))
    with pytest.raises(ValueError, match="out_dtype is required"):
        Int8Linear(torch.ones(8, 16, dtype=torch.int8), weight_scale=torch.ones(8))
    with pytest.raises(ValueError, match="finite and > 0"):
        Int8Linear(
            torch.ones(8, 16, dtype=torch.int8),
            weight_scale=torch.zeros(8),
            out_dtype=torch.float32,
        )
    with pytest.raises(TypeError, match="floating point"):
        Int8Linear(torch.ones(8, 16, dtype=torch.int32))


@torch.no_grad()
def test_int8_drafter_keeps_its_greedy_drafts() -> None:
    """A drafter fitted to prototype states (the stand-in FP8 tests use): int8 heads and
    projections keep >= 99 % of the greedy picks of every head, chain included."""
    drafter, prototypes = prototype_drafter()
    drafter = drafter.float()
    state, token, _ = states_near(prototypes, 0.5, 2000, seed=4)
    state = state.float()
    before = drafter(state, token)
    report = quantize_drafter_int8(drafter)
    assert sorted(report.replaced) == sorted(
        [f"head.{i}" for i in range(3)] + [f"proj.{i}" for i in range(3)]
    )
    assert set(report.matmul_backends.values()) == {"int8pack_mm"}
    assert report.activation_scheme == "none" and report.rounding == "nearest"
    assert report.bytes_after / report.bytes_before < 0.27  # float32 -> int8 + scales
    for layer in drafter.modules():
        if isinstance(layer, Int8Linear):
            layer.kernel_max_rows = len(state)  # judge the kernel, not the dense fallback
    after = drafter(state, token)
    agree = [
        (b.argmax(-1) == a.argmax(-1)).float().mean().item()
        for b, a in zip(before, after, strict=True)
    ]
    assert min(agree) >= 0.99, agree


def test_tied_heads_stay_tied_and_errors_change_nothing() -> None:
    torch.manual_seed(0)
    drafter = TinyMLPSpeculator(vocab=512, emb_dim=64, inner=64, n_predict=3).eval()
    drafter.head[1] = drafter.head[2] = drafter.head[0]
    report = quantize_drafter_int8(drafter, include_projections=False)
    assert drafter.head[0] is drafter.head[1] is drafter.head[2]
    assert isinstance(drafter.head[0], Int8Linear) and len(report.replaced) == 3
    assert report.bytes_before == 512 * 64 * 4  # the shared head counted once
    assert all(type(p) is torch.nn.Linear for p in drafter.proj)
    fresh = TinyMLPSpeculator(vocab=512, emb_dim=64, inner=64, n_predict=3)
    with pytest.raises(ValueError, match="lm_out"):
        quantize_drafter_int8(fresh, patterns=["lm_out*"])
    assert all(type(m) is torch.nn.Linear for m in (*fresh.head, *fresh.proj))
