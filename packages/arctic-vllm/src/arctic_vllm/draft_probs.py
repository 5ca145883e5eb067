"""Handing sampled drafts' distributions to vLLM's rejection sampler.

A drafter that samples its draft from q (at temperature > 0) stays lossless only if the
verifier accepts token x with min(1, p(x) / q(x)) and resamples from max(p - q, 0) on a
rejection (arXiv 2211.17192); verified as a one-hot proposal it would not be. vLLM's model
runner reads such distributions from ``runner._draft_probs`` (num_reqs, K, V) with
``runner._draft_prob_req_ids`` naming the rows, one step later, for every request that has
draft tokens (a missing row makes vLLM drop them all for that step). So every drafted row
gets one: q where the draft was sampled, one-hot where it was not (suffix and greedy
drafts), which the rejection sampler treats exactly as a draft without probabilities.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from arctic_runtime import Draft

PROBS_ATTR, REQ_IDS_ATTR = "_draft_probs", "_draft_prob_req_ids"


def can_hand_draft_probs(runner: Any) -> bool:
    """This vLLM's runner reads draft distributions (vLLM 0.32 does)."""
    return hasattr(runner, PROBS_ATTR) and hasattr(runner, REQ_IDS_ATTR)


def clear_draft_probs(runner: Any) -> None:
    """What vLLM's own propose_draft_token_ids does first: no stale rows from last step."""
    if can_hand_draft_probs(runner):
        setattr(runner, PROBS_ATTR, None)
        setattr(runner, REQ_IDS_ATTR, None)


def hand_draft_probs(runner: Any, drafts: Mapping[int, Draft], num_reqs: int) -> None:
    """Store (num_reqs, K, V) float32 draft distributions for this step's drafts, keyed by
    batch row; rows without a sampled draft get one-hot rows, undrafted rows zeros."""
    if not can_hand_draft_probs(runner) or not drafts:
        return
    sampled = [d.probs for d in drafts.values() if d.probs is not None]
    if not sampled:
        return
    vocab = sampled[0].shape[1]
    device = sampled[0].device
    width = max(len(d) for d in drafts.values())
    probs = torch.zeros(num_reqs, width, vocab, dtype=torch.float32, device=device)
    for row, draft in drafts.items():
        n = len(draft)
        if draft.probs is not None:
            probs[row, :n] = draft.probs.to(device, torch.float32)
        else:
            tokens = torch.tensor(draft.token_ids, dtype=torch.long, device=device)
            probs[row, torch.arange(n, device=device), tokens] = 1.0
    setattr(runner, PROBS_ATTR, probs)
    setattr(runner, REQ_IDS_ATTR, list(runner.input_batch.req_ids))
