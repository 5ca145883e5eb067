"""How many draft tokens each request may get this step.

Speculation pays when the target is memory-bound (small batches) and costs throughput when
it is compute-bound (large batches): the batch caps taper the draft length between a soft
and a hard batch size and stop it above the hard one. Per request, a user can switch
speculation off or cap it, and a request whose drafts keep being rejected backs off on its
own (paused for a number of steps that doubles while acceptance stays low), then probes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class RequestControl:
    """Per-request state: user settings and backoff."""

    enabled: bool = True
    max_tokens: int | None = None
    acceptance: float | None = None  # EMA of accepted / drafted (None: no draft yet)
    num_drafts: int = 0
    paused_until: int = 0  # step index at which speculation resumes
    pause_steps: int = 0  # the current backoff length
    probing: bool = False  # the next draft is the probe after a pause


@dataclass
class SpeculationPolicy:
    num_speculative_tokens: int  # K at small batch sizes
    soft_batch_cap: int | None = None  # above this the draft length tapers linearly...
    hard_batch_cap: int | None = None  # ...reaching 0 at this batch size and above
    # Arctic Inference's disable_by_batch_size: above this batch size only this many
    # requests (the first in batch order) draft.
    draft_request_limit: int | None = None
    # vLLM 0.33's num_speculative_tokens_per_batch_size: ((first, last, K), ...) inclusive
    # batch-size ranges from 1, sorted; a gap and the tail carry the previous range's K.
    tokens_by_batch_size: tuple[tuple[int, int, int], ...] | None = None
    backoff_threshold: float = 0.1  # EMA acceptance rate below which a request backs off
    backoff_min_drafts: int = 4  # drafts seen before backing off (the EMA needs evidence)
    backoff_initial_steps: int = 4
    backoff_max_steps: int = 256
    ema_weight: float = 0.3  # weight of the newest draft in the acceptance EMA
    _requests: dict[str, RequestControl] = field(default_factory=dict, init=False, repr=False)
    _step: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.num_speculative_tokens < 1:
            raise ValueError(
                f"num_speculative_tokens must be >= 1, got {self.num_speculative_tokens}"
            )
        for name in ("soft_batch_cap", "hard_batch_cap", "draft_request_limit"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {v}")
        soft, hard = self.soft_batch_cap, self.hard_batch_cap
        if soft is not None and hard is not None and hard < soft:
            raise ValueError(f"hard_batch_cap={hard} must be >= soft_batch_cap={soft}")
        if not 0.0 <= self.backoff_threshold <= 1.0:
            raise ValueError(f"backoff_threshold must be in [0, 1], got {self.backoff_threshold}")
        if not 0.0 < self.ema_weight <= 1.0:
            raise ValueError(f"ema_weight must be in (0, 1], got {self.ema_weight}")
        if not 1 <= self.backoff_initial_steps <= self.backoff_max_steps:
            raise ValueError(
                "need 1 <= backoff_initial_steps <= backoff_max_steps, got "
                f"{self.backoff_initial_steps} and {self.backoff_max_steps}"
            )

    # -- per-request settings ----------------------------------------------------------------
    def set_request(
        self, req_id: str, *, enabled: bool = True, max_tokens: int | None = None
    ) -> None:
        if max_tokens is not None and max_tokens < 0:
            raise ValueError(f"max speculative tokens must be >= 0, got {max_tokens}")
        control = self._requests.setdefault(req_id, RequestControl())
        control.enabled, control.max_tokens = enabled, max_tokens

    def forget(self, req_id: str) -> None:
        self._requests.pop(req_id, None)

    # -- per step --------------------------------------------------------------------------
    def batch_tokens(self, batch_size: int) -> int:
        """K after the batch caps."""
        k, soft, hard = self.num_speculative_tokens, self.soft_batch_cap, self.hard_batch_cap
        if self.tokens_by_batch_size is not None:
            k = min(k, scheduled_tokens(self.tokens_by_batch_size, batch_size))
        if hard is not None and batch_size >= hard:
            return 0
        if soft is None or batch_size <= soft:
            return k
        if hard is None:
            return k
        # Linear taper from K just above soft to 1 just below hard.
        span = hard - soft
        return max(1, k * (hard - batch_size) // span)

    def plan(self, batch_size: int, req_ids: Sequence[str]) -> dict[str, int]:
        """Draft tokens allowed per request this step (0: no speculation). Advances the step
        clock used by backoff, so call it once per engine step."""
        self._step += 1
        k = self.batch_tokens(batch_size)
        limit = self.draft_request_limit
        drafting = len(req_ids) if limit is None or batch_size <= limit else limit
        out = {}
        for index, req_id in enumerate(req_ids):
            if index >= drafting:
                out[req_id] = 0
                continue
            control = self._requests.get(req_id)
            if control is None:
                out[req_id] = k
                continue
            allowed = k if control.max_tokens is None else min(k, control.max_tokens)
            if not control.enabled or self._step < control.paused_until:
                allowed = 0
            out[req_id] = allowed
        return out

    def record(self, req_id: str, num_drafted: int, num_accepted: int) -> None:
        """Acceptance feedback for backoff."""
        if num_drafted <= 0:
            return
        if not 0 <= num_accepted <= num_drafted:
            raise ValueError(
                f"num_accepted must be in 0..num_drafted={num_drafted}, got {num_accepted}"
            )
        c = self._requests.setdefault(req_id, RequestControl())
        rate = num_accepted / num_drafted
        c.num_drafts += 1
        if c.probing:
            # The first draft after a pause decides alone: bad -> pause twice as long.
            c.probing = False
            if rate < self.backoff_threshold:
                self._pause(c)
            else:
                c.pause_steps, c.acceptance = 0, rate
            return
        w = self.ema_weight
        c.acceptance = rate if c.acceptance is None else (1 - w) * c.acceptance + w * rate
        if c.num_drafts >= self.backoff_min_drafts and c.acceptance < self.backoff_threshold:
            self._pause(c)

    def _pause(self, c: RequestControl) -> None:
        c.pause_steps = (
            self.backoff_initial_steps
            if c.pause_steps == 0
            else min(2 * c.pause_steps, self.backoff_max_steps)
        )
        # plan() for the next step runs at _step + 1; it and the following pause_steps - 1
        # steps draft nothing.
        c.paused_until = self._step + 1 + c.pause_steps
        c.probing = True

    def is_paused(self, req_id: str) -> bool:
        c = self._requests.get(req_id)
        return c is not None and self._step < c.paused_until


def scheduled_tokens(schedule: Sequence[tuple[int, int, int]], batch_size: int) -> int:
    """K for a batch size under a (first, last, K) range schedule (see tokens_by_batch_size)."""
    k = 0
    for first, last, tokens in schedule:
        if batch_size < first:
            break
        k = tokens
        if batch_size <= last:
            break
    return k
