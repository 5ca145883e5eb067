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


def _tiny_speculator(kind: str):
    from arctic_drafters import LSTMSpeculatorConfig, MLPSpeculatorConfig, build_speculator

    torch.manual_seed(0)
    config = (MLPSpeculatorConfig if kind == "mlp" else LSTMSpeculatorConfig)(
        vocab_size=11, hidden_size=8, inner_dim=8, n_predict=3
    )
    return build_speculator(config).eval()


@pytest.mark.parametrize("kind", ["mlp", "lstm"])
def test_sampled_drafts_follow_the_softmax_at_the_requested_temperature(kind):
    spec = _tiny_speculator(kind)
    hidden = torch.randn(1, 8).expand(20000, 8).contiguous()
    last = torch.full((20000,), 3)
    temps = torch.full((20000,), 0.7)
    tokens, probs = spec.propose_sampled(hidden, last, 2, temps)
    assert tokens.shape == (20000, 2) and probs.shape == (20000, 2, 11)
    want = torch.softmax(spec.head_logits(0, spec.step(0, *spec.initial_state(hidden[:1]),
                                          last[:1])[0]).float() / 0.7, -1)[0]  # fmt: skip
    assert torch.allclose(probs[0, 0], want, atol=1e-6)
    freq = torch.bincount(tokens[:, 0], minlength=11).float() / 20000
    assert torch.allclose(freq, want, atol=0.015)  # ~4 sigma at 20k draws
    # The second head reads the sampled first token: its q differs between rows.
    assert not torch.allclose(probs[tokens[:, 0] == tokens[0, 0], 1][0],
                              probs[tokens[:, 0] != tokens[0, 0], 1][0])  # fmt: skip
    picked = probs.gather(2, tokens.unsqueeze(2)).squeeze(2)
    assert bool((picked > 0).all())  # never a token of zero mass


def test_sampled_drafts_at_temperature_zero_are_greedy_with_one_hot_probs():
    spec = _tiny_speculator("lstm")
    hidden, last = torch.randn(4, 8), torch.tensor([1, 2, 3, 4])
    tokens, probs = spec.propose_sampled(hidden, last, 3, torch.zeros(4))
    assert torch.equal(tokens, spec.propose(hidden, last, 3))
    assert torch.equal(probs.argmax(-1), tokens) and torch.equal(probs.sum(-1), torch.ones(4, 3))


def test_sampled_drafts_reproduce_per_row_generator_whatever_the_batch():
    spec = _tiny_speculator("mlp")
    hidden, last = torch.randn(3, 8), torch.tensor([1, 2, 3])
    temps = torch.tensor([1.0, 1.0, 0.0])

    def row0_twice(batch: int, n: int) -> list[list[int]]:
        """Row 0's drafts over two calls (its generator carries over), row 0 drafting 1
        token while the batch's longest draft is n."""
        gens = [torch.Generator().manual_seed(42)] + [torch.Generator() for _ in range(batch - 1)]
        calls = [spec.propose_sampled(hidden[:batch], last[:batch], n, temps[:batch], gens)[0]
                 for _ in range(2)]  # fmt: skip
        return [c[0, :1].tolist() for c in calls]

    # Alone (n=1) or beside a row drafting 3: the same stream, call after call.
    assert row0_twice(1, 1) == row0_twice(3, 3)


def test_sampled_drafts_refuse_bad_inputs():
    spec = _tiny_speculator("mlp")
    hidden, last = torch.randn(2, 8), torch.tensor([1, 2])
    with pytest.raises(ValueError, match="temperatures must be >= 0"):
        spec.propose_sampled(hidden, last, 1, torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match=r"temperatures must be \(2,\)"):
        spec.propose_sampled(hidden, last, 1, torch.tensor([1.0]))
    with pytest.raises(ValueError, match="1 generators for a batch of 2"):
        spec.propose_sampled(hidden, last, 1, torch.ones(2), [None])
