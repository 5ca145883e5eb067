"""GPTQ rounding to e4m3: against a naive reference, its invariances, its gain over
round-to-nearest on correlated inputs, bad input, and quantize_drafter's calibration."""

from __future__ import annotations

import copy

import pytest
import torch
from stand_ins import TinyMLPSpeculator, prototype_drafter, states_near

from arctic_kernels import (
    FP8_MAX,
    Fp8Linear,
    HessianAccumulator,
    NonFiniteInputError,
    quantize_drafter,
    quantize_gptq,
    quantize_per_channel,
    quantize_per_tensor,
)


def correlated_inputs(rows: int, k: int, seed: int) -> torch.Tensor:
    """Inputs near one low-rank subspace (the same for every seed) plus noise, with uneven
    scales: what a layer sees. `seed` draws the rows."""
    basis = torch.randn(8, k, generator=torch.Generator().manual_seed(k))
    basis = basis * torch.linspace(0.2, 3.0, k)
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, 8, generator=g) @ basis + 0.05 * torch.randn(rows, k, generator=g)


def hessian_of(x: torch.Tensor) -> torch.Tensor:
    acc = HessianAccumulator(x.shape[-1])
    acc.add(x)
    return acc.hessian()


def naive_gptq(w: torch.Tensor, h: torch.Tensor, scale: torch.Tensor, damp: float) -> torch.Tensor:
    """Optimal Brain Quantization, one column at a time, with the explicit inverse Hessian
    downdated after each column (no Cholesky, no blocks, no reordering). Dequantized."""
    w = w.double().clone()
    h = h.double() + damp * h.double().diagonal().mean() * torch.eye(
        h.shape[0], dtype=torch.float64
    )
    hinv = torch.linalg.inv(h)
    s = scale.double().reshape(-1, 1)
    out = torch.empty_like(w)
    for i in range(w.shape[1]):
        q = (w[:, i : i + 1] / s).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn).double() * s
        out[:, i : i + 1] = q
        err = (w[:, i : i + 1] - q) / hinv[i, i]
        w[:, i + 1 :] -= err @ hinv[i : i + 1, i + 1 :]
        hinv = hinv - hinv[:, i : i + 1] @ hinv[i : i + 1, :] / hinv[i, i]
    return out


def dequant(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.double() * scale.double().reshape(-1, 1)


@pytest.mark.parametrize("block_size", [1, 5, 128])
def test_matches_the_naive_reference(block_size: int) -> None:
    torch.manual_seed(0)
    w = torch.randn(48, 40) * 0.05
    h = hessian_of(correlated_inputs(400, 40, seed=1))
    q, scale = quantize_gptq(w, h, damp=0.01, block_size=block_size, act_order=False)
    want = naive_gptq(w, h, scale, damp=0.01)
    got = dequant(q, scale)
    # Float64 both ways; a value exactly on a rounding boundary may still go either way.
    same = (got == want).double().mean().item()
    assert same > 0.995, same
    assert scale.shape == (48, 1)
    torch.testing.assert_close(scale, quantize_per_channel(w)[1])  # round-to-nearest's scales


def test_uncorrelated_equal_inputs_give_round_to_nearest() -> None:
    torch.manual_seed(0)
    w = torch.randn(32, 24)
    for h in (torch.eye(24), torch.zeros(24, 24)):  # independent inputs; inputs never seen
        q, scale = quantize_gptq(w, h)
        q_rtn, scale_rtn = quantize_per_channel(w)
        assert torch.equal(q.view(torch.uint8), q_rtn.view(torch.uint8))
        assert torch.equal(scale, scale_rtn)
    q, scale = quantize_gptq(w, torch.eye(24), per_channel=False)
    q_rtn, scale_rtn = quantize_per_tensor(w)
    assert torch.equal(q.view(torch.uint8), q_rtn.view(torch.uint8)) and scale.shape == ()


def test_act_order_is_invariant_to_the_order_of_the_inputs() -> None:
    torch.manual_seed(0)
    w = torch.randn(16, 20)
    h = hessian_of(correlated_inputs(300, 20, seed=2))
    perm = torch.randperm(20)
    q, _ = quantize_gptq(w, h)
    q_perm, _ = quantize_gptq(w[:, perm], h[perm][:, perm])
    same = (q[:, perm].float() == q_perm.float()).double().mean().item()
    assert same > 0.995, same


@pytest.mark.parametrize("per_channel", [True, False])
def test_smaller_output_error_than_round_to_nearest_on_new_inputs(per_channel: bool) -> None:
    torch.manual_seed(0)
    w = torch.randn(256, 64) * 0.05
    h = hessian_of(correlated_inputs(2000, 64, seed=3))
    x = correlated_inputs(2000, 64, seed=4).double()  # unseen inputs, same distribution
    ref = x @ w.double().t()
    q, scale = quantize_gptq(w, h, per_channel=per_channel)
    q_rtn, scale_rtn = (quantize_per_channel if per_channel else quantize_per_tensor)(w)
    err_gptq = (x @ dequant(q, scale.expand(256, 1)).t() - ref).pow(2).mean()
    err_rtn = (x @ dequant(q_rtn, scale_rtn.expand(256, 1)).t() - ref).pow(2).mean()
    assert err_gptq < 0.5 * err_rtn, (float(err_gptq), float(err_rtn))


def test_bad_input_is_refused_naming_it() -> None:
    w = torch.randn(8, 4)
    with pytest.raises(ValueError, match=r"hessian must be \(4, 4\).*\(3, 3\)"):
        quantize_gptq(w, torch.eye(3))
    with pytest.raises(ValueError, match="damp must be > 0, got 0"):
        quantize_gptq(w, torch.eye(4), damp=0)
    with pytest.raises(ValueError, match="block_size must be >= 1, got 0"):
        quantize_gptq(w, torch.eye(4), block_size=0)
    bad = torch.eye(4)
    bad[1, 2] = float("nan")
    with pytest.raises(NonFiniteInputError, match="hessian holds 1 NaN"):
        quantize_gptq(w, bad)
    with pytest.raises(ValueError, match="2-D"):
        quantize_gptq(torch.randn(8), torch.eye(8))
    acc = HessianAccumulator(4)
    with pytest.raises(ValueError, match="no calibration input"):
        acc.hessian()
    with pytest.raises(ValueError, match=r"expected last dim 4, got \(2, 5\)"):
        acc.add(torch.randn(2, 5))
    with pytest.raises(NonFiniteInputError, match="calibration input holds 1 NaN"):
        acc.add(torch.tensor([[1.0, float("nan"), 0.0, 0.0]]))
    assert acc.rows == 0


def test_fp8_linear_takes_a_hessian_and_says_so() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(32, 48, bias=True)
    h = hessian_of(correlated_inputs(500, 32, seed=5))
    fp8 = Fp8Linear.from_linear(linear, activation_scheme="none", hessian=h)
    assert fp8.rounding == "gptq" and "rounding=gptq" in repr(fp8)
    q, _ = quantize_gptq(linear.weight, h)
    assert torch.equal(fp8.weight_fp8.view(torch.uint8), q.view(torch.uint8))
    assert Fp8Linear.from_linear(linear).rounding == "nearest"


def _fitted_drafter(noise: float = 0.8) -> tuple[TinyMLPSpeculator, list[torch.Tensor]]:
    """A drafter fitted to prototype states, and two batches of (state, token) around them:
    one to calibrate on, one to evaluate."""
    drafter, prototypes = prototype_drafter()
    batches: list[torch.Tensor] = []
    for seed in (1, 2):
        state, token, _ = states_near(prototypes, noise, 3000, seed)
        batches += [state, token]
    return drafter, batches


@torch.no_grad()
def test_calibrated_drafter_heads_are_closer_to_the_bf16_drafter() -> None:
    drafter, (cal_state, cal_token, state, token) = _fitted_drafter()
    ref = torch.stack(drafter(state, token)).float()
    errors = {}
    for rounding in ("nearest", "gptq"):
        quantized = copy.deepcopy(drafter)
        report = quantize_drafter(
            quantized,
            activation_scheme="none",
            out_dtype=torch.float32,
            calibration=(lambda m: m(cal_state, cal_token)) if rounding == "gptq" else None,
        )
        assert report.rounding == rounding
        out = torch.stack(quantized(state, token))
        assert out.dtype == torch.float32
        errors[rounding] = (out - ref).pow(2).mean().item()
        if rounding == "gptq":
            # Every head saw the calibration batch once (3 heads, 3000 rows each).
            assert report.calibration_rows == {f"head.{i}": 3000 for i in range(3)}
    assert errors["gptq"] < 0.7 * errors["nearest"], errors


def test_calibration_that_misses_a_layer_is_an_error_and_changes_nothing() -> None:
    drafter, _ = _fitted_drafter()
    before = copy.deepcopy(drafter.state_dict())

    def only_first_head(m: TinyMLPSpeculator) -> None:
        m.head[0](torch.zeros(4, 128, dtype=torch.bfloat16))

    with pytest.raises(
        ValueError, match=r"calibration sent no input through \['head.1', 'head.2'\]"
    ):
        quantize_drafter(drafter, calibration=only_first_head)
    assert not any(isinstance(m, Fp8Linear) for m in drafter.modules())
    assert all(torch.equal(before[k], v) for k, v in drafter.state_dict().items())
    assert not any(m._forward_pre_hooks for m in drafter.modules())  # hooks removed
