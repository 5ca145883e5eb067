"""The reference engine: greedy speculative decoding over a Hugging Face causal LM.

Not a serving engine: every request keeps its own KV cache (a transformers ``DynamicCache``)
and is verified by its own target forward, so no padding or ragged attention is needed and
the output can be checked token for token against ``model.generate``. What it shares with a
real engine is the proposer's view: one `Proposer.propose` call per step for the whole batch
of active requests, then ``record`` and ``accept_tokens`` per request.

Greedy only (temperature 0): a draft token is accepted when it equals the target's argmax,
so the output is exactly greedy decoding (Leviathan et al. 2023, arXiv 2211.17192). The
target runs as ``base_model`` + output embedding, so one pass yields both the final-norm
hidden state a drafter reads and the logits. Models that post-process logits (softcapping,
a positive scale) keep the same argmax, so greedy outputs are unaffected.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from ..draft import Draft
from ..exceptions import DraftShapeError
from ..proposer import Proposer, ProposeRequest
from .hf_target import HFTarget, drop_last_positions, keep_new_positions
from .result import GenerationResult, GenerationStats
from .verify_greedy import verify_greedy
from .verify_tree import accept_tree, build_tree_inputs


class StepPolicy(Protocol):
    """Decides each step how many draft tokens each active request may get (0: none)."""

    def plan(self, batch_size: int, req_ids: list[str]) -> dict[str, int]: ...


@runtime_checkable
class _FeedbackPolicy(Protocol):
    # `SpeculationPolicy` also learns from outcomes (backoff); fed when it has these.
    def record(self, req_id: str, num_drafted: int, num_accepted: int) -> None: ...

    def forget(self, req_id: str) -> None: ...


@dataclass
class _Request:
    req_id: str
    prompt: list[int]
    output: list[int] = field(default_factory=list)
    cache: Any = None  # the model's KV cache: prompt + output[:-1] (last token not yet in)
    hidden: torch.Tensor | None = None  # (H,) final-norm state that produced output[-1]
    done: bool = False
    stopped: bool = False  # proposer.stop_request was called

    @property
    def cached_length(self) -> int:
        return len(self.prompt) + len(self.output) - 1


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str] | Sequence[Sequence[int]],
    proposer: Proposer | None = None,
    *,
    max_new_tokens: int = 64,
    num_speculative_tokens: int = 8,
    policy: StepPolicy | None = None,
    eos_token_id: int | Sequence[int] | None = None,
) -> GenerationResult:
    """Greedy generation with speculation, token-identical to
    ``model.generate(do_sample=False, max_new_tokens=...)`` run per prompt.

    prompts: texts (encoded by ``tokenizer``) or token-id lists; ``tokenizer`` may be None
    when every prompt is ids (then ``texts`` is None). proposer: None decodes one token per
    step. policy: ``plan(batch_size, req_ids)`` gives each request's draft budget per step;
    without one every request may draft ``num_speculative_tokens``. eos_token_id: default
    the model's ``generation_config.eos_token_id``; generation stops after emitting it.

    Tree drafts are verified in one pass with a tree attention mask (`verify_tree`); where
    the attention kernels take no mask (flash attention) or the cache cannot drop arbitrary
    positions, only the tree's first-children path is verified.
    """
    target = HFTarget(model)
    prompt_ids = _encode_prompts(prompts, tokenizer, target.vocab_size)
    _check_int("max_new_tokens", max_new_tokens, minimum=1)
    _check_int("num_speculative_tokens", num_speculative_tokens, minimum=0)
    if proposer is not None and not isinstance(proposer, Proposer):
        raise TypeError(
            f"proposer must implement arctic_runtime.proposer.Proposer, got "
            f"{type(proposer).__name__}"
        )
    if policy is not None and not callable(getattr(policy, "plan", None)):
        raise TypeError(f"policy must have plan(batch_size, req_ids), got {type(policy).__name__}")
    eos = _eos_ids(model, eos_token_id)

    start = time.perf_counter()
    stats = GenerationStats()
    requests = [_Request(f"req-{i}", ids) for i, ids in enumerate(prompt_ids)]
    loop = _Loop(target, proposer, policy, num_speculative_tokens, max_new_tokens, eos, stats)
    try:
        with torch.no_grad():
            for request in requests:
                loop.prefill(request)
            while active := [r for r in requests if not r.done]:
                loop.step(active)
    finally:
        # Also on errors: a proposer's shared state must not keep half-finished requests.
        for request in requests:
            loop.stop(request)
    stats.generated_tokens = sum(len(r.output) for r in requests)
    stats.wall_time_s = time.perf_counter() - start
    texts = (
        None
        if tokenizer is None
        else [tokenizer.decode(r.output, skip_special_tokens=True) for r in requests]
    )
    return GenerationResult([list(r.output) for r in requests], texts, stats)


class _Loop:
    """One `generate` call's state shared by its steps."""

    def __init__(
        self,
        target: HFTarget,
        proposer: Proposer | None,
        policy: StepPolicy | None,
        num_speculative_tokens: int,
        max_new_tokens: int,
        eos: frozenset[int],
        stats: GenerationStats,
    ) -> None:
        self.target = target
        self.proposer = proposer
        self.policy = policy
        self.num_speculative_tokens = num_speculative_tokens
        self.max_new_tokens = max_new_tokens
        self.eos = eos
        self.stats = stats

    def prefill(self, request: _Request) -> None:
        if self.proposer is not None:
            self.proposer.start_request(request.req_id, request.prompt)
        hidden, argmax, request.cache = self.target.forward(
            request.prompt, None, logits_from=len(request.prompt) - 1
        )
        self.stats.target_forwards += 1
        request.hidden = hidden[-1].clone()
        self._emit(request, [int(argmax[0])])

    def step(self, active: list[_Request]) -> None:
        self.stats.steps += 1
        budgets = self._plan(active)
        asks = []
        for r in active:
            # A step emits at most drafts + 1 tokens; drafting past the budget is waste.
            k = min(budgets[r.req_id], self.max_new_tokens - len(r.output) - 1)
            if self.proposer is not None and k >= 1:
                hidden = r.hidden if self.proposer.needs_hidden_states else None
                asks.append(ProposeRequest(r.req_id, k, r.output[-1], hidden))
        drafts: dict[str, Draft] = {}
        if asks:
            assert self.proposer is not None
            drafts = _checked_drafts(asks, self.proposer.propose(asks), self.target.vocab_size)
        for r in active:
            self._verify(r, drafts.get(r.req_id))

    def stop(self, request: _Request) -> None:
        if request.stopped:
            return
        request.stopped = True
        if self.proposer is not None:
            self.proposer.stop_request(request.req_id)
        if isinstance(self.policy, _FeedbackPolicy):
            self.policy.forget(request.req_id)

    def _plan(self, active: list[_Request]) -> dict[str, int]:
        ids = [r.req_id for r in active]
        if self.policy is None:
            return dict.fromkeys(ids, self.num_speculative_tokens)
        plan = self.policy.plan(len(ids), ids)
        missing = [i for i in ids if i not in plan]
        if missing:
            raise ValueError(f"policy.plan returned no draft budget for requests {missing}")
        bad = {i: plan[i] for i in ids if not isinstance(plan[i], int) or plan[i] < 0}
        if bad:
            raise ValueError(f"policy.plan budgets must be ints >= 0, got {bad}")
        return {i: plan[i] for i in ids}

    def _verify(self, request: _Request, draft: Draft | None) -> None:
        if draft is not None and draft.is_tree and self.target.supports_tree(request.cache):
            tokens, num_accepted = self._verify_tree(request, draft)
        else:
            verified = None if draft is None else _first_child_path(draft)
            tokens, num_accepted = self._verify_path(request, verified)
        self.stats.target_forwards += 1
        if draft is not None:
            self.stats.record_draft(draft.source, len(draft), num_accepted)
            assert self.proposer is not None
            self.proposer.record(request.req_id, draft, num_accepted)
            if isinstance(self.policy, _FeedbackPolicy):
                self.policy.record(request.req_id, len(draft), num_accepted)
        self._emit(request, tokens)

    def _verify_path(
        self, request: _Request, draft: tuple[int, ...] | None
    ) -> tuple[list[int], int]:
        draft = draft or ()
        hidden, argmax, request.cache = self.target.forward(
            [request.output[-1], *draft], request.cache
        )
        num_draft = len(draft)
        num_accepted_t, output, num_output = verify_greedy(
            torch.tensor([draft], dtype=torch.long).reshape(1, num_draft),
            torch.tensor([num_draft]),
            argmax.cpu()[None],
        )
        num_accepted = int(num_accepted_t[0])
        drop_last_positions(request.cache, num_draft - num_accepted)  # rejected drafts' entries
        request.hidden = hidden[num_accepted].clone()
        return output[0, : int(num_output[0])].tolist(), num_accepted

    def _verify_tree(self, request: _Request, draft: Draft) -> tuple[list[int], int]:
        past = request.cached_length
        inputs = build_tree_inputs(draft, request.output[-1], start_position=past)
        mask_dtype = self.target.tree_mask_dtype()
        assert mask_dtype is not None
        hidden, argmax, request.cache = self.target.forward(
            inputs.input_ids.tolist(),
            request.cache,
            position_ids=inputs.position_ids,
            attention_mask=inputs.attention_mask(past_length=past, dtype=mask_dtype),
        )
        path, bonus = accept_tree(draft, argmax.cpu())
        # The pass cached every node; keep the root and the accepted path only.
        keep_new_positions(request.cache, past, [0, *(1 + i for i in path)])
        request.hidden = hidden[1 + path[-1] if path else 0].clone()
        return [*(draft.token_ids[i] for i in path), bonus], len(path)

    def _emit(self, request: _Request, tokens: list[int]) -> None:
        """Append ``tokens`` cut as ``model.generate`` would: after the first EOS, and at
        max_new_tokens; then tell the proposer and finish the request if it is done."""
        room = self.max_new_tokens - len(request.output)
        kept = tokens[:room]
        for i, token in enumerate(kept):
            if token in self.eos:
                kept = kept[: i + 1]
                break
        request.output.extend(kept)
        if self.proposer is not None:
            self.proposer.accept_tokens(request.req_id, kept)
        if len(request.output) >= self.max_new_tokens or kept[-1] in self.eos:
            request.done = True
            self.stop(request)


def _first_child_path(draft: Draft) -> tuple[int, ...]:
    """A tree's path that always follows the first child (a path draft's own tokens)."""
    if not draft.is_tree:
        return draft.token_ids
    assert draft.parents is not None
    tokens, node = [], -1
    for i, parent in enumerate(draft.parents):
        if parent == node:
            tokens.append(draft.token_ids[i])
            node = i
    return tuple(tokens)


def _checked_drafts(
    asks: Sequence[ProposeRequest], proposed: Sequence[Draft | None], vocab_size: int
) -> dict[str, Draft]:
    """Validate every draft before any forward; cut drafts longer than their budget."""
    if len(proposed) != len(asks):
        raise DraftShapeError(
            f"proposer.propose returned {len(proposed)} drafts for {len(asks)} requests"
        )
    out = {}
    for ask, draft in zip(asks, proposed, strict=True):
        if draft is None:
            continue
        if not isinstance(draft, Draft):
            raise TypeError(
                f"request {ask.req_id!r}: proposer returned {type(draft).__name__}, "
                "expected a Draft or None"
            )
        if len(draft) == 0:
            continue
        bad = [t for t in draft.token_ids if not 0 <= t < vocab_size]
        if bad:
            raise DraftShapeError(
                f"request {ask.req_id!r}: draft token ids {bad[:5]} are outside the "
                f"target's vocabulary 0..{vocab_size - 1}"
            )
        out[ask.req_id] = draft.truncated(ask.max_tokens)
    return out


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _encode_prompts(
    prompts: Sequence[str] | Sequence[Sequence[int]], tokenizer: Any, vocab_size: int
) -> list[list[int]]:
    if isinstance(prompts, str | bytes) or not isinstance(prompts, Sequence):
        raise TypeError(
            f"prompts must be a list of texts or of token-id lists, got {type(prompts).__name__}"
        )
    if len(prompts) == 0:
        raise ValueError("prompts is empty; pass at least one prompt")
    encoded = []
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, str):
            if tokenizer is None:
                raise ValueError(f"prompts[{i}] is text but tokenizer is None; pass a tokenizer")
            ids = [int(t) for t in tokenizer(prompt)["input_ids"]]
        elif (
            isinstance(prompt, torch.Tensor)
            and prompt.dim() == 1
            and not prompt.is_floating_point()
        ):
            ids = [int(t) for t in prompt.tolist()]
        elif isinstance(prompt, Sequence):
            ids = []
            for t in prompt:
                if isinstance(t, bool) or not isinstance(t, numbers.Integral):
                    raise TypeError(
                        f"prompts[{i}] must be a text or a list of int token ids; it holds {t!r}"
                    )
                ids.append(int(t))
        else:
            raise TypeError(
                f"prompts[{i}] must be a text or a list of int token ids, got {prompt!r}"
            )
        if not ids:
            raise ValueError(f"prompts[{i}] has no tokens; every prompt needs at least one")
        bad = [t for t in ids if not 0 <= t < vocab_size]
        if bad:
            raise ValueError(
                f"prompts[{i}] has token ids {bad[:5]} outside the vocabulary 0..{vocab_size - 1}"
            )
        encoded.append(ids)
    return encoded


def _eos_ids(model: Any, eos_token_id: int | Sequence[int] | None) -> frozenset[int]:
    if eos_token_id is None:
        config = getattr(model, "generation_config", None)
        eos_token_id = getattr(config, "eos_token_id", None)
    if eos_token_id is None:
        return frozenset()
    if isinstance(eos_token_id, int):
        return frozenset([eos_token_id])
    return frozenset(int(t) for t in eos_token_id)
