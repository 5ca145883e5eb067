"""The proposer protocol: a request lifecycle plus one batched `propose` per step.

An engine (the reference engine here, or vLLM through arctic-vllm) drives every proposer the
same way:

    start_request(id, prompt)          once, when the request is scheduled
    propose([ProposeRequest...])       each step, for the requests that may speculate
    record(id, draft, num_accepted)    after verification, for each proposed draft
    accept_tokens(id, tokens)          the tokens appended to the request (accepted + bonus)
    stop_request(id)                   when it finishes or is aborted
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from .draft import Draft


@dataclass(frozen=True)
class ProposeRequest:
    """One request's input to a draft step."""

    req_id: str
    max_tokens: int  # the most draft tokens this request may get this step (>= 1)
    last_token: int  # the last token appended to the request (the bonus token of the step)
    # (H,) the target's final-norm hidden state at the position that produced last_token;
    # None when the engine does not provide hidden states (suffix-only serving).
    hidden_state: torch.Tensor | None = None
    # The draft must depend on this request's own tokens only, never on other requests,
    # the clock or the batch: a seeded request sampled at temperature > 0 reproduces its
    # output only if its drafts do (the rejection sampler's draws depend on the draft).
    reproducible: bool = False
    # The request's sampling temperature. > 0: a drafter samples its draft from its own
    # distribution at this temperature and returns it (Draft.probs), which accepts far more
    # than proposing its argmax (measured: tools/bench_draft_sampling.py); 0: greedy.
    temperature: float = 0.0
    # Draws this request's sampled draft tokens (None: torch's default generator); seeded
    # per request, a seeded request's drafts reproduce.
    generator: torch.Generator | None = None


@runtime_checkable
class Proposer(Protocol):
    name: str
    needs_hidden_states: bool  # True: propose() requires ProposeRequest.hidden_state

    def start_request(self, req_id: str, prompt_ids: Sequence[int], namespace: str = "") -> None:
        """Begin a request whose context is ``prompt_ids``."""

    def accept_tokens(self, req_id: str, token_ids: Sequence[int]) -> None:
        """Append tokens the target produced (accepted drafts plus the bonus token)."""

    def record(self, req_id: str, draft: Draft, num_accepted: int) -> None:
        """Feedback: ``num_accepted`` of ``draft``'s tokens were accepted by the target."""

    def stop_request(self, req_id: str) -> None:
        """The request finished or was aborted; its output may feed shared caches."""

    def propose(self, batch: Sequence[ProposeRequest]) -> list[Draft | None]:
        """One draft (or None: do not speculate) per request, in batch order."""
        ...
