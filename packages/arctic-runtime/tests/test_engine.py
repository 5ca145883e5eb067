"""The reference engine is lossless: token for token what ``model.generate`` gives greedily,
with no proposer, test oracles (partial acceptance, trees) and the real proposers, on the
bundled tiny Llama and its drafters."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from arctic_drafters import load_drafter
from arctic_runtime.draft import DRAFTER, SUFFIX, Draft
from arctic_runtime.drafter_proposer import DrafterProposer
from arctic_runtime.exceptions import DraftShapeError
from arctic_runtime.hybrid import HybridProposer
from arctic_runtime.proposer import ProposeRequest
from arctic_runtime.reference import HFTarget, generate
from arctic_runtime.suffix_proposer import SuffixProposer

transformers = pytest.importorskip("transformers")

MODELS = Path(__file__).resolve().parents[3] / "models"
TARGET = MODELS / "arctic-tiny-llama"
DRAFTERS = MODELS / "arctic-tiny-llama-drafters"
MAX_NEW = 48
Reference = dict[tuple[int, ...], list[int]]  # prompt ids -> model.generate's new tokens
# Code with repeated lines: the tiny model continues such text by copying, so suffix drafts
# get accepted.
PROMPTS = [
    "def add(a, b):\n    return a + b\n\ndef add(a, b):\n",
    "for i in range(10):\n    print(i)\nfor i in range(10):\n",
    "import os\nimport sys\nimport os\nimport sys\n",
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    # The tiny model's matmuls are too small to gain from threads; on a shared 2-core box
    # two threads spin against other processes (measured 3-10x slower per forward).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model() -> Any:
    return transformers.AutoModelForCausalLM.from_pretrained(TARGET, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return transformers.AutoTokenizer.from_pretrained(TARGET)


def _hf_generate(model: Any, prompt_ids: list[int], max_new_tokens: int, **kw: Any) -> list[int]:
    ids = torch.tensor([prompt_ids])
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=max_new_tokens,
        **kw,
    )
    return [int(t) for t in out[0, len(prompt_ids) :]]


@pytest.fixture(scope="module")
def prompt_ids(tokenizer: Any) -> list[list[int]]:
    return [list(tokenizer(p)["input_ids"]) for p in PROMPTS]


@pytest.fixture(scope="module")
def reference(model: Any, prompt_ids: list[list[int]]) -> Reference:
    """model.generate per prompt, without speculation; keyed by the prompt's ids."""
    return {tuple(p): _hf_generate(model, p, MAX_NEW) for p in prompt_ids}


def _expected(reference: Reference, prompts: list[list[int]], n: int) -> list[list[int]]:
    # Greedy decoding with a smaller max_new_tokens is a prefix of the longer run (no EOS
    # occurs in these references; test_eos_stops_like_generate covers EOS).
    return [reference[tuple(p)][:n] for p in prompts]


class OracleProposer:
    """Proposes the true greedy continuation, corrupting one token of every third draft so
    that acceptance is sometimes partial. With ``tree=True`` every true token has a wrong
    sibling, listed first unless ``true_first``: then the accepted path is never the
    tree's first nodes, which makes the engine drop cache entries from the middle."""

    name = "oracle"
    needs_hidden_states = False

    def __init__(
        self,
        reference: Reference,
        *,
        tree: bool = False,
        true_first: bool = False,
    ) -> None:
        self.reference = reference
        self.tree = tree
        self.true_first = true_first
        self.context: dict[str, list[int]] = {}
        self.generated: dict[str, list[int]] = {}
        self.calls: list[tuple[str, ...]] = []  # lifecycle, for the tests
        self.asks: list[ProposeRequest] = []
        self.records: list[tuple[str, Draft, int]] = []
        self.finished: dict[str, list[int]] = {}

    def start_request(self, req_id: str, prompt_ids: Sequence[int], namespace: str = "") -> None:
        self.calls.append(("start", req_id))
        self.context[req_id] = list(prompt_ids)
        self.generated[req_id] = []

    def accept_tokens(self, req_id: str, token_ids: Sequence[int]) -> None:
        self.generated[req_id].extend(token_ids)

    def record(self, req_id: str, draft: Draft, num_accepted: int) -> None:
        self.records.append((req_id, draft, num_accepted))

    def stop_request(self, req_id: str) -> None:
        self.calls.append(("stop", req_id))
        self.finished[req_id] = self.generated.pop(req_id)
        del self.context[req_id]

    def propose(self, batch: Sequence[ProposeRequest]) -> list[Draft | None]:
        self.calls.append(("propose", *(r.req_id for r in batch)))
        self.asks.extend(batch)
        return [self._draft(r) for r in batch]

    def _draft(self, r: ProposeRequest) -> Draft | None:
        done = self.generated[r.req_id]
        assert r.last_token == done[-1]
        truth = self.reference[tuple(self.context[r.req_id])][len(done) :]
        tokens = list(truth[: r.max_tokens])
        if not tokens:
            return None
        if len(self.asks) % 3 == 0:
            i = min(1, len(tokens) - 1)
            tokens[i] = (tokens[i] + 1) % 8192
        if not self.tree:
            return Draft.path(tokens, "oracle", float(len(tokens)))
        ids: list[int] = []
        parents: list[int] = []
        parent = -1
        for t in tokens:
            wrong = (t + 7) % 8192
            ids += [t, wrong] if self.true_first else [wrong, t]
            parents += [parent, parent]
            parent = len(ids) - (2 if self.true_first else 1)
        return Draft(tuple(ids), "oracle", float(len(tokens)), tuple(parents)).truncated(
            r.max_tokens
        )


def _check_lifecycle(oracle: OracleProposer, result: Any, n_requests: int) -> None:
    """Every request started and stopped once; the proposer saw exactly the output."""
    starts = [c[1] for c in oracle.calls if c[0] == "start"]
    stops = [c[1] for c in oracle.calls if c[0] == "stop"]
    assert sorted(starts) == sorted(stops) == [f"req-{i}" for i in range(n_requests)]
    assert [oracle.finished[f"req-{i}"] for i in range(n_requests)] == result.token_ids
    # One propose call per step at most, never with a finished request.
    proposes = [c for c in oracle.calls if c[0] == "propose"]
    assert len(proposes) <= result.stats.steps
    for pos, call in enumerate(oracle.calls):
        if call[0] == "propose":
            stopped = {c[1] for c in oracle.calls[:pos] if c[0] == "stop"}
            assert not stopped & set(call[1:])


def test_lm_head_of_final_norm_state_is_the_logits(model: Any, prompt_ids: list[list[int]]) -> None:
    ids = torch.tensor([prompt_ids[0]])
    with torch.no_grad():
        hidden = model.base_model(input_ids=ids).last_hidden_state
        logits = model(input_ids=ids).logits
    torch.testing.assert_close(model.get_output_embeddings()(hidden), logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 3])
def test_no_proposer_matches_generate(
    model: Any, tokenizer: Any, prompt_ids: list[list[int]], reference: Reference, batch: int
) -> None:
    n = MAX_NEW if batch == 3 else 21
    result = generate(model, tokenizer, PROMPTS[:batch], max_new_tokens=n)
    assert result.token_ids == _expected(reference, prompt_ids[:batch], n)
    assert result.texts == [tokenizer.decode(t, skip_special_tokens=True) for t in result.token_ids]
    s = result.stats
    assert s.draft_steps == s.drafted_tokens == s.accepted_tokens == 0
    assert s.mean_acceptance_length == 1.0 and s.steps == n - 1
    assert s.target_forwards == batch * n and s.generated_tokens == batch * n


@pytest.mark.parametrize("tree", [False, True], ids=["path", "tree"])
def test_oracle_with_partial_acceptance_matches_generate(
    model: Any, prompt_ids: list[list[int]], reference: Reference, tree: bool
) -> None:
    oracle = OracleProposer(reference, tree=tree)
    result = generate(model, None, prompt_ids, oracle, max_new_tokens=MAX_NEW)
    assert result.token_ids == _expected(reference, prompt_ids, MAX_NEW)
    assert result.texts is None
    s = result.stats
    assert 0 < s.accepted_tokens < s.drafted_tokens
    assert s.per_source.keys() == {"oracle"}
    assert s.per_source["oracle"].accepted_tokens == s.accepted_tokens
    assert s.mean_acceptance_length == s.accepted_tokens / s.draft_steps + 1
    # Each request's forwards: one prefill plus one per step it was active.
    assert s.target_forwards < 3 * MAX_NEW
    assert len(oracle.records) == s.draft_steps
    assert sum(n for _, _, n in oracle.records) == s.accepted_tokens
    if tree:
        assert all(d.is_tree for _, d, _ in oracle.records if len(d) > 2)
    else:
        # A corrupted draft is accepted exactly up to the corrupted token.
        assert any(0 < n < len(d) for _, d, n in oracle.records)
    _check_lifecycle(oracle, result, 3)


def test_tree_drafts_with_eager_attention_match_generate(
    prompt_ids: list[list[int]], reference: Reference
) -> None:
    # eager attention adds a float mask to the scores; sdpa (the default) takes a bool one.
    eager = transformers.AutoModelForCausalLM.from_pretrained(
        TARGET, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    oracle = OracleProposer(reference, tree=True)
    result = generate(eager, None, prompt_ids[:1], oracle, max_new_tokens=24)
    assert result.token_ids == _expected(reference, prompt_ids[:1], 24)
    assert result.stats.accepted_tokens > 0


def test_tree_drafts_fall_back_to_the_first_child_path(
    model: Any, prompt_ids: list[list[int]], reference: Reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the attention kernels take no tree mask (flash attention), only the path of
    first children is verified."""
    monkeypatch.setattr(HFTarget, "tree_mask_dtype", lambda self: None)
    for true_first in (True, False):
        oracle = OracleProposer(reference, tree=True, true_first=true_first)
        result = generate(model, None, prompt_ids[:1], oracle, max_new_tokens=24)
        assert result.token_ids == _expected(reference, prompt_ids[:1], 24)
        # Wrong siblings first: the first-child path is all wrong, nothing is accepted.
        assert (result.stats.accepted_tokens > 0) == true_first


def test_max_new_tokens_cuts_accepted_drafts(
    model: Any, prompt_ids: list[list[int]], reference: Reference
) -> None:
    for n in (1, 2, 5):
        oracle = OracleProposer(reference)
        result = generate(model, None, prompt_ids[:2], oracle, max_new_tokens=n)
        assert result.token_ids == _expected(reference, prompt_ids[:2], n)
        assert all(r.max_tokens <= n - 1 for r in oracle.asks)
        _check_lifecycle(oracle, result, 2)


def test_eos_stops_like_generate(
    model: Any, prompt_ids: list[list[int]], reference: Reference
) -> None:
    ref = reference[tuple(prompt_ids[0])]
    eos = ref[9]  # its first occurrence is at or before position 9
    expected = _hf_generate(model, prompt_ids[0], MAX_NEW, eos_token_id=eos)
    assert expected == ref[: ref.index(eos) + 1]
    oracle = OracleProposer(reference)
    result = generate(model, None, prompt_ids[:1], oracle, max_new_tokens=MAX_NEW, eos_token_id=eos)
    assert result.token_ids == [expected]
    _check_lifecycle(oracle, result, 1)


def test_proposer_gets_the_final_norm_state_of_the_last_token(
    model: Any, prompt_ids: list[list[int]], reference: Reference
) -> None:
    seen: list[tuple[list[int], int, torch.Tensor]] = []

    class HiddenOracle(OracleProposer):
        needs_hidden_states = True

        def _draft(self, r: ProposeRequest) -> Draft | None:
            assert r.hidden_state is not None and r.hidden_state.shape == (256,)
            sequence = self.context[r.req_id] + self.generated[r.req_id]
            seen.append((sequence, r.last_token, r.hidden_state))
            return super()._draft(r)

    result = generate(model, None, prompt_ids[:2], HiddenOracle(reference), max_new_tokens=24)
    assert result.token_ids == _expected(reference, prompt_ids[:2], 24)
    assert len(seen) >= 6
    with torch.no_grad():
        for sequence, last_token, hidden in seen:
            assert sequence[-1] == last_token
            # The state at the position before last_token: the one whose logits chose it.
            full = model.base_model(input_ids=torch.tensor([sequence])).last_hidden_state[0]
            torch.testing.assert_close(hidden, full[-2], rtol=0, atol=1e-4)


def test_policy_budgets_limit_drafts(
    model: Any, prompt_ids: list[list[int]], reference: Reference
) -> None:
    class Policy:
        def __init__(self) -> None:
            self.recorded: list[tuple[str, int, int]] = []
            self.forgotten: list[str] = []

        def plan(self, batch_size: int, req_ids: list[str]) -> dict[str, int]:
            assert batch_size == len(req_ids)
            return {r: 0 if r == "req-1" else 2 for r in req_ids}

        def record(self, req_id: str, num_drafted: int, num_accepted: int) -> None:
            self.recorded.append((req_id, num_drafted, num_accepted))

        def forget(self, req_id: str) -> None:
            self.forgotten.append(req_id)

    policy = Policy()
    oracle = OracleProposer(reference)
    result = generate(model, None, prompt_ids, oracle, max_new_tokens=16, policy=policy)
    assert result.token_ids == _expected(reference, prompt_ids, 16)
    assert oracle.asks and all(r.req_id != "req-1" and r.max_tokens <= 2 for r in oracle.asks)
    assert len(policy.recorded) == result.stats.draft_steps
    assert sorted(policy.forgotten) == ["req-0", "req-1", "req-2"]


@pytest.fixture(scope="module")
def mlp_drafter() -> Any:
    return load_drafter(DRAFTERS / "mlp")


@pytest.fixture(scope="module")
def lstm_drafter() -> Any:
    return load_drafter(DRAFTERS / "lstm")


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("kind", ["suffix", "suffix-tree", "mlp", "lstm", "hybrid"])
def test_real_proposers_match_generate(
    model: Any,
    tokenizer: Any,
    prompt_ids: list[list[int]],
    reference: Reference,
    mlp_drafter: Any,
    lstm_drafter: Any,
    kind: str,
    batch: int,
) -> None:
    proposers: dict[str, Any] = {
        "suffix": lambda: SuffixProposer(),
        "suffix-tree": lambda: SuffixProposer(use_tree=True),
        "mlp": lambda: DrafterProposer(mlp_drafter),
        "lstm": lambda: DrafterProposer(lstm_drafter),
        "hybrid": lambda: HybridProposer(SuffixProposer(), DrafterProposer(mlp_drafter)),
    }
    n = MAX_NEW if batch == 3 else 29
    result = generate(model, tokenizer, PROMPTS[:batch], proposers[kind](), max_new_tokens=n)
    assert result.token_ids == _expected(reference, prompt_ids[:batch], n)
    s = result.stats
    assert s.drafted_tokens > 0
    assert set(s.per_source) <= {SUFFIX, DRAFTER}
    if kind.startswith("suffix"):
        assert s.accepted_tokens > 0 and set(s.per_source) == {SUFFIX}


def test_bad_arguments_are_rejected_before_anything_runs(
    model: Any, tokenizer: Any, prompt_ids: list[list[int]]
) -> None:
    with pytest.raises(ValueError, match="prompts is empty"):
        generate(model, tokenizer, [])
    with pytest.raises(ValueError, match=r"prompts\[1\] has no tokens"):
        generate(model, tokenizer, [[1, 2], []])
    with pytest.raises(ValueError, match=r"prompts\[0\] is text but tokenizer is None"):
        generate(model, None, ["hello"])
    with pytest.raises(ValueError, match=r"token ids \[8192\] outside the vocabulary 0\.\.8191"):
        generate(model, None, [[5, 8192]])
    with pytest.raises(TypeError, match="prompts must be a list"):
        generate(model, tokenizer, "hello")
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1, got 0"):
        generate(model, tokenizer, PROMPTS[:1], max_new_tokens=0)
    with pytest.raises(ValueError, match="num_speculative_tokens must be >= 0, got -1"):
        generate(model, tokenizer, PROMPTS[:1], num_speculative_tokens=-1)
    with pytest.raises(TypeError, match="proposer must implement"):
        generate(model, tokenizer, PROMPTS[:1], object())  # type: ignore[arg-type]
    model.train()
    try:
        with pytest.raises(ValueError, match=r"training mode.*model\.eval\(\)"):
            generate(model, tokenizer, PROMPTS[:1])
    finally:
        model.eval()


def test_bad_drafts_fail_and_still_stop_every_request(
    model: Any, prompt_ids: list[list[int]], reference: Reference
) -> None:
    class Broken(OracleProposer):
        def propose(self, batch: Sequence[ProposeRequest]) -> list[Draft | None]:
            return super().propose(batch)[:-1]

    broken = Broken(reference)
    with pytest.raises(DraftShapeError, match="returned 1 drafts for 2 requests"):
        generate(model, None, prompt_ids[:2], broken, max_new_tokens=8)
    assert sorted(c[1] for c in broken.calls if c[0] == "stop") == ["req-0", "req-1"]

    class OutOfVocab(OracleProposer):
        def _draft(self, r: ProposeRequest) -> Draft | None:
            return Draft.path([1, 9000], "oracle", 1.0)

    with pytest.raises(DraftShapeError, match=r"draft token ids \[9000\]"):
        generate(model, None, prompt_ids[:1], OutOfVocab(reference), max_new_tokens=8)
