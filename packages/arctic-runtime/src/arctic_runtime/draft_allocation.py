"""The draft lengths that maximise a batch's expected tokens per second, exactly.

One step verifies every request's draft in one target pass and emits, per request, its
accepted draft tokens plus one token of the target's own. With k_i draft tokens for request
i, E_i(k) = s_i0 + ... + s_i(k-1) its expected accepted tokens (s: its survival curve,
`acceptance_curves`), the batch's expected throughput is

    R(k) = (outputs + sum_i E_i(k_i)) / (base + [any k_i > 0] * batch_seconds
                                          + sum_i (token_seconds * k_i
                                                   + [k_i > 0] * request_seconds))

``outputs``: tokens the step emits with no draft at all; ``base``: the step's seconds then;
``token_seconds``: what one more verified token costs (the step-cost slope);
``request_seconds`` / ``batch_seconds``: drafting's own cost, per drafted request and once.

R is a ratio, so it is maximised by Dinkelbach's method (Dinkelbach 1967, "On nonlinear
fractional programming"): for a guess lambda of the best throughput, maximise the
separable sum_i [E_i(k_i) - lambda * cost_i(k_i)], one request at a time over 0..cap_i;
lambda <- R(that allocation); repeat until the sum gains nothing over lambda times the base.
lambda rises strictly at every round and there are finitely many allocations, so it ends,
at the exact optimum (in practice in 2-4 rounds), for any curves and caps. The fixed
``batch_seconds`` is handled by solving once with it charged and comparing with no drafts.

Without per-request costs the inner step is the greedy marginal rule: a request's
marginal gain for its j-th token is s_ij, non-increasing in j, so it keeps exactly the
tokens with s_ij > lambda * token_seconds: greedy "add the token of highest marginal
acceptance while throughput rises" run to its stopping point, since adding a token raises
R exactly when its marginal gain beats R times its marginal cost. A per-request cost makes
each request's first token dearer than the next (not concave): greedy could then stop
early, the inner maximisation here cannot.

Ties go to the shorter draft (fewer tokens verified for the same throughput), and a draft
is chosen only if it beats no speculation strictly: never slower, by the model.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

# Relative gain below which a Dinkelbach round counts as no gain (float rounding).
_TOLERANCE = 1e-12
_MAX_ROUNDS = 64  # far above what any input needs; a guard against float jitter


@dataclass(frozen=True)
class Allocation:
    lengths: tuple[int, ...]  # per request, 0..cap_i
    throughput: float  # expected tokens per second of the batch with these lengths
    baseline: float  # the same with no drafts: outputs / base


def expected_throughput(
    survival: Sequence[Sequence[float]],
    lengths: Sequence[int],
    *,
    outputs: float,
    base: float,
    token_seconds: float,
    request_seconds: float = 0.0,
    batch_seconds: float = 0.0,
) -> float:
    """R(lengths) as above (the objective; also what tests brute-force)."""
    tokens = outputs + sum(sum(s[:k]) for s, k in zip(survival, lengths, strict=True))
    drafted = sum(1 for k in lengths if k > 0)
    seconds = base + token_seconds * sum(lengths) + request_seconds * drafted
    if drafted:
        seconds += batch_seconds
    return tokens / seconds


def best_lengths(
    survival: Sequence[Sequence[float]],
    caps: Sequence[int],
    *,
    outputs: float,
    base: float,
    token_seconds: float,
    request_seconds: float = 0.0,
    batch_seconds: float = 0.0,
) -> Allocation:
    """The lengths (0..caps[i], ``survival[i]`` at least caps[i] long) maximising
    `expected_throughput`; all 0 unless some draft beats none strictly."""
    if len(survival) != len(caps):
        raise ValueError(f"{len(survival)} survival curves for {len(caps)} caps")
    for i, (s, cap) in enumerate(zip(survival, caps, strict=True)):
        if cap < 0 or len(s) < cap:
            raise ValueError(f"request {i}: cap {cap} needs 0 <= cap <= len(survival) = {len(s)}")
    if not (outputs >= 0.0 and base > 0.0):
        raise ValueError(f"need outputs >= 0 and base > 0, got {outputs} and {base}")
    if min(token_seconds, request_seconds, batch_seconds) < 0.0:
        raise ValueError("token_seconds, request_seconds and batch_seconds must be >= 0")
    zeros = (0,) * len(caps)
    baseline = outputs / base
    if not any(caps):
        return Allocation(zeros, baseline, baseline)
    charged = base + batch_seconds
    lengths, tokens, seconds = zeros, outputs, charged
    rate = tokens / seconds
    # Survival curves are non-increasing (acceptance_curves): a request's marginal gain
    # only falls, so its inner scan may stop at the first token that does not pay.
    monotone = [
        all(a >= b for a, b in itertools.pairwise(s[:cap]))
        for s, cap in zip(survival, caps, strict=True)
    ]
    for _ in range(_MAX_ROUNDS):
        new, new_tokens, new_seconds = _inner(
            survival, caps, monotone, rate, token_seconds, request_seconds, outputs, charged
        )
        if new_tokens - rate * new_seconds <= _TOLERANCE * max(1.0, new_tokens):
            break
        lengths, tokens, seconds = new, new_tokens, new_seconds
        rate = tokens / seconds
    if any(lengths) and rate > baseline:
        return Allocation(lengths, rate, baseline)
    return Allocation(zeros, baseline, baseline)


def _inner(
    survival: Sequence[Sequence[float]],
    caps: Sequence[int],
    monotone: Sequence[bool],
    rate: float,
    token_seconds: float,
    request_seconds: float,
    outputs: float,
    charged: float,
) -> tuple[tuple[int, ...], float, float]:
    """argmax of sum_i [E_i(k_i) - rate * cost_i(k_i)], each request alone, ties to the
    shorter; with the allocation's tokens and seconds."""
    price = rate * token_seconds
    lengths = []
    tokens, seconds = outputs, charged
    for s, cap, falls in zip(survival, caps, monotone, strict=True):
        best_k, best_gain, best_e = 0, 0.0, 0.0
        gain, e = -rate * request_seconds, 0.0
        for j in range(cap):
            if falls and s[j] <= price:
                break
            e += s[j]
            gain += s[j] - price
            if gain > best_gain:
                best_k, best_gain, best_e = j + 1, gain, e
        lengths.append(best_k)
        if best_k:
            tokens += best_e
            seconds += token_seconds * best_k + request_seconds
    return tuple(lengths), tokens, seconds
