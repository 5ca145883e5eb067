"""verify_greedy against a plain-Python reference, token for token."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from arctic_runtime.exceptions import DraftShapeError, TargetShapeError, TensorDtypeError
from arctic_runtime.reference import PAD_TOKEN, verify_greedy

VOCAB = 3  # small, so that drafts often agree with the argmax for a while


def reference(drafts: list[list[int]], argmax: list[list[int]]) -> list[tuple[int, list[int]]]:
    """(num_accepted, emitted tokens) per request, one token at a time."""
    results = []
    for draft, target in zip(drafts, argmax, strict=True):
        emitted: list[int] = []
        for i, token in enumerate(draft):
            if token != target[i]:
                break
            emitted.append(token)
        accepted = len(emitted)
        results.append((accepted, [*emitted, target[accepted]]))
    return results


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[list[int]], list[list[int]], int]:
    max_draft = draw(st.integers(0, 6))
    batch = draw(st.integers(1, 5))
    drafts = [draw(st.lists(st.integers(0, VOCAB - 1), max_size=max_draft)) for _ in range(batch)]
    argmax = [
        draw(st.lists(st.integers(0, VOCAB - 1), min_size=max_draft + 1, max_size=max_draft + 1))
        for _ in range(batch)
    ]
    # Padding values that would be accepted if read as draft tokens (0 is a valid token).
    pad = draw(st.sampled_from([0, -1, 99]))
    return drafts, argmax, pad


@settings(max_examples=200, deadline=None)
@given(batches())
def test_matches_reference(case: tuple[list[list[int]], list[list[int]], int]) -> None:
    drafts, argmax, pad = case
    max_draft = len(argmax[0]) - 1
    padded = [d + [pad] * (max_draft - len(d)) for d in drafts]
    draft_tokens = torch.tensor(padded, dtype=torch.long).reshape(len(drafts), max_draft)
    num_draft = torch.tensor([len(d) for d in drafts])

    num_accepted, output, num_output = verify_greedy(draft_tokens, num_draft, torch.tensor(argmax))

    assert output.shape == (len(drafts), max_draft + 1)
    for b, (want_accepted, want_tokens) in enumerate(reference(drafts, argmax)):
        assert int(num_accepted[b]) == want_accepted
        assert int(num_output[b]) == want_accepted + 1
        assert output[b, : want_accepted + 1].tolist() == want_tokens
        assert output[b, want_accepted + 1 :].eq(PAD_TOKEN).all()


def test_known_batch() -> None:
    draft_tokens = torch.tensor([[5, 6, 7], [5, 6, 7], [5, 9, 9], [1, 1, 1]])
    num_draft = torch.tensor([3, 2, 1, 0])
    target_argmax = torch.tensor([[5, 6, 7, 8], [5, 6, 7, 8], [4, 6, 7, 8], [1, 2, 3, 4]])

    num_accepted, output, num_output = verify_greedy(draft_tokens, num_draft, target_argmax)

    assert num_accepted.tolist() == [3, 2, 0, 0]
    assert num_output.tolist() == [4, 3, 1, 1]
    assert output.tolist() == [
        [5, 6, 7, 8],  # everything accepted, bonus after the last draft token
        [5, 6, 7, -1],  # draft of 2: position 2's argmax is the bonus, not a draft token
        [4, -1, -1, -1],  # first token rejected: the bonus replaces it
        [1, -1, -1, -1],  # no draft: plain decoding
    ]


def test_rejects_bad_inputs() -> None:
    tokens, argmax = torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(DraftShapeError, match=r"num_draft must lie in \[0, 3\].*\[0, 4\]"):
        verify_greedy(tokens, torch.tensor([0, 4]), argmax)
    with pytest.raises(DraftShapeError, match=r"num_draft must be \(2,\)"):
        verify_greedy(tokens, torch.tensor([1]), argmax)
    with pytest.raises(TargetShapeError, match=r"target_argmax must be \(2, 4\).*\(2, 3\)"):
        verify_greedy(tokens, torch.tensor([1, 1]), argmax[:, :3])
    with pytest.raises(DraftShapeError, match="draft_tokens must be"):
        verify_greedy(tokens[0], torch.tensor([1, 1]), argmax)
    with pytest.raises(TensorDtypeError, match=r"target_argmax.*torch\.float32"):
        verify_greedy(tokens, torch.tensor([1, 1]), argmax.float())
