"""Per request and per step, draft from whichever source is expected to earn more tokens.

Arctic Inference takes the suffix draft when its score >= the model's n_predict, a fixed
threshold. Here both sides are estimates of the same quantity, the expected number of
accepted tokens: the suffix cache's score (calibrated by how suffix drafts actually fared)
and the drafter's running per-position acceptance for this request. The larger one wins.
"""

from __future__ import annotations

from collections.abc import Sequence

from .draft import DRAFTER, SUFFIX, Draft
from .drafter_proposer import DrafterProposer
from .proposer import ProposeRequest
from .suffix_proposer import SuffixProposer


class HybridProposer:
    """Suffix + drafter; counts which source won in ``wins``."""

    name = "hybrid"
    needs_hidden_states = True

    def __init__(
        self, suffix: SuffixProposer, drafter: DrafterProposer, *, calibration_decay: float = 0.98
    ) -> None:
        if not 0.0 < calibration_decay <= 1.0:
            raise ValueError(f"calibration_decay must be in (0, 1], got {calibration_decay}")
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
        suffix_drafts = self.suffix.propose(batch)
        calibration = self.suffix_calibration
        out: list[Draft | None] = []
        for_drafter: list[int] = []
        for i, (r, s) in enumerate(zip(batch, suffix_drafts, strict=True)):
            suffix_expected = 0.0 if s is None else s.score * calibration
            drafter_expected = self.drafter.expected_accepted(r.req_id, r.max_tokens)
            if s is not None and suffix_expected >= drafter_expected:
                out.append(s)  # raw score kept: record() calibrates against it
                self.wins[SUFFIX] += 1
            else:
                out.append(None)
                for_drafter.append(i)
                if s is not None:
                    self._shadow[r.req_id] = s
        if for_drafter:
            drafted = self.drafter.propose([batch[i] for i in for_drafter])
            for i, d in zip(for_drafter, drafted, strict=True):
                out[i] = d
                if d is not None:
                    self.wins[DRAFTER] += 1
        return out
