"""How often a changed drafter (quantized, or recomputed in another dtype) drafts what its
reference drafts: top-1 agreement per head, teacher-forced and tie-aware.

A draft point is a target state h_t (P, H) and the last token x_{t+1} (P,). The reference's
greedy chain d (P, n) is drafted from it; then, per variant:

- *teacher-forced agreement* of head i (the gate the README's FP8 / int8 tables use): every
  model is fed the reference's chain (head 0 reads x_{t+1}, head i > 0 reads d[:, i-1]), so
  each head is judged on the same input whatever the heads before it picked. A variant's
  pick agrees when it is *a* top-1 of the reference's logits, ``ref[pick] == max(ref)``
  (tie-aware): on the tiny bf16 drafters the two largest logits are exactly equal at
  1.2-2.1 % of positions, where argmax returns the lower index by accident of vocabulary
  order, and a float32 recomputation of the same weights "disagrees" there. The exact rate,
  ``pick == argmax(ref)``, is reported beside it.
- *chain agreement* at position i: the variant's own greedy chain equals d at i (position
  i inherits any flip before it; a tie counts as a flip).
- *mean accepted*, given the target's continuation x_{t+2} .. x_{t+1+n} (P, n): the mean
  length of the leading run of draft tokens equal to it (as arctic-drafters' evaluate).
- *largest flip*: the (reference token, variant token) pair most common among the chain
  positions that differ, and its share of them; one near-tie in a repeated context can flip
  many positions the same way.

A model is anything with arctic-drafters' ``Speculator`` interface: ``propose(hidden, last,
n) -> (P, n)`` greedy drafts and ``model(hidden, tokens (P, k)) -> (k, P, V)`` teacher-forced
logits. arctic-drafters is not a dependency: nothing else is assumed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

import torch

DEFAULT_CHUNK = 4096  # positions per forward: bounds the (n, chunk, vocab) logits in memory


class DraftModel(Protocol):
    """What the evaluator calls (arctic-drafters' ``Speculator`` has both)."""

    def __call__(self, hidden_states: torch.Tensor, tokens: torch.Tensor) -> Any: ...

    def propose(
        self, hidden_states: torch.Tensor, last_tokens: torch.Tensor, n: int
    ) -> torch.Tensor: ...


@dataclass(frozen=True)
class TokenFlip:
    """The most common (reference token, variant token) pair among differing chain tokens."""

    reference: int  # -1 when the chains never differ
    variant: int  # -1 when the chains never differ
    share: float  # of all differing chain tokens; 0.0 when none differ


@dataclass(frozen=True)
class AgreementReport:
    """One variant against the reference; every rate is a fraction in [0, 1], per head."""

    positions: int  # draft points evaluated
    teacher_forced: list[float]  # tie-aware: the pick is a top-1 of the reference's logits
    teacher_forced_exact: list[float]  # the pick is the reference's argmax
    chain: list[float]  # the variant's greedy chain equals the reference's, per position
    largest_flip: TokenFlip
    reference_mean_accepted: float | None = None  # None without a continuation
    mean_accepted: float | None = None

    @property
    def relative_change(self) -> float | None:
        """mean_accepted / reference_mean_accepted - 1 (None without a continuation)."""
        if self.mean_accepted is None or self.reference_mean_accepted is None:
            return None
        return self.mean_accepted / max(self.reference_mean_accepted, 1e-12) - 1


def is_top1(logits: torch.Tensor, picks: torch.Tensor) -> torch.Tensor:
    """Tie-aware top-1: whether each pick is *a* maximum of its row, ``logits[pick] ==
    max(logits)``. logits (..., V), picks (...) integer; returns a bool tensor (...)."""
    if picks.shape != logits.shape[:-1]:
        raise ValueError(
            f"picks must have shape {tuple(logits.shape[:-1])} (logits without the vocab "
            f"axis), got {tuple(picks.shape)}"
        )
    at_pick = logits.gather(-1, picks[..., None].long())[..., 0]
    return at_pick == logits.amax(-1)


class AgreementEvaluator:
    """The reference's chain drafted once; `evaluate` compares any number of variants.

    hidden_states (P, H), last_tokens (P,): the draft points. continuation (P, n), optional:
    the target's tokens after them, for the acceptance length. n: draft length (default:
    the continuation's width, else ``reference.config.n_predict``). reference_dtype: the
    dtype the reference reads the states in (None: as given). chunk: positions per forward.
    """

    def __init__(
        self,
        reference: DraftModel,
        hidden_states: torch.Tensor,
        last_tokens: torch.Tensor,
        continuation: torch.Tensor | None = None,
        *,
        n: int | None = None,
        reference_dtype: torch.dtype | None = None,
        chunk: int = DEFAULT_CHUNK,
    ) -> None:
        n = _draft_length(reference, continuation, n)
        check_draft_points(hidden_states, last_tokens, chunk)
        if continuation is not None and tuple(continuation.shape) != (len(last_tokens), n):
            raise ValueError(
                f"continuation must be (positions, n) = ({len(last_tokens)}, {n}), got "
                f"{tuple(continuation.shape)}"
            )
        self.reference = reference
        self.hidden_states = hidden_states
        self.last_tokens = last_tokens
        self.continuation = continuation
        self.n = n
        self.reference_dtype = reference_dtype
        self.chunk = chunk
        self.reference_chain = self._draft(reference, reference_dtype)  # (P, n)
        # Head i reads the reference's token i-1 (head 0 the last token).
        self._fed = torch.cat([last_tokens[:, None], self.reference_chain[:, :-1]], dim=1)
        self.reference_mean_accepted = self._accepted(self.reference_chain)

    @torch.no_grad()
    def evaluate(self, model: DraftModel, dtype: torch.dtype | None = None) -> AgreementReport:
        """`model` (reading the states in `dtype`; None: as given) against the reference."""
        chain = self._draft(model, dtype)
        base = self.reference_chain
        exact, tied = self._teacher_forced(model, dtype)
        differ = chain != base
        flips = Counter(zip(base[differ].tolist(), chain[differ].tolist(), strict=True))
        (ref_token, variant_token), count = flips.most_common(1)[0] if flips else ((-1, -1), 0)
        return AgreementReport(
            positions=len(self.last_tokens),
            teacher_forced=tied,
            teacher_forced_exact=exact,
            chain=(chain == base).double().mean(0).tolist(),
            largest_flip=TokenFlip(ref_token, variant_token, count / max(1, sum(flips.values()))),
            reference_mean_accepted=self.reference_mean_accepted,
            mean_accepted=self._accepted(chain),
        )

    def _rows(self) -> range:
        return range(0, len(self.last_tokens), self.chunk)

    def _states(self, i: int, dtype: torch.dtype | None) -> torch.Tensor:
        states = self.hidden_states[i : i + self.chunk]
        return states if dtype is None else states.to(dtype)

    @torch.no_grad()
    def _draft(self, model: DraftModel, dtype: torch.dtype | None) -> torch.Tensor:  # (P, n)
        return torch.cat(
            [
                model.propose(self._states(i, dtype), self.last_tokens[i : i + self.chunk], self.n)
                for i in self._rows()
            ]
        )

    def _teacher_forced(
        self, model: DraftModel, dtype: torch.dtype | None
    ) -> tuple[list[float], list[float]]:
        """Per head: (exact, tie-aware) agreement with the reference on its own chain."""
        exact = torch.zeros(self.n, dtype=torch.float64)
        tied = torch.zeros(self.n, dtype=torch.float64)
        for i in self._rows():
            fed = self._fed[i : i + self.chunk]
            ref = self.reference(self._states(i, self.reference_dtype), fed).float()  # (n, c, V)
            picks = model(self._states(i, dtype), fed).argmax(-1)  # (n, c)
            exact += (picks == ref.argmax(-1)).double().sum(1)
            tied += is_top1(ref, picks).double().sum(1)
        positions = len(self.last_tokens)
        return (exact / positions).tolist(), (tied / positions).tolist()

    def _accepted(self, drafts: torch.Tensor) -> float | None:
        if self.continuation is None:
            return None
        right = (drafts == self.continuation).long()
        return float(torch.cumprod(right, dim=1).sum(1).double().mean().item())


def head_agreement(
    reference: DraftModel,
    variant: DraftModel,
    hidden_states: torch.Tensor,
    last_tokens: torch.Tensor,
    continuation: torch.Tensor | None = None,
    *,
    n: int | None = None,
    dtype: torch.dtype | None = None,
    reference_dtype: torch.dtype | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> AgreementReport:
    """`variant` against `reference` on the draft points (hidden_states (P, H), last_tokens
    (P,)); arguments as `AgreementEvaluator`, dtype: the dtype the variant reads the states
    in. For several variants, build one `AgreementEvaluator` (the reference drafts once)."""
    evaluator = AgreementEvaluator(
        reference,
        hidden_states,
        last_tokens,
        continuation,
        n=n,
        reference_dtype=reference_dtype,
        chunk=chunk,
    )
    return evaluator.evaluate(variant, dtype)


def _draft_length(reference: object, continuation: torch.Tensor | None, n: int | None) -> int:
    if n is None and continuation is not None:
        n = continuation.shape[1] if continuation.dim() == 2 else None
    if n is None:
        n = getattr(getattr(reference, "config", None), "n_predict", None)
    if not isinstance(n, int) or n < 1:
        raise ValueError(
            f"n (the draft length) must be an int >= 1, got {n!r}; pass n= or a (positions, "
            "n) continuation"
        )
    return n


def check_draft_points(hidden_states: torch.Tensor, last_tokens: torch.Tensor, chunk: int) -> None:
    """(P, H) states and (P,) tokens of the same P >= 1 draft points, chunk >= 1."""
    if hidden_states.dim() != 2 or last_tokens.dim() != 1:
        raise ValueError(
            f"hidden_states must be (P, H) and last_tokens (P,), got "
            f"{tuple(hidden_states.shape)} and {tuple(last_tokens.shape)}"
        )
    if len(hidden_states) != len(last_tokens) or len(last_tokens) == 0:
        raise ValueError(
            f"hidden_states and last_tokens must hold the same number (>= 1) of draft points, "
            f"got {len(hidden_states)} and {len(last_tokens)}"
        )
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
