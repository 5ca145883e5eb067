from __future__ import annotations

import pytest
import torch

from arctic_drafters import LSTMSpeculatorConfig, MLPSpeculatorConfig, build_speculator
from arctic_runtime.draft import DRAFTER, SUFFIX, Draft
from arctic_runtime.drafter_proposer import DrafterProposer
from arctic_runtime.exceptions import DraftShapeError
from arctic_runtime.proposer import Proposer, ProposeRequest
from arctic_runtime.suffix_proposer import SuffixProposer


def _speculator(kind: str):
    torch.manual_seed(0)
    cfg = (MLPSpeculatorConfig if kind == "mlp" else LSTMSpeculatorConfig)(61, 20, 12)
    return build_speculator(cfg).eval()


def test_draft_validates_shapes():
    with pytest.raises(DraftShapeError, match="parents"):
        Draft((1, 2), SUFFIX, 1.0, parents=(-1,))
    with pytest.raises(DraftShapeError, match=r"parents\[1\] = 1"):
        Draft((1, 2), SUFFIX, 1.0, parents=(-1, 1))
    with pytest.raises(DraftShapeError, match="probs"):
        Draft((1, 2), SUFFIX, 1.0, probs=torch.zeros(3, 5))
    tree = Draft((1, 2, 3), SUFFIX, 2.5, parents=(-1, -1, 0))
    assert tree.is_tree and not Draft((1, 2), SUFFIX, 1.0, parents=(-1, 0)).is_tree
    cut = tree.truncated(2)
    assert cut.token_ids == (1, 2) and cut.parents == (-1, -1) and cut.score == 2.0


def test_suffix_proposer_drafts_the_repeated_continuation():
    p = SuffixProposer(max_spec_tokens=8)
    assert isinstance(p, Proposer)
    p.start_request("a", [5, 6, 7, 8, 9, 5, 6])
    [d] = p.propose([ProposeRequest("a", max_tokens=3, last_token=6)])
    # A 2-token match drafts at most 2 tokens (max_spec_factor 1); the extension re-matches
    # context + draft ("5 6 7 8", 4 tokens) and goes on within max_tokens.
    assert d is not None and d.token_ids == (7, 8, 9) and d.source == SUFFIX and d.score > 0
    [d] = SuffixProposer(max_spec_tokens=8, extend=False, cache=p.cache).propose(
        [ProposeRequest("a", max_tokens=3, last_token=6)]
    )
    assert d is not None and d.token_ids == (7, 8)
    p.accept_tokens("a", [7, 8, 9, 5])
    [d] = p.propose([ProposeRequest("a", max_tokens=2, last_token=5)])
    assert d is not None and d.token_ids == (6, 7)
    p.stop_request("a")
    # The finished output now serves a new request through the global tree.
    p.start_request("b", [1, 2, 3, 7])
    [d] = p.propose([ProposeRequest("b", max_tokens=2, last_token=7)])
    assert d is not None and d.token_ids == (8, 9)


def test_suffix_proposer_returns_none_without_a_match():
    p = SuffixProposer()
    p.start_request("a", [1, 2, 3, 4])
    assert p.propose([ProposeRequest("a", max_tokens=4, last_token=4)]) == [None]


def test_suffix_proposer_rejects_bad_options():
    with pytest.raises(ValueError, match="max_spec_tokens"):
        SuffixProposer(max_spec_tokens=0)
    with pytest.raises(ValueError, match="min_token_prob"):
        SuffixProposer(min_token_prob=1.5)


@pytest.mark.parametrize("kind", ["mlp", "lstm"])
def test_drafter_proposer_matches_speculator(kind):
    spec = _speculator(kind)
    p = DrafterProposer(spec)
    hidden = torch.randn(3, 20)
    last = torch.tensor([1, 2, 3])
    batch = [
        ProposeRequest(f"r{i}", max_tokens=m, last_token=int(last[i]), hidden_state=hidden[i])
        for i, m in enumerate([3, 1, 2])
    ]
    for r in batch:
        p.start_request(r.req_id, [0])
    drafts = p.propose(batch)
    want = spec.propose(hidden, last, 3).tolist()
    for d, w, m in zip(drafts, want, [3, 1, 2], strict=True):
        assert d is not None and d.source == DRAFTER
        assert list(d.token_ids) == w[:m]


def test_drafter_proposer_learns_per_request_acceptance():
    p = DrafterProposer(_speculator("mlp"))
    p.start_request("good", [0])
    p.start_request("bad", [0])
    before = p.expected_accepted("good", 3)
    for _ in range(30):
        p.record("good", Draft.path([1, 2, 3], DRAFTER, 1.0), 3)
        p.record("bad", Draft.path([1, 2, 3], DRAFTER, 1.0), 0)
    assert p.expected_accepted("good", 3) > before > p.expected_accepted("bad", 3)
    assert p.expected_accepted("good", 3) > 2.0
    # A suffix draft's feedback does not move the drafter's estimate.
    e = p.expected_accepted("bad", 3)
    p.record("bad", Draft.path([1, 2, 3], SUFFIX, 1.0), 3)
    assert p.expected_accepted("bad", 3) == e


def test_drafter_proposer_errors():
    spec = _speculator("mlp")
    with pytest.raises(ValueError, match=r"num_tokens must be in 1\.\.n_predict=3"):
        DrafterProposer(spec, num_tokens=4)
    p = DrafterProposer(spec)
    with pytest.raises(ValueError, match=r"'x'.*hidden state"):
        p.propose([ProposeRequest("x", 2, 1)])


def test_fp8_drafter_proposer_runs():
    from arctic_kernels import Fp8Linear
    from arctic_runtime import build_drafter

    build = build_drafter(_speculator("lstm"), weights="fp8", compile=False)
    p = build.proposer
    assert any(isinstance(m, Fp8Linear) for m in build.speculator.modules())
    assert build.mode == "eager" and "round-to-nearest" in build.weights
    [d] = p.propose([ProposeRequest("x", 3, 1, torch.randn(20))])
    assert d is not None and len(d) == 3


def test_drafter_proposer_samples_sampled_requests_and_returns_their_q():
    spec = _speculator("lstm")
    p = DrafterProposer(spec)
    hidden, last = torch.randn(2, 20), torch.tensor([1, 2])
    batch = [
        ProposeRequest("greedy", 3, 1, hidden[0]),
        ProposeRequest("sampled", 2, 2, hidden[1], temperature=0.8,
                       generator=torch.Generator().manual_seed(5)),
    ]  # fmt: skip
    for r in batch:
        p.start_request(r.req_id, [0])
    greedy, sampled = p.propose(batch)
    assert greedy is not None and greedy.probs is None  # deterministic: one-hot implied
    assert list(greedy.token_ids) == spec.propose(hidden[:1], last[:1], 3)[0].tolist()
    assert sampled is not None and sampled.probs is not None
    assert sampled.probs.shape == (2, 61) and len(sampled) == 2
    q_of_draft = sampled.probs.gather(1, torch.tensor(sampled.token_ids).unsqueeze(1))
    assert bool((q_of_draft > 0).all())
    # The same seed, alone in its batch: the same draft and q.
    [alone] = p.propose([ProposeRequest("sampled", 2, 2, hidden[1], temperature=0.8,
                                        generator=torch.Generator().manual_seed(5))])  # fmt: skip
    assert alone is not None and alone.token_ids == sampled.token_ids
    assert alone.probs is not None and torch.allclose(alone.probs, sampled.probs)


def test_a_seeded_sampled_request_drafts_as_if_alone_whatever_the_batch():
    """int8 heads (and any batch-size-dependent kernel) must not make a reproducible
    request's sampled draft depend on its neighbours: it is drafted in a call of its own."""
    spec = _speculator("mlp")
    p = DrafterProposer(spec)
    calls: list[int] = []
    real = spec.propose_sampled

    def counting(hidden, *args, **kwargs):
        calls.append(hidden.shape[0])
        return real(hidden, *args, **kwargs)

    spec.propose_sampled = counting  # type: ignore[method-assign]
    hidden = torch.randn(6, 20)
    batch = [
        ProposeRequest(f"r{i}", 3, i, hidden[i], reproducible=i == 2, temperature=1.0,
                       generator=torch.Generator().manual_seed(i))
        for i in range(6)
    ]  # fmt: skip
    for r in batch:
        p.start_request(r.req_id, [0])
    drafts = p.propose(batch)
    assert sorted(calls) == [1, 5]  # the seeded one alone, the others together
    assert all(d is not None and d.probs is not None for d in drafts)
