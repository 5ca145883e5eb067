"""quantize_for_serving (what `arctic-train quantize` runs) and arctic-kernels' agreement
evaluator on real drafters (arctic-kernels is in this package's dev group: the [fp8] extra)."""

from __future__ import annotations

import copy
import sys

import pytest
import torch

from arctic_drafters import LSTMSpeculatorConfig, build_speculator
from arctic_drafters.training import HiddenStates, TokenShards, quantize_for_serving

ak = pytest.importorskip("arctic_kernels")

VOCAB, HIDDEN, SEQS, LENGTH, PROMPT = 512, 32, 4, 30, 8


def _drafter() -> torch.nn.Module:
    config = LSTMSpeculatorConfig(vocab_size=VOCAB, hidden_size=HIDDEN, inner_dim=32)
    return build_speculator(config).to(torch.bfloat16).eval()


def _data() -> tuple[TokenShards, HiddenStates]:
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, VOCAB, (SEQS, LENGTH), generator=gen)
    hidden = torch.randn(SEQS, LENGTH, HIDDEN, generator=gen)
    return TokenShards(tokens, PROMPT, VOCAB), HiddenStates(hidden, torch.randn(VOCAB, HIDDEN))


def test_quantize_for_serving_writes_the_layers_a_server_loads(tmp_path):
    drafter = _drafter()
    served = copy.deepcopy(drafter)  # what a server loads: the bf16 checkpoint
    data, states = _data()
    summary = quantize_for_serving(
        drafter, data, states, tmp_path, positions=10**6, include_projections=True
    )
    # Every (state, next token) pair from the prompt's last token on: 4 x (30 - 8).
    assert summary["calibration_positions"] == SEQS * (LENGTH - PROMPT)
    assert summary["file"] == str(tmp_path / ak.FP8_LAYERS_FILE)
    assert summary["layers"] == ["proj.0", "proj.1", "head.0"]  # tied head: one layer
    assert summary["rounding"] == "gptq" and summary["activation_scheme"] == "none"
    report = ak.load_fp8_layers(served, tmp_path / ak.FP8_LAYERS_FILE)
    assert report.rounding == "gptq"
    hidden, last = states.hidden[:, PROMPT].to(torch.bfloat16), data.tokens[:, PROMPT + 1]
    assert torch.equal(served.propose(hidden, last, 3), drafter.propose(hidden, last, 3))


def test_quantize_for_serving_refuses_bad_positions_before_changing_anything(tmp_path):
    drafter = _drafter()
    before = copy.deepcopy(drafter.state_dict())
    with pytest.raises(ValueError, match="positions must be >= 1, got 0"):
        quantize_for_serving(drafter, *_data(), tmp_path, positions=0)
    assert list(tmp_path.iterdir()) == []
    after = drafter.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_quantize_for_serving_names_the_extra_without_arctic_kernels(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "arctic_kernels", None)  # import now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'arctic-drafters\[fp8\]'"):
        quantize_for_serving(_drafter(), *_data(), tmp_path)


def test_agreement_of_real_drafters(small_config):
    """The evaluator drives arctic-drafters' Speculator interface: a copy agrees everywhere
    and accepts its own chain fully; an int8 copy is scored per head, tie-aware >= exact."""
    torch.manual_seed(0)
    drafter = build_speculator(small_config).eval()
    n = small_config.n_predict
    hidden = torch.randn(50, small_config.hidden_size)
    last = torch.randint(0, small_config.vocab_size, (50,))
    chain = drafter.propose(hidden, last, n)
    evaluator = ak.AgreementEvaluator(drafter, hidden, last, chain, chunk=16)
    same = evaluator.evaluate(copy.deepcopy(drafter))
    assert same.teacher_forced == same.teacher_forced_exact == same.chain == [1.0] * n
    assert same.mean_accepted == same.reference_mean_accepted == float(n)
    int8 = copy.deepcopy(drafter)
    ak.quantize_drafter_int8(int8)
    report = evaluator.evaluate(int8)
    assert len(report.teacher_forced) == n and report.positions == 50
    assert all(
        1.0 >= t >= e >= 0.0
        for t, e in zip(report.teacher_forced, report.teacher_forced_exact, strict=True)
    )
