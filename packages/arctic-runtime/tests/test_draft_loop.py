"""DraftLoop: static buffers and padding give the drafter's own greedy drafts, eagerly,
compiled (torch.compile on the CPU), FP8-quantized, and (on a GPU) as replayed CUDA graphs."""

from __future__ import annotations

import pytest
import torch

from arctic_drafters import (
    LSTMSpeculatorConfig,
    MLPSpeculatorConfig,
    Speculator,
    SpeculatorConfig,
    build_speculator,
)
from arctic_kernels import quantize_drafter
from arctic_runtime.draft_loop import DraftLoop, default_batch_sizes
from arctic_runtime.drafter_proposer import DrafterProposer
from arctic_runtime.proposer import ProposeRequest

CONFIGS: dict[str, SpeculatorConfig] = {
    "mlp": MLPSpeculatorConfig(vocab_size=61, hidden_size=20, inner_dim=12, n_predict=4),
    "lstm": LSTMSpeculatorConfig(61, 20, 12, n_predict=4),
}


def _speculator(kind: str, device: str = "cpu") -> Speculator:
    torch.manual_seed(0)
    return build_speculator(CONFIGS[kind]).to(device).eval()


def _inputs(
    batch: int, seed: int = 0, device: str = "cpu", hidden_size: int = 20
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, hidden_size, generator=g) * 2
    tokens = torch.randint(0, 61, (batch,), generator=g)
    return hidden.to(device), tokens.to(device)


def test_default_batch_sizes() -> None:
    assert default_batch_sizes(1) == [1]
    assert default_batch_sizes(6) == [1, 2, 4, 6]
    assert default_batch_sizes(8) == [1, 2, 4, 8]
    assert default_batch_sizes(30) == [1, 2, 4, 8, 16, 24, 30]
    assert default_batch_sizes(32) == [1, 2, 4, 8, 16, 24, 32]


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_eager_equals_propose_at_padded_and_unpadded_sizes(kind: str) -> None:
    spec = _speculator(kind)
    loop = DraftLoop(spec, num_tokens=3, max_batch_size=16)
    assert loop.mode == "eager"
    for batch in (1, 2, 3, 5, 8, 11, 16):
        hidden, tokens = _inputs(batch, seed=batch)
        out = loop.run(hidden, tokens)
        assert out.shape == (batch, 3) and out.dtype == torch.long
        assert torch.equal(out, spec.propose(hidden, tokens, 3))


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_padding_rows_do_not_change_results(kind: str) -> None:
    spec = _speculator(kind)
    # One padded size: every batch runs as 8 rows, the rest zero padding.
    padded = DraftLoop(spec, num_tokens=4, max_batch_size=8, batch_sizes=[8])
    exact = DraftLoop(spec, num_tokens=4, max_batch_size=8, batch_sizes=list(range(1, 9)))
    assert padded.padded_size(3) == 8 and exact.padded_size(3) == 3
    big_hidden, big_tokens = _inputs(8, seed=1)
    padded.run(big_hidden, big_tokens)  # leaves 8 real rows in the static buffers
    hidden, tokens = _inputs(3, seed=2)
    expected = spec.propose(hidden, tokens, 4)
    assert torch.equal(padded.run(hidden, tokens), expected)
    assert torch.equal(exact.run(hidden, tokens), expected)


def test_loop_stands_in_for_propose_in_the_drafter_proposer() -> None:
    spec = _speculator("lstm")
    loop = DraftLoop(spec, num_tokens=4, max_batch_size=8)
    hidden, tokens = _inputs(5, seed=6)
    for n in (1, 2, 4):
        assert torch.equal(loop(hidden, tokens, n), spec.propose(hidden, tokens, n))
    with pytest.raises(ValueError, match=r"n must be in 1\.\.4"):
        loop(hidden, tokens, 5)
    proposer = DrafterProposer(spec, num_tokens=3, draft_runner=loop)
    batch = [
        ProposeRequest(f"r{i}", max_tokens=3, last_token=int(tokens[i]), hidden_state=hidden[i])
        for i in range(5)
    ]
    for i in range(5):
        proposer.start_request(f"r{i}", [1, 2])
    drafts = proposer.propose(batch)
    expected = spec.propose(hidden, tokens, 3).tolist()
    assert [d.token_ids if d else None for d in drafts] == [tuple(row) for row in expected]


def test_result_is_not_the_static_buffer() -> None:
    spec = _speculator("mlp")
    loop = DraftLoop(spec, num_tokens=2, max_batch_size=4)
    first_inputs = _inputs(4, seed=3)
    first = loop.run(*first_inputs)
    kept = first.clone()
    loop.run(*_inputs(4, seed=4))
    assert torch.equal(first, kept)


def test_loop_body_compiles_without_graph_breaks() -> None:
    """fullgraph=True fails on any graph break (a host sync, a data-dependent branch): the
    property a CUDA graph capture of the same body needs. Graph breaks are found by dynamo's
    tracing alone; the "eager" backend skips inductor's code generation (~40 s cold here)."""
    torch._dynamo.reset()
    spec = _speculator("lstm")
    loop = DraftLoop(spec, num_tokens=4, max_batch_size=4)
    hidden, tokens = _inputs(4, seed=5)
    compiled = torch.compile(loop.draft, fullgraph=True, dynamic=False, backend="eager")
    with torch.no_grad():
        assert torch.equal(compiled(hidden, tokens), spec.propose(hidden, tokens, 4))
    torch._dynamo.reset()


@pytest.mark.slow
def test_compiled_loop_equals_propose_and_compiles_once_for_all_sizes() -> None:
    """Inductor's C++ code for the CPU (~15 s cold). Batch 1 and one dynamic-shape program
    for every size >= 2, compiled at capture(); a second loop over another speculator of
    the same architecture reuses them (its weights are the program's inputs, not constants)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    for kind in sorted(CONFIGS):
        spec = _speculator(kind)
        loop = DraftLoop(spec, num_tokens=3, max_batch_size=8, compile=True)
        assert loop.mode == "compiled" and loop.captured_sizes == ()
        loop.capture()
        assert loop.captured_sizes == (1, 2, 4, 8)
        for batch in (1, 2, 3, 8):
            hidden, tokens = _inputs(batch, seed=30 + batch)
            assert torch.equal(loop.run(hidden, tokens), spec.propose(hidden, tokens, 3))
    graphs = counters["stats"]["unique_graphs"]
    assert graphs == 4, counters["stats"]  # (batch 1, batch >= 2) x (MLP, LSTM)
    torch.manual_seed(7)
    other = build_speculator(CONFIGS["lstm"]).eval()  # same architecture, other weights
    again = DraftLoop(other, num_tokens=3, max_batch_size=8, compile=True)
    again.capture()
    hidden, tokens = _inputs(5, seed=40)
    assert torch.equal(again.run(hidden, tokens), other.propose(hidden, tokens, 3))
    assert counters["stats"]["unique_graphs"] == graphs
    torch._dynamo.reset()


@pytest.mark.slow
def test_a_branch_on_the_batch_size_is_compiled_at_capture_not_while_serving() -> None:
    """int8 layers take the int8 kernel up to kernel_max_rows rows and the dequantized
    weight above: two programs for sizes >= 2. capture() runs every padded size, so serving
    any batch afterwards compiles nothing (measured before: a 3.6 s stall on the first
    batch of 8)."""
    from torch._dynamo.utils import counters

    from arctic_kernels import Int8Linear, quantize_drafter_int8

    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    spec = build_speculator(LSTMSpeculatorConfig(61, 32, 16, n_predict=3)).eval()
    quantize_drafter_int8(spec)  # in_features 32 / 16: the kernel runs (multiples of 16)
    assert {m.matmul_backend for m in spec.modules() if isinstance(m, Int8Linear)} == {
        "int8pack_mm"
    }
    loop = DraftLoop(spec, num_tokens=3, max_batch_size=8, compile=True)
    loop.capture()
    graphs = counters["stats"]["unique_graphs"]
    assert graphs == 3, counters["stats"]  # batch 1, 2..4 (kernel), 5..8 (dense)
    for batch in (1, 2, 3, 4, 5, 6, 8, 2):
        hidden, tokens = _inputs(batch, seed=50 + batch, hidden_size=32)
        assert torch.equal(loop.run(hidden, tokens), spec.propose(hidden, tokens, 3))
    assert counters["stats"]["unique_graphs"] == graphs
    torch._dynamo.reset()


def test_a_failed_compile_falls_back_to_eager_with_the_same_drafts(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        def fail(*a: object, **k: object) -> object:
            raise RuntimeError("no C++ compiler")

        return fail

    monkeypatch.setattr(torch, "compile", broken)
    spec = _speculator("mlp")
    loop = DraftLoop(spec, num_tokens=2, max_batch_size=4, compile=True)
    with caplog.at_level("WARNING", logger="arctic_runtime"):
        loop.capture()
    assert loop.mode == "eager" and loop.captured_sizes == ()
    assert "compiling the draft loop failed (RuntimeError: no C++ compiler)" in caplog.text
    hidden, tokens = _inputs(3, seed=8)
    assert torch.equal(loop.run(hidden, tokens), spec.propose(hidden, tokens, 2))


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_fp8_quantized_speculator_eager_equals_propose(kind: str) -> None:
    spec = _speculator(kind)
    report = quantize_drafter(spec)
    assert report.replaced
    loop = DraftLoop(spec, num_tokens=3, max_batch_size=8)
    for batch in (1, 3, 8):
        hidden, tokens = _inputs(batch, seed=10 + batch)
        assert torch.equal(loop.run(hidden, tokens), spec.propose(hidden, tokens, 3))


def test_bad_arguments_are_rejected() -> None:
    spec = _speculator("mlp")
    with pytest.raises(ValueError, match=r"num_tokens must be in 1\.\.4"):
        DraftLoop(spec, num_tokens=5)
    with pytest.raises(ValueError, match="max_batch_size must be >= 1"):
        DraftLoop(spec, num_tokens=2, max_batch_size=0)
    with pytest.raises(ValueError, match=r"batch_sizes must be ints in 1\.\.max_batch_size=4"):
        DraftLoop(spec, num_tokens=2, max_batch_size=4, batch_sizes=[2, 6])
    with pytest.raises(ValueError, match="needs the speculator on a CUDA device"):
        DraftLoop(spec, num_tokens=2, use_cuda_graph=True)
    loop = DraftLoop(spec, num_tokens=2, max_batch_size=4)
    hidden, tokens = _inputs(5)
    with pytest.raises(ValueError, match="batch of 5 exceeds max_batch_size=4"):
        loop.run(hidden, tokens)
    with pytest.raises(ValueError, match=r"hidden_states must be \(B, 20\), got \(3, 19\)"):
        loop.run(hidden[:3, :19], tokens[:3])
    with pytest.raises(ValueError, match=r"last_tokens must be \(3,\)"):
        loop.run(hidden[:3], tokens[:2])
    with pytest.raises(ValueError, match="no rows"):
        loop.run(hidden[:0], tokens[:0])
    with pytest.raises(RuntimeError, match="use_cuda_graph=True or compile=True"):
        loop.capture()
    with pytest.raises(ValueError, match="exclude each other"):
        DraftLoop(spec, num_tokens=2, use_cuda_graph=True, compile=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_cuda_graph_replay_equals_eager_and_reuses_the_graph(kind: str) -> None:
    spec = _speculator(kind, device="cuda")
    graphed = DraftLoop(spec, num_tokens=4, max_batch_size=16)
    eager = DraftLoop(spec, num_tokens=4, max_batch_size=16, use_cuda_graph=False)
    assert graphed.mode == "cuda_graph" and eager.mode == "eager"
    graphed.capture([16])
    assert list(graphed.captured_sizes) == [16]
    for batch in (3, 4, 3, 11):
        hidden, tokens = _inputs(batch, seed=20 + batch, device="cuda")
        assert torch.equal(graphed.run(hidden, tokens), eager.run(hidden, tokens))
        assert torch.equal(graphed.run(hidden, tokens), spec.propose(hidden, tokens, 4))
    assert list(graphed.captured_sizes) == [4, 16]
    graph_4 = graphed.graph(4)
    # A second batch padding to 4, with new inputs: the same graph replays on them.
    hidden, tokens = _inputs(4, seed=99, device="cuda")
    assert torch.equal(graphed.run(hidden, tokens), eager.run(hidden, tokens))
    assert graphed.graph(4) is graph_4 and list(graphed.captured_sizes) == [4, 16]
