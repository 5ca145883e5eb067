"""Acceptance by draft position, per draft source and bucket: what the planner expects.

A draft is accepted left to right, so what a draft length buys is read off a survival
curve: s_j = P(the first j + 1 tokens are accepted) = prod_{i <= j} a_i, with a_i the rate
at which position i is accepted once reached. The rates are kept per curve key
``(source, bucket)``:

- suffix drafts by the length of the context suffix they were matched on (a longer match
  predicts a longer accepted run; Suffix Decoding, arXiv 2411.04975), in powers of two;
- drafter drafts by head position alone, greedy and sampled apart (a sampled draft is
  accepted at a different rate).

Requests differ within a bucket (a drafter is good on one prompt, poor on the next), so each
request also has its own curve per key. Each rate is a Beta posterior mean over decayed
(reached, accepted) counts (`AcceptanceTracker`): a request's prior is its bucket's curve,
a bucket's prior its source's curve over every bucket, whose prior in turn is
Beta(w * prior_rate, w * (1 - prior_rate)). A request seen rarely reads as its bucket, a
bucket seen rarely as its source, a source seen rarely as the prior. Survival curves are
cached until their source records again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .acceptance import AcceptanceTracker, DraftCounts
from .draft import DRAFTER, SUFFIX, Draft

# (source, bucket); bucket None: the source's curve over every bucket.
CurveKey = tuple[str, int | None]
# Match lengths 1, 2-3, 4-7, ... , and >= 2**(SUFFIX_BUCKETS - 1) share a bucket each.
SUFFIX_BUCKETS = 7
GREEDY, SAMPLED = 0, 1  # drafter buckets


def suffix_bucket(match_len: int) -> int:
    """0 for an unknown match length, else 1 + floor(log2(match_len)), capped."""
    return min(max(0, int(match_len)).bit_length(), SUFFIX_BUCKETS)


def curve_key(draft: Draft) -> CurveKey:
    """The curve a draft's acceptance is recorded in (and, after drafting, read from)."""
    if draft.source == SUFFIX:
        return (SUFFIX, suffix_bucket(draft.match_len))
    if draft.source == DRAFTER:
        return (DRAFTER, GREEDY if draft.probs is None else SAMPLED)
    return (draft.source, 0)


@dataclass
class AcceptanceCurves:
    """Per-position acceptance per request and `CurveKey`, shrunk request -> bucket ->
    source -> prior."""

    num_positions: int  # positions tracked; deeper ones reuse the last position's rate
    prior_rate: float = 0.5
    prior_weight: float = 2.0  # how many drafts reaching a position a prior is worth
    decay: float = 0.99  # per draft recorded into a shared curve (~100 drafts of memory)
    # A request's own drafts (~50 drafts of memory, as DrafterProposer's trackers): shorter
    # memory follows drift faster but, on the tests' synthetic engine, costs throughput.
    request_decay: float = 0.98
    _trackers: dict[CurveKey, AcceptanceTracker] = field(default_factory=dict, init=False)
    _requests: dict[tuple[str, CurveKey], AcceptanceTracker] = field(
        default_factory=dict, init=False
    )
    _rates: dict[CurveKey, list[float]] = field(default_factory=dict, init=False)
    _survival: dict[CurveKey, tuple[float, ...]] = field(default_factory=dict, init=False)
    # A request's curve was computed on its source at this version (bumped per record).
    _versions: dict[str, int] = field(default_factory=dict, init=False)
    _request_survival: dict[tuple[str, CurveKey], tuple[int, tuple[float, ...]]] = field(
        default_factory=dict, init=False
    )

    def __post_init__(self) -> None:
        # The tracker checks the shared fields; ones built now fail here, not mid-serving.
        self._tracker()
        self._tracker(self.request_decay)

    def _tracker(self, decay: float | None = None) -> AcceptanceTracker:
        return AcceptanceTracker(
            self.num_positions, self.decay if decay is None else decay, self.prior_rate,
            self.prior_weight,
        )  # fmt: skip

    def record(
        self, key: CurveKey, num_drafted: int, num_accepted: int, req_id: str | None = None
    ) -> None:
        """A verified draft of ``num_drafted`` tokens, ``num_accepted`` of them accepted
        (``req_id``: whose, for its own curve)."""
        source, bucket = key
        if bucket is None:
            raise ValueError(f"record into a bucket's curve, got {key!r}")
        DraftCounts.check(num_drafted, num_accepted)  # before any curve moves
        for k in ((source, None), key):
            tracker = self._trackers.get(k)
            if tracker is None:
                tracker = self._trackers[k] = self._tracker()
            tracker.record(num_drafted, num_accepted)
        if req_id is not None:
            own = self._requests.get((req_id, key))
            if own is None:
                own = self._requests[(req_id, key)] = self._tracker(self.request_decay)
            own.record(num_drafted, num_accepted)
            self._request_survival.pop((req_id, key), None)
        for cache in (self._rates, self._survival):
            for k in [k for k in cache if k[0] == source]:  # a source's curve is every
                del cache[k]  # bucket's prior
        self._versions[source] = self._versions.get(source, 0) + 1

    def forget(self, req_id: str) -> None:
        """The request finished: its own curves go."""
        for k in [k for k in self._requests if k[0] == req_id]:
            del self._requests[k]
            self._request_survival.pop(k, None)

    def rates(self, key: CurveKey, req_id: str | None = None) -> list[float]:
        """Per-position conditional acceptance rates of ``key`` (for ``req_id``)."""
        rates = self._rates.get(key)
        if rates is None:
            source, bucket = key
            pooled = self._trackers.get((source, None))
            rates = pooled.rates() if pooled is not None else [self.prior_rate] * self.num_positions
            tracker = None if bucket is None else self._trackers.get(key)
            if tracker is not None:
                rates = tracker.rates(rates)
            self._rates[key] = rates
        own = None if req_id is None else self._requests.get((req_id, key))
        return list(rates) if own is None else own.rates(rates)

    def survival(self, key: CurveKey, req_id: str | None = None) -> tuple[float, ...]:
        """s_j = P(the first j + 1 tokens of a ``key`` draft are accepted), j < num_positions;
        non-increasing (every rate is at most 1). ``req_id``: that request's curve, which is
        the key's until the request has drafts of its own."""
        if req_id is not None and (req_id, key) in self._requests:
            version = self._versions.get(key[0], 0)
            cached = self._request_survival.get((req_id, key))
            if cached is None or cached[0] != version:
                cached = (version, _survival(self.rates(key, req_id)))
                self._request_survival[(req_id, key)] = cached
            return cached[1]
        curve = self._survival.get(key)
        if curve is None:
            curve = self._survival[key] = _survival(self.rates(key))
        return curve

    def expected_accepted(self, key: CurveKey, length: int, req_id: str | None = None) -> float:
        """Expected accepted tokens of a ``length``-token ``key`` draft."""
        return sum(survival_prefix(self.survival(key, req_id), length))


def _survival(rates: list[float]) -> tuple[float, ...]:
    out, alive = [], 1.0
    for rate in rates:
        alive *= rate
        out.append(alive)
    return tuple(out)


def survival_prefix(curve: tuple[float, ...], length: int) -> list[float]:
    """The first ``length`` survival probabilities, positions past the curve extended at
    its last conditional rate."""
    if length <= len(curve):
        return list(curve[:length])
    out = list(curve)
    last = curve[-1]
    rate = last / curve[-2] if len(curve) > 1 and curve[-2] > 0 else last
    while len(out) < length:
        last *= rate
        out.append(last)
    return out
