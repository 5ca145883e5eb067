"""Drafts from an MLP/LSTM speculator head reading the target's last hidden state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from arctic_drafters import Speculator

from .acceptance import AcceptanceTracker
from .draft import DRAFTER, Draft
from .proposer import ProposeRequest


class DraftRunner(Protocol):
    """What runs the n-step draft: the speculator itself or a (CUDA-graph) draft loop."""

    def __call__(
        self, hidden_states: torch.Tensor, last_tokens: torch.Tensor, n: int
    ) -> torch.Tensor: ...


class DrafterProposer:
    """Arctic speculator drafts: head i proposes token i+1 from the state of head i-1.

    Acceptance is tracked per position globally and per request; a request's estimate is
    shrunk towards the global one (`expected_accepted`), which is what the hybrid compares
    with the suffix score.
    """

    name = "drafter"
    needs_hidden_states = True

    def __init__(
        self,
        speculator: Speculator,
        num_tokens: int | None = None,
        draft_runner: DraftRunner | None = None,
    ) -> None:
        """FP8 / int8 weights, CUDA graphs and compiled loops: `build_drafter` (one path)."""
        n_predict = speculator.config.n_predict
        if num_tokens is None:
            num_tokens = n_predict
        if not 1 <= num_tokens <= n_predict:
            raise ValueError(
                f"num_tokens must be in 1..n_predict={n_predict} of the drafter, got {num_tokens}"
            )
        self.speculator = speculator.eval()
        self.num_tokens = num_tokens
        self._run: DraftRunner = draft_runner or speculator.propose
        param = next(speculator.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.tracker = AcceptanceTracker(num_tokens)
        self._per_request: dict[str, AcceptanceTracker] = {}

    # -- lifecycle: the drafter keeps no context, only acceptance statistics ------------------
    def start_request(self, req_id: str, prompt_ids: Sequence[int], namespace: str = "") -> None:
        self._per_request[req_id] = AcceptanceTracker(self.num_tokens)

    def accept_tokens(self, req_id: str, token_ids: Sequence[int]) -> None:
        return None

    def record(self, req_id: str, draft: Draft, num_accepted: int) -> None:
        if draft.source != DRAFTER:
            return
        self.tracker.record(len(draft), num_accepted)
        per_request = self._per_request.get(req_id)
        if per_request is not None:
            per_request.record(len(draft), num_accepted)

    def stop_request(self, req_id: str) -> None:
        self._per_request.pop(req_id, None)

    # -- drafting --------------------------------------------------------------------------
    def expected_accepted(self, req_id: str, length: int) -> float:
        """Expected accepted tokens of this request's next ``length``-token draft."""
        length = min(length, self.num_tokens)
        global_rates = self.tracker.rates()
        per_request = self._per_request.get(req_id)
        if per_request is None:
            return self.tracker.expected_accepted(length)
        return per_request.expected_accepted(length, prior=global_rates)

    def propose(self, batch: Sequence[ProposeRequest]) -> list[Draft | None]:
        if not batch:
            return []
        for r in batch:
            if r.hidden_state is None:
                raise ValueError(
                    f"request {r.req_id!r}: the drafter needs the target's hidden state; the "
                    "engine gave none"
                )
        # A seeded sampled request drafts in a call of its own: the int8 heads compute
        # differently for 1-4 rows than for more (Int8Linear's kernel_max_rows), and a
        # sampled draw is sensitive enough to that for the request's tokens to depend on
        # its neighbours (measured: 3 of 8 seeded requests changed beside 8 others).
        alone = [[i] for i, r in enumerate(batch) if r.reproducible and r.temperature > 0]
        rest = [i for i, r in enumerate(batch) if not (r.reproducible and r.temperature > 0)]
        drafts: list[Draft | None] = [None] * len(batch)
        for group in [*alone, rest] if rest else alone:
            for i, d in zip(group, self._propose_rows([batch[i] for i in group]), strict=True):
                drafts[i] = d
        return drafts

    def _propose_rows(self, batch: Sequence[ProposeRequest]) -> list[Draft | None]:
        hidden = torch.stack([r.hidden_state for r in batch if r.hidden_state is not None])
        hidden = hidden.to(self.device, self.dtype)
        last = torch.tensor([r.last_token for r in batch], dtype=torch.long, device=self.device)
        n = min(self.num_tokens, max(r.max_tokens for r in batch))
        probs: torch.Tensor | None = None
        if any(r.temperature > 0 for r in batch):
            # Sampled requests: tokens drawn from q at the request's temperature, with q
            # for the verifier (greedy rows of the batch stay argmax). Eager: the captured
            # or compiled loop is the greedy chain.
            temps = torch.tensor([max(r.temperature, 0.0) for r in batch])
            sampled, probs = self.speculator.propose_sampled(
                hidden, last, n, temps, [r.generator for r in batch]
            )
            tokens = sampled.tolist()
        else:
            tokens = self._run(hidden, last, n).tolist()  # (B, n)
        drafts: list[Draft | None] = []
        for b, (r, row) in enumerate(zip(batch, tokens, strict=True)):
            k = min(r.max_tokens, n)
            score = self.expected_accepted(r.req_id, k)
            q = probs[b, :k] if probs is not None and r.temperature > 0 else None
            drafts.append(Draft(tuple(int(t) for t in row[:k]), DRAFTER, score, None, q))
        return drafts
