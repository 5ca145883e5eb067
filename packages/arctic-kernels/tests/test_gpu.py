"""On a CUDA GPU: auto-dispatch picks Triton, kernels match references at serving sizes.

Speed is measured by tools/bench_kernels.py (house rule: no timing asserts in tests).
"""

from __future__ import annotations

import pytest
import torch

from arctic_kernels import (
    Fp8Linear,
    dequantize,
    quantize_per_token,
    quantize_per_token_reference,
    selected_backend,
    speculator_layer_norm,
    speculator_layer_norm_reference,
    sum_lstm_cell,
    sum_lstm_cell_reference,
)

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_auto_dispatch_runs_triton_and_matches_references(dtype: torch.dtype) -> None:
    pytest.importorskip("triton")
    torch.manual_seed(0)
    x = torch.randn(256, 4096, device="cuda", dtype=dtype)
    q, scale = quantize_per_token(x)
    assert selected_backend("quantize_per_token") == "triton"
    q_ref, scale_ref = quantize_per_token_reference(x)
    torch.testing.assert_close(scale, scale_ref, rtol=1e-6, atol=0)
    # GPU division may differ from IEEE by an ulp: allow a one-step flip on rare elements.
    diff = (q.float() - q_ref.float()).abs() / q_ref.float().abs().clamp_min(1)
    assert (diff > 0).float().mean() < 1e-3 and diff.max() <= 0.125

    w, b = (
        torch.rand(4096, device="cuda", dtype=dtype),
        torch.randn(4096, device="cuda", dtype=dtype),
    )
    y = speculator_layer_norm(x, w, b)
    assert selected_backend("speculator_layer_norm") == "triton"
    tol = {"atol": 2e-2, "rtol": 2e-2} if dtype == torch.bfloat16 else {"atol": 1e-4, "rtol": 1e-4}
    torch.testing.assert_close(y, speculator_layer_norm_reference(x, w, b), **tol)

    z = torch.randn(256, 4 * 4096, device="cuda", dtype=dtype)
    params = [w, b, w, b]
    h, c = sum_lstm_cell(z, x, *params)
    assert selected_backend("sum_lstm_cell") == "triton"
    h_ref, c_ref = sum_lstm_cell_reference(z, x, *params)
    torch.testing.assert_close(c, c_ref, **tol)
    torch.testing.assert_close(h, h_ref, **tol)


def test_fp8_linear_uses_scaled_mm_on_sm89_and_newer() -> None:
    lin = torch.nn.Linear(4096, 32000, bias=False, device="cuda", dtype=torch.bfloat16)
    fp8 = Fp8Linear.from_linear(lin)
    expected = "scaled_mm" if torch.cuda.get_device_capability() >= (8, 9) else "dequantize"
    assert fp8.matmul_backend == expected
    x = torch.randn(8, 4096, device="cuda", dtype=torch.bfloat16)
    ref = lin(x).float()
    assert ((fp8(x).float() - ref).norm() / ref.norm()) < 0.06


def test_fp8_linear_weight_only_on_cuda_matches_its_reference() -> None:
    lin = torch.nn.Linear(4096, 32000, bias=False, device="cuda", dtype=torch.bfloat16)
    fp8 = Fp8Linear.from_linear(lin, activation_scheme="none")
    assert fp8.matmul_backend == "dequantize" and fp8.check_finite is False
    x = torch.randn(8, 4096, device="cuda", dtype=torch.bfloat16)
    w = dequantize(fp8.weight_fp8, fp8.weight_scale.t())  # (N, K) float32
    ref = x.float() @ w.t()
    torch.testing.assert_close(fp8(x).float(), ref, atol=3e-2, rtol=2e-2)
    # Only the weight is rounded: closer to the bf16 layer than W8A8's ~3.7 %.
    exact = lin(x).float()
    assert ((fp8(x).float() - exact).norm() / exact.norm()) < 0.035
