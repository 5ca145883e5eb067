"""Each Triton kernel against its plain-torch reference (TRITON_INTERPRET=1 on a CPU)."""

from __future__ import annotations

import pytest
import torch

from arctic_kernels import (
    BackendUnavailableError,
    quantize_per_token,
    quantize_per_token_reference,
    selected_backend,
    speculator_layer_norm,
    speculator_layer_norm_reference,
    sum_lstm_cell,
    sum_lstm_cell_reference,
)

pytest.importorskip("triton")

DTYPES = [torch.float32, torch.bfloat16]
# Small on purpose: the interpreter runs each program in numpy. Odd widths check masking.
SHAPES = [(1, 16), (5, 100), (3, 4, 64), (9, 257)]
TOL = {torch.float32: {"atol": 1e-5, "rtol": 1e-5}, torch.bfloat16: {"atol": 1e-2, "rtol": 1e-2}}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_fp8_quantize_per_token_matches_reference_bit_for_bit(shape, dtype) -> None:  # type: ignore[no-untyped-def]
    gen = torch.Generator().manual_seed(len(shape) * 1000 + shape[-1])
    x = (torch.randn(shape, generator=gen) * 3).to(dtype)
    x.view(-1, shape[-1])[0] = 0.0  # an all-zero row: scale floored, no NaN
    q, scale = quantize_per_token(x, backend="triton")
    assert selected_backend("quantize_per_token") == "triton"
    q_ref, scale_ref = quantize_per_token_reference(x)
    assert torch.equal(scale, scale_ref)
    assert torch.equal(q.view(torch.uint8), q_ref.view(torch.uint8))


def test_fp8_kernel_rounds_ties_to_even_and_carries_into_the_next_binade() -> None:
    # Scale 1 (amax 448): 5.25 is a tie between 5.0 and 5.5 (-> 5.0, even mantissa);
    # 124.37 rounds up across a power of two to 128, which the interpreter's own cast breaks.
    x = torch.tensor([[448.0, 5.25, 124.37, -124.37, 0.0048828125, 1e-4]])
    q, _ = quantize_per_token(x, backend="triton")
    assert q.float().tolist() == quantize_per_token_reference(x)[0].float().tolist()
    assert q.float()[0, 1:4].tolist() == [5.0, 128.0, -128.0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_speculator_layer_norm_matches_reference(shape, dtype) -> None:  # type: ignore[no-untyped-def]
    gen = torch.Generator().manual_seed(shape[-1])
    hidden = shape[-1]
    x = (torch.randn(shape, generator=gen) * 4 + 1).to(dtype)
    weight = (torch.rand(hidden, generator=gen) + 0.5).to(dtype)
    bias = (torch.randn(hidden, generator=gen) * 0.1).to(dtype)
    out = speculator_layer_norm(x, weight, bias, 1e-6, backend="triton")
    assert selected_backend("speculator_layer_norm") == "triton"
    ref = speculator_layer_norm_reference(x, weight, bias, 1e-6)
    assert out.dtype == dtype and out.shape == x.shape
    torch.testing.assert_close(out, ref, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 16), (6, 48), (2, 3, 64), (4, 100)])
def test_sum_lstm_cell_matches_reference(shape, dtype) -> None:  # type: ignore[no-untyped-def]
    gen = torch.Generator().manual_seed(shape[-1] + 7)
    hidden = shape[-1]
    z = (torch.randn(*shape[:-1], 4 * hidden, generator=gen) * 2).to(dtype)
    c = torch.randn(shape, generator=gen).to(dtype)
    params = [
        (torch.rand(hidden, generator=gen) + 0.5).to(dtype),
        (torch.randn(hidden, generator=gen) * 0.1).to(dtype),
        (torch.rand(hidden, generator=gen) + 0.5).to(dtype),
        (torch.randn(hidden, generator=gen) * 0.1).to(dtype),
    ]
    h, c_new = sum_lstm_cell(z, c, *params, backend="triton")
    assert selected_backend("sum_lstm_cell") == "triton"
    h_ref, c_ref = sum_lstm_cell_reference(z, c, *params)
    assert h.shape == c_new.shape == c.shape and h.dtype == dtype
    torch.testing.assert_close(c_new, c_ref, **TOL[dtype])
    torch.testing.assert_close(h, h_ref, **TOL[dtype])


def test_sum_lstm_reference_follows_the_gate_equations() -> None:
    # Gate order (forget, input, output, candidate): saturated gates pick one term each.
    hidden = 8
    ones, zeros = torch.ones(hidden), torch.zeros(hidden)
    z_c = torch.randn(1, hidden)
    c = torch.randn(1, hidden)
    big = torch.full((1, hidden), 50.0)
    z = torch.cat([big, -big, big, z_c], dim=-1)  # forget=1, input=0, output=1
    h, c_new = sum_lstm_cell_reference(z, c, ones, zeros, ones, zeros)
    torch.testing.assert_close(c_new, c)
    gelu, ln = torch.nn.functional.gelu, speculator_layer_norm_reference
    torch.testing.assert_close(h, gelu(ln(c, ones, zeros)))
    z = torch.cat([-big, big, -big, z_c], dim=-1)  # forget=0, input=1, output=0
    h, c_new = sum_lstm_cell_reference(z, c, ones, zeros, ones, zeros)
    torch.testing.assert_close(c_new, gelu(ln(z_c, ones, zeros)))
    assert h.abs().max() < 1e-6


def test_auto_dispatch_on_cpu_picks_the_reference() -> None:
    x = torch.randn(2, 16)
    speculator_layer_norm(x, torch.ones(16), torch.zeros(16))
    assert selected_backend("speculator_layer_norm") == "reference"
    quantize_per_token(x)
    assert selected_backend("quantize_per_token") == "reference"


def test_triton_on_cpu_without_the_interpreter_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(BackendUnavailableError, match="TRITON_INTERPRET=1"):
        quantize_per_token(torch.randn(2, 16), backend="triton")
    with pytest.raises(ValueError, match="cuda_graph"):
        quantize_per_token(torch.randn(2, 16), backend="cuda_graph")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: speculator_layer_norm(torch.randn(2, 8), torch.ones(7), torch.zeros(8)),
            r"weight.*\(8,\)",
        ),
        (
            lambda: speculator_layer_norm(torch.randn(2, 8), torch.ones(8), torch.zeros(8), 0.0),
            "eps",
        ),
        (
            lambda: sum_lstm_cell(torch.randn(2, 30), torch.randn(2, 7), *[torch.ones(7)] * 4),
            "4\\*H",
        ),
        (
            lambda: sum_lstm_cell(torch.randn(2, 32), torch.randn(3, 8), *[torch.ones(8)] * 4),
            "c must",
        ),
    ],
)
def test_bad_shapes_are_refused_before_any_kernel_runs(call, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        call()
