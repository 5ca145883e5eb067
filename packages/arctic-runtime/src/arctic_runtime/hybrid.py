"""Per request and per step, draft from whichever source is expected to earn more tokens.

Arctic Inference takes the suffix draft when its score >= the model's n_predict, a fixed
threshold. Here both sides are estimates of the same quantity, the expected number of
accepted tokens: the suffix cache's score (calibrated by how suffix drafts actually fared)
and the drafter's running per-position acceptance for this request. The larger one wins,
but the drafter is run only when what it is expected to add pays for its own time: over
the requests it would win, sum(E_drafter - E_suffix) > cost * sum over the batch of
(1 + E_suffix), where cost is the drafter's time relative to one step (tokens per second
with it, (T + gain) / (1 + cost), must beat T). Suffix drafts cost ~nothing to propose.

Estimates only move when they are observed, so a skipped drafter would never be measured
again: one slow first call, or a few unlucky drafts, could keep it out for good. Hence its
time is the median of its last calls (one outlier moves nothing), and after ``probe_every``
steps in a row where it would have won but did not pay, it runs once anyway (a probe) to
refresh both its time and its acceptance.

A request marked ``reproducible`` (seeded, sampled) is decided by a rule that reads nothing
but its own draft: the suffix draft when its score reaches the drafter's length, else the
drafter, run whatever it costs.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence

from .draft import DRAFTER, SUFFIX, Draft
from .drafter_proposer import DrafterProposer
from .proposer import ProposeRequest
from .suffix_proposer import SuffixProposer


class HybridProposer:
    """Suffix + drafter; counts which source won in ``wins``."""

    name = "hybrid"
    needs_hidden_states = True

    def __init__(
        self,
        suffix: SuffixProposer,
        drafter: DrafterProposer,
        *,
        calibration_decay: float = 0.98,
        drafter_cost: float | None = None,
        probe_every: int = 16,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """drafter_cost: the drafter's time relative to one engine step (0: free). None
        measures it: the median of the drafter's last wall times over an EWMA of the time
        between consecutive `propose` calls less the drafter's share (clock: injectable for
        tests). probe_every: run the drafter anyway after this many skipped steps in a row."""
        if not 0.0 < calibration_decay <= 1.0:
            raise ValueError(f"calibration_decay must be in (0, 1], got {calibration_decay}")
        if drafter_cost is not None and not drafter_cost >= 0.0:
            raise ValueError(f"drafter_cost must be >= 0 or None (measured), got {drafter_cost}")
        if isinstance(probe_every, bool) or not isinstance(probe_every, int) or probe_every < 1:
            raise ValueError(f"probe_every must be an int >= 1, got {probe_every!r}")
        self._fixed_cost = drafter_cost
        self._clock = clock
        self._last_call: float | None = None
        self._last_drafter_seconds = 0.0
        self._step_seconds: float | None = None  # EWMA of a step without the drafter
        self._drafter_times: deque[float] = deque(maxlen=15)  # its last calls' wall times
        self._probe_every = probe_every
        self._skipped_in_a_row = 0
        self.drafter_skipped = 0  # steps where the drafter would have won but did not pay
        self.drafter_probes = 0  # of those, steps where it ran anyway to be measured again
        self.suffix = suffix
        self.drafter = drafter
        self.wins: dict[str, int] = {SUFFIX: 0, DRAFTER: 0}
        # Decayed sums of suffix (accepted, score): suffix scores are frequency estimates
        # that can be optimistic on a model that does not copy; their ratio calibrates them.
        self._decay = calibration_decay
        self._suffix_accepted = 1.0
        self._suffix_scored = 1.0
        # The suffix draft that lost this step, per request: scored against the tokens the
        # target then produced, so a calibration that fell (suffix rarely chosen) can rise
        # again. A lower bound when every produced token matched (the draft might have gone
        # further), which only makes recovery cautious.
        self._shadow: dict[str, Draft] = {}

    @property
    def suffix_calibration(self) -> float:
        return self._suffix_accepted / self._suffix_scored

    @property
    def drafter_cost(self) -> float:
        """The drafter's time relative to one step: fixed, or measured (0 until measured)."""
        if self._fixed_cost is not None:
            return self._fixed_cost
        if not self._step_seconds or not self._drafter_times:
            return 0.0
        return statistics.median(self._drafter_times) / self._step_seconds

    @staticmethod
    def _ewma(old: float | None, sample: float, alpha: float = 0.1) -> float:
        if old is None:
            return sample
        # Idle gaps between requests are not steps: a sample is clipped to 4x the mean.
        return (1 - alpha) * old + alpha * min(sample, 4 * old)

    def _time_step(self) -> None:
        now = self._clock()
        if self._last_call is not None:
            step = max(0.0, now - self._last_call - self._last_drafter_seconds)
            self._step_seconds = self._ewma(self._step_seconds, step)
        self._last_call = now
        self._last_drafter_seconds = 0.0

    def start_request(self, req_id: str, prompt_ids: Sequence[int], namespace: str = "") -> None:
        self.suffix.start_request(req_id, prompt_ids, namespace)
        self.drafter.start_request(req_id, prompt_ids, namespace)

    def _calibrate(self, accepted: float, score: float) -> None:
        self._suffix_accepted = self._suffix_accepted * self._decay + accepted
        self._suffix_scored = self._suffix_scored * self._decay + score

    def accept_tokens(self, req_id: str, token_ids: Sequence[int]) -> None:
        shadow = self._shadow.pop(req_id, None)
        if shadow is not None and token_ids:
            matched = 0
            for drafted, produced in zip(shadow.token_ids, token_ids, strict=False):
                if drafted != produced:
                    break
                matched += 1
            self._calibrate(matched, shadow.score)
        self.suffix.accept_tokens(req_id, token_ids)
        self.drafter.accept_tokens(req_id, token_ids)

    def record(self, req_id: str, draft: Draft, num_accepted: int) -> None:
        if draft.source == SUFFIX:
            self._calibrate(num_accepted, draft.score)
        self.suffix.record(req_id, draft, num_accepted)
        self.drafter.record(req_id, draft, num_accepted)

    def stop_request(self, req_id: str) -> None:
        self._shadow.pop(req_id, None)
        self.suffix.stop_request(req_id)
        self.drafter.stop_request(req_id)

    def propose(self, batch: Sequence[ProposeRequest]) -> list[Draft | None]:
        self._time_step()
        suffix_drafts = self.suffix.propose(batch)
        calibration = self.suffix_calibration
        out: list[Draft | None] = list(suffix_drafts)
        for_drafter: list[int] = []
        gain = 0.0  # expected extra accepted tokens if the drafter runs for for_drafter
        tokens = 0.0  # expected tokens this step without the drafter
        chosen: list[int] = []  # reproducible requests the drafter wins outright
        for i, (r, s) in enumerate(zip(batch, suffix_drafts, strict=True)):
            if r.reproducible:
                # No shared or timed state: Arctic Inference's fixed rule, suffix when its
                # (uncalibrated) score reaches the drafter's draft length.
                if s is None or s.score < min(self.drafter.num_tokens, r.max_tokens):
                    chosen.append(i)
                continue
            suffix_expected = 0.0 if s is None else s.score * calibration
            drafter_expected = self.drafter.expected_accepted(r.req_id, r.max_tokens)
            tokens += 1.0 + suffix_expected
            if s is None or suffix_expected < drafter_expected:
                for_drafter.append(i)
                gain += drafter_expected - suffix_expected
        if for_drafter and gain <= self.drafter_cost * tokens:
            self.drafter_skipped += 1
            self._skipped_in_a_row += 1
            if self._skipped_in_a_row >= self._probe_every:
                self.drafter_probes += 1
            else:
                for_drafter = []
        if for_drafter:
            self._skipped_in_a_row = 0
        for_drafter = sorted(for_drafter + chosen)
        for i in for_drafter:
            s = suffix_drafts[i]
            out[i] = None
            if s is not None:
                self._shadow[batch[i].req_id] = s
        self.wins[SUFFIX] += sum(d is not None for d in out)
        if for_drafter:
            start = self._clock()
            drafted = self.drafter.propose([batch[i] for i in for_drafter])
            self._last_drafter_seconds = self._clock() - start
            self._drafter_times.append(self._last_drafter_seconds)
            for i, d in zip(for_drafter, drafted, strict=True):
                out[i] = d
                if d is not None:
                    self.wins[DRAFTER] += 1
        return out
