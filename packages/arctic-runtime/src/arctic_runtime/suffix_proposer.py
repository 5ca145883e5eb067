"""Model-free drafts from arctic-suffix: the request's own tree plus the global output tree."""

from __future__ import annotations

from collections.abc import Sequence

from arctic_suffix import SuffixCache, SuffixTree

from .draft import SUFFIX, Draft
from .proposer import ProposeRequest


class SuffixProposer:
    """Suffix decoding (arXiv 2411.04975) over one `arctic_suffix.SuffixCache`.

    The score of a draft is the cache's own estimate of its expected accepted length (sum
    of path probabilities), which the hybrid compares with the drafter's.
    """

    name = "suffix"
    needs_hidden_states = False

    def __init__(
        self,
        *,
        max_depth: int = 64,
        max_spec_tokens: int = 16,
        max_spec_factor: float = 1.0,
        max_spec_offset: float = 0.0,
        min_token_prob: float = 0.1,
        max_cached_requests: int | None = 10000,
        max_cached_tokens: int | None = None,
        eviction: str = "lru",
        use_tree: bool = False,
        adaptive: bool = False,
        extend: bool = True,
        cache: SuffixCache | None = None,
    ) -> None:
        if max_spec_tokens < 1:
            raise ValueError(f"max_spec_tokens must be >= 1, got {max_spec_tokens}")
        self.max_spec_tokens = max_spec_tokens
        self.max_spec_factor = max_spec_factor
        self.max_spec_offset = max_spec_offset
        self.min_token_prob = min_token_prob
        self.use_tree = use_tree
        self.adaptive = adaptive
        self.extend = extend
        self.cache = cache or SuffixCache(
            max_depth=max_depth,
            max_cached_requests=max_cached_requests,
            max_cached_tokens=max_cached_tokens,
            eviction=eviction,
        )
        # The C++ core validates the knobs; one speculate on a scratch tree makes a bad value
        # fail at construction, not on the first serving step.
        SuffixTree(2).speculate(
            [0],
            max_spec_tokens=1,
            max_spec_factor=max_spec_factor,
            max_spec_offset=max_spec_offset,
            min_token_prob=min_token_prob,
        )

    def _speculate(self, req_id: str, max_tokens: int) -> Draft | None:
        d = self.cache.speculate(
            req_id,
            max_spec_tokens=min(max_tokens, self.max_spec_tokens),
            max_spec_factor=self.max_spec_factor,
            max_spec_offset=self.max_spec_offset,
            min_token_prob=self.min_token_prob,
            tree=self.use_tree,
            adaptive=self.adaptive,
            extend=self.extend and not self.use_tree,
        )
        if len(d) == 0:
            return None
        parents = tuple(d.parents)
        is_path = all(p == i - 1 for i, p in enumerate(parents))
        return Draft(
            tuple(d.token_ids), SUFFIX, d.score, None if is_path else parents, None, d.match_len
        )

    def start_request(self, req_id: str, prompt_ids: Sequence[int], namespace: str = "") -> None:
        self.cache.start_request(req_id, list(prompt_ids), namespace=namespace)

    def accept_tokens(self, req_id: str, token_ids: Sequence[int]) -> None:
        if token_ids:
            self.cache.add_tokens(req_id, list(token_ids))

    def record(self, req_id: str, draft: Draft, num_accepted: int) -> None:
        # The cache learns from the tokens themselves (accept_tokens); nothing to update.
        return None

    def stop_request(self, req_id: str) -> None:
        self.cache.stop_request(req_id)

    def propose(self, batch: Sequence[ProposeRequest]) -> list[Draft | None]:
        return [self._speculate(r.req_id, r.max_tokens) for r in batch]
