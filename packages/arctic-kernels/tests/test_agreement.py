"""head_agreement / AgreementEvaluator / is_top1 / draft_calibration on constructed cases:
every expected rate is derived from the construction, not measured."""

from __future__ import annotations

import copy

import pytest
import torch
from stand_ins import TinySpeculator

from arctic_kernels import (
    AgreementEvaluator,
    TokenFlip,
    draft_calibration,
    head_agreement,
    is_top1,
    quantize_drafter,
)

VOCAB, WIDTH, N = 512, 64, 3


def _reference(seed: int = 0) -> TinySpeculator:
    """float32, random weights: exactly equal logits are (almost surely) absent."""
    torch.manual_seed(seed)
    return TinySpeculator(vocab=VOCAB, emb_dim=WIDTH, inner=WIDTH, n_predict=N).eval()


def _points(count: int = 40, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(count, WIDTH, generator=gen), torch.randint(
        0, VOCAB, (count,), generator=gen
    )


def test_is_top1_counts_any_maximum_of_a_row() -> None:
    logits = torch.tensor([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]])
    assert is_top1(logits, torch.tensor([2, 0])).tolist() == [True, True]  # 2: tied with 1
    assert is_top1(logits, torch.tensor([1, 2])).tolist() == [True, False]
    assert is_top1(logits, torch.tensor([0, 1])).tolist() == [False, False]
    with pytest.raises(ValueError, match=r"picks must have shape \(2,\)"):
        is_top1(logits, torch.tensor([0, 1, 2]))


def test_identical_models_agree_everywhere() -> None:
    reference = _reference()
    states, last = _points()
    chain = reference.propose(states, last, N)
    report = head_agreement(reference, copy.deepcopy(reference), states, last, chain)
    assert report.positions == 40
    assert report.teacher_forced == report.teacher_forced_exact == report.chain == [1.0] * N
    assert report.largest_flip == TokenFlip(-1, -1, 0.0)
    # The continuation is the reference's own chain: every draft token is accepted.
    assert report.reference_mean_accepted == report.mean_accepted == float(N)
    assert report.relative_change == 0.0


def test_a_flipped_head_is_found_and_only_that_head() -> None:
    """Head 1's rows rolled by one: it picks (reference's pick + 1) % V everywhere. Teacher
    forcing feeds head 2 the reference's chain, so only head 1 disagrees; the chain inherits
    the flip at position 2 too."""
    reference = _reference()
    variant = copy.deepcopy(reference)
    with torch.no_grad():
        variant.head[1].weight.copy_(torch.roll(reference.head[1].weight, 1, dims=0))
    states, last = _points()
    chain = reference.propose(states, last, N)
    report = head_agreement(reference, variant, states, last, chain)
    assert report.teacher_forced == report.teacher_forced_exact == [1.0, 0.0, 1.0]
    assert report.chain[:2] == [1.0, 0.0]
    assert report.mean_accepted == 1.0  # head 0 right, head 1 never
    assert report.relative_change == pytest.approx(1 / 3 - 1)


def test_largest_flip_is_the_most_common_pair() -> None:
    """Two heads, head 1 rolled: flips happen at position 1 only, as (b, b + 1). Three copies
    of draft point A and one of B: A's pair is 3/4 of the flips."""
    torch.manual_seed(0)
    reference = TinySpeculator(vocab=VOCAB, emb_dim=WIDTH, inner=WIDTH, n_predict=2).eval()
    variant = copy.deepcopy(reference)
    with torch.no_grad():
        variant.head[1].weight.copy_(torch.roll(reference.head[1].weight, 1, dims=0))
    states, last = _points(2)
    b = reference.propose(states, last, 2)[:, 1].tolist()
    assert b[0] != b[1]  # the construction needs A and B to draft different tokens
    pick = torch.tensor([0, 0, 1, 0])
    report = head_agreement(reference, variant, states[pick], last[pick], n=2)
    assert report.largest_flip == TokenFlip(b[0], (b[0] + 1) % VOCAB, 0.75)
    assert report.chain == [1.0, 0.0]
    assert report.mean_accepted is None and report.relative_change is None


def test_a_tie_counts_as_agreement_but_not_as_exact() -> None:
    """The reference's head 0 has tied maxima at tokens 3 and 5 for every input (zero weight,
    bias 1 at both): argmax returns 3. The variant prefers 5. Tie-aware, head 0 agrees
    everywhere; exactly, nowhere; and the chain (ties count as flips) differs at position 0."""
    reference = _reference()
    variant = copy.deepcopy(reference)
    for model, bias_5 in ((reference, 1.0), (variant, 1.5)):
        head = torch.nn.Linear(WIDTH, VOCAB)
        with torch.no_grad():
            head.weight.zero_()
            head.bias.zero_()
            head.bias[3], head.bias[5] = 1.0, bias_5
        model.head[0] = head
    states, last = _points()
    chain = reference.propose(states, last, N)
    assert chain[:, 0].unique().tolist() == [3]
    report = head_agreement(reference, variant, states, last, chain)
    assert report.teacher_forced[0] == 1.0
    assert report.teacher_forced_exact[0] == 0.0
    assert report.teacher_forced[1:] == report.teacher_forced_exact[1:] == [1.0, 1.0]
    assert report.chain[0] == 0.0
    assert report.mean_accepted == 0.0


def test_one_evaluator_many_variants_and_chunking_changes_nothing() -> None:
    reference = _reference()
    states, last = _points(10)
    chain = reference.propose(states, last, N)
    variant = copy.deepcopy(reference)
    quantize_drafter(variant, activation_scheme="none")
    whole = AgreementEvaluator(reference, states, last, chain)
    chunked = AgreementEvaluator(reference, states, last, chain, chunk=3)
    assert torch.equal(whole.reference_chain, chain)
    assert whole.evaluate(variant) == chunked.evaluate(variant)
    assert whole.evaluate(reference).teacher_forced == [1.0] * N
    report = whole.evaluate(variant)
    assert all(
        t >= e for t, e in zip(report.teacher_forced, report.teacher_forced_exact, strict=True)
    )


def test_dtypes_are_what_each_model_reads() -> None:
    """bf16 reference and its float32 recomputation (the README's noise floor): each reads
    the float32 states cast to its own dtype."""
    reference = _reference().to(torch.bfloat16)
    states, last = _points()
    report = head_agreement(
        reference,
        copy.deepcopy(reference).float(),
        states,
        last,
        n=N,
        dtype=torch.float32,
        reference_dtype=torch.bfloat16,
    )
    assert report.positions == 40 and len(report.teacher_forced) == N
    assert all(0.0 <= x <= 1.0 for x in report.teacher_forced + report.chain)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n \\(the draft length\\) must be an int >= 1, got 0"),
        ({"continuation": torch.zeros(40, 2, dtype=torch.long)}, r"continuation must be"),
        ({"chunk": 0}, "chunk must be >= 1, got 0"),
        ({"last_tokens": torch.zeros(39, dtype=torch.long)}, "same number"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], message: str) -> None:
    reference = _reference()
    states, last = _points()
    args: dict[str, object] = {"n": N, "last_tokens": last, **kwargs}
    with pytest.raises(ValueError, match=message):
        AgreementEvaluator(reference, states, **args)  # type: ignore[arg-type]


def test_draft_calibration_sends_every_point_through_every_head_once() -> None:
    drafter = _reference().to(torch.bfloat16)
    states, last = _points(10)
    calibration = draft_calibration(states, last, N, dtype=torch.bfloat16, chunk=4)
    report = quantize_drafter(drafter, activation_scheme="none", calibration=calibration)
    assert report.rounding == "gptq"
    assert report.calibration_rows == {"head.0": 10, "head.1": 10, "head.2": 10}
    with pytest.raises(ValueError, match="same number"):
        draft_calibration(states, last[:9], N)
    with pytest.raises(ValueError, match="chunk must be >= 1, got 0"):
        draft_calibration(states, last, N, chunk=0)
    with pytest.raises(ValueError, match="n must be >= 1, got n=0"):
        draft_calibration(states, last, 0)
