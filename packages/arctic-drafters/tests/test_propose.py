"""Draft loop behaviour: batching, prefixes, top-k, teacher forcing and graph capture."""

from __future__ import annotations

import pytest
import torch

from arctic_drafters import build_speculator


def _inputs(config, batch=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, config.hidden_size, generator=g) * 2,
        torch.randint(0, config.vocab_size, (batch,), generator=g),
    )


def test_batched_equals_one_row_at_a_time(small_config):
    model = build_speculator(small_config).eval()
    hidden, last = _inputs(small_config)
    batched = model.propose(hidden, last, small_config.n_predict)
    rows = torch.cat(
        [
            model.propose(hidden[i : i + 1], last[i : i + 1], small_config.n_predict)
            for i in range(6)
        ]
    )
    assert torch.equal(batched, rows)
    assert batched.shape == (6, small_config.n_predict) and batched.dtype == torch.long


def test_shorter_draft_is_a_prefix(small_config):
    model = build_speculator(small_config).eval()
    hidden, last = _inputs(small_config)
    full = model.propose(hidden, last, small_config.n_predict)
    for n in range(1, small_config.n_predict):
        assert torch.equal(model.propose(hidden, last, n), full[:, :n])


def test_greedy_draft_is_teacher_forcing_on_its_own_tokens(small_config):
    model = build_speculator(small_config).eval()
    hidden, last = _inputs(small_config)
    draft = model.propose(hidden, last, small_config.n_predict)
    fed = torch.cat([last[:, None], draft[:, :-1]], 1)
    with torch.no_grad():
        assert torch.equal(model(hidden, fed).argmax(-1).T, draft)


def test_topk_is_sorted_and_starts_with_the_greedy_chain(small_config):
    model = build_speculator(small_config).eval()
    hidden, last = _inputs(small_config)
    n = small_config.n_predict
    tokens, logp = model.propose_topk(hidden, last, n, k=5)
    assert tokens.shape == logp.shape == (6, n, 5)
    assert torch.equal(tokens[:, :, 0], model.propose(hidden, last, n))
    assert (logp[..., :-1] >= logp[..., 1:]).all() and (logp <= 0).all()
    for b in range(6):
        for i in range(n):
            assert len(set(tokens[b, i].tolist())) == 5


def test_bad_arguments_are_rejected(small_config):
    model = build_speculator(small_config)
    hidden, last = _inputs(small_config)
    with pytest.raises(ValueError, match=r"n must be in 1\.\.n_predict"):
        model.propose(hidden, last, small_config.n_predict + 1)
    with pytest.raises(ValueError, match="hidden_states must be"):
        model.propose(hidden[:, :-1], last, 1)
    with pytest.raises(ValueError, match="batch sizes differ"):
        model.propose(hidden, last[:-1], 1)
    with pytest.raises(ValueError, match="k must be in"):
        model.propose_topk(hidden, last, 1, k=0)


def test_draft_loop_compiles_without_graph_breaks(small_config):
    """fullgraph=True fails on any graph break (host sync, data-dependent Python branch), so
    the draft loop can later be captured as one CUDA graph."""
    torch._dynamo.reset()
    model = build_speculator(small_config).eval()
    hidden, last = _inputs(small_config)
    n = small_config.n_predict
    compiled = torch.compile(model.propose, fullgraph=True, backend="eager")
    assert torch.equal(compiled(hidden, last, n), model.propose(hidden, last, n))
    compiled_topk = torch.compile(model.propose_topk, fullgraph=True, backend="eager")
    for a, b in zip(
        compiled_topk(hidden, last, n, 3), model.propose_topk(hidden, last, n, 3), strict=True
    ):
        assert torch.equal(a, b)
