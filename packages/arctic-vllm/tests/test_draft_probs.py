"""Sampled drafts' distributions, in the layout vLLM's model runner reads one step later."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from arctic_runtime import DRAFTER, SUFFIX, Draft
from arctic_vllm.draft_probs import can_hand_draft_probs, clear_draft_probs, hand_draft_probs


def _runner(req_ids):
    return SimpleNamespace(
        input_batch=SimpleNamespace(req_ids=list(req_ids)),
        _draft_probs=None,
        _draft_prob_req_ids=None,
    )


def test_every_drafted_row_gets_a_distribution_one_hot_where_not_sampled():
    q = torch.softmax(torch.randn(2, 5), -1)
    drafts = {
        0: Draft((3, 1, 4), SUFFIX, 2.0),  # deterministic: one-hot rows
        2: Draft((2, 0), DRAFTER, 1.0, None, q),  # sampled: its q
    }
    runner = _runner(["a", "b", "c"])
    hand_draft_probs(runner, drafts, num_reqs=3)
    probs = runner._draft_probs
    assert probs.shape == (3, 3, 5) and probs.dtype == torch.float32
    assert torch.equal(probs[0].argmax(-1), torch.tensor([3, 1, 4]))
    assert torch.equal(probs[0].sum(-1), torch.ones(3))
    assert torch.equal(probs[2, :2], q) and torch.equal(probs[2, 2], torch.zeros(5))
    assert torch.equal(probs[1], torch.zeros(3, 5))  # no draft: never read by vLLM
    assert runner._draft_prob_req_ids == ["a", "b", "c"]
    clear_draft_probs(runner)
    assert runner._draft_probs is None and runner._draft_prob_req_ids is None


def test_nothing_is_handed_without_a_sampled_draft_or_on_a_vllm_without_the_hook():
    runner = _runner(["a"])
    hand_draft_probs(runner, {0: Draft((1, 2), SUFFIX, 1.0)}, num_reqs=1)
    assert runner._draft_probs is None  # deterministic drafts only: vLLM's fast path
    older = SimpleNamespace(input_batch=SimpleNamespace(req_ids=["a"]))
    assert not can_hand_draft_probs(older)
    q = torch.full((1, 4), 0.25)
    hand_draft_probs(older, {0: Draft((1,), DRAFTER, 1.0, None, q)}, num_reqs=1)
    assert not hasattr(older, "_draft_probs")
