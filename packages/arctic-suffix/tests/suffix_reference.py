"""A deliberately naive model of the semantics the C++ tree implements.

Counts are n-gram occurrence counts (n <= max_depth) over the stored sequences; a draft
starts at the longest context suffix (at most max_depth - 1 tokens) that occurs followed by
some token, walks the most frequent continuation (ties: smallest token id) while the path
probability stays >= min_token_prob (re-anchoring on the last max_depth // 2 tokens when a
path draft reaches max_depth), and stops at the anchor's cap
min(max_spec_tokens, int(factor * match_len + offset + 1e-6)).
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from dataclasses import dataclass, field


@dataclass
class RefDraft:
    token_ids: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    score: float = 0.0
    match_len: int = 0


def draft_cap(max_spec_tokens: int, factor: float, offset: float, match_len: int) -> int:
    cap = factor * match_len + offset + 1e-6
    if cap <= 0:
        return 0
    return max_spec_tokens if cap >= max_spec_tokens else int(cap)


class RefTree:
    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self.seqs: dict[int, list[int]] = {}
        self._counts: Counter[tuple[int, ...]] | None = None
        self._kids: dict[tuple[int, ...], dict[int, int]] = {}

    def extend(self, seq_id: int, tokens: list[int]) -> None:
        self.seqs.setdefault(seq_id, []).extend(tokens)
        self._counts = None

    def remove(self, seq_id: int) -> None:
        del self.seqs[seq_id]
        self._counts = None

    def _index(self) -> Counter[tuple[int, ...]]:
        if self._counts is None:
            counts: Counter[tuple[int, ...]] = Counter()
            for seq in self.seqs.values():
                counts[()] += len(seq)
                for i in range(len(seq)):
                    for n in range(1, min(self.max_depth, len(seq) - i) + 1):
                        counts[tuple(seq[i : i + n])] += 1
            kids: dict[tuple[int, ...], dict[int, int]] = defaultdict(dict)
            for gram, c in counts.items():
                if gram:
                    kids[gram[:-1]][gram[-1]] = c
            self._counts, self._kids = counts, dict(kids)
        return self._counts

    def count(self, gram: list[int]) -> int:
        return self._index().get(tuple(gram), 0)

    def children(self, s: tuple[int, ...]) -> list[tuple[int, int]]:
        self._index()
        kids = self._kids.get(s, {})
        return sorted(((t, c) for t, c in kids.items()), key=lambda tc: (-tc[1], tc[0]))

    def match(self, ctx: list[int]) -> int:
        for m in range(min(len(ctx), self.max_depth - 1), 0, -1):
            if self.children(tuple(ctx[len(ctx) - m :])):
                return m
        return 0

    def speculate(
        self,
        ctx: list[int],
        max_spec_tokens: int | None = None,
        max_spec_factor: float = 1.0,
        max_spec_offset: float = 0.0,
        min_token_prob: float = 0.1,
        tree: bool = False,
        cap: int | None = None,
        discount: int = 0,
    ) -> RefDraft:
        k = self.max_depth if max_spec_tokens is None else max_spec_tokens
        m = self.match(ctx)
        if cap is None:
            cap = draft_cap(k, max_spec_factor, max_spec_offset, m)
        d = RefDraft(match_len=m)
        if m == 0 or cap <= 0:
            return d
        start = tuple(ctx[len(ctx) - m :])
        counts = self._index()
        if not tree:
            s, prob = start, 1.0
            anchor = max(1, self.max_depth // 2)
            while len(d.token_ids) < cap:
                kids = self.children(s)
                if not kids and len(s) == self.max_depth and anchor < self.max_depth:
                    s = s[-anchor:]  # the tree is truncated here, the data is not
                    kids = self.children(s)
                if not kids:
                    break
                t, c = kids[0]
                q = prob * (c / (counts[s] - (0 if d.token_ids else discount)))
                if q < min_token_prob:
                    break
                prob, s = q, (*s, t)
                d.parents.append(len(d.token_ids) - 1)
                d.token_ids.append(t)
                d.probs.append(prob)
                d.score += prob
            return d
        heap: list[tuple[float, int, tuple[int, ...], int, int]] = []
        order = 0

        def push(s: tuple[int, ...], prob: float, parent: int, disc: int = 0) -> None:
            nonlocal order
            for t, c in self.children(s):
                q = prob * (c / (counts[s] - disc))
                if q < min_token_prob:
                    break
                heapq.heappush(heap, (-q, order, (*s, t), t, parent))
                order += 1

        push(start, 1.0, -1, discount)
        while heap and len(d.token_ids) < cap:
            negq, _, s, t, parent = heapq.heappop(heap)
            idx = len(d.token_ids)
            d.token_ids.append(t)
            d.parents.append(parent)
            d.probs.append(-negq)
            d.score += -negq
            push(s, -negq, idx)
        return d
