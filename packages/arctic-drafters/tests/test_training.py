"""Data generation, hidden states, training with resume, and evaluation on a tiny target."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from tiny_target import CharTokenizer, random_prompts, tiny_llama

from arctic_drafters import (
    DatasetError,
    IncompatibleTargetError,
    LSTMSpeculatorConfig,
    MLPSpeculatorConfig,
    TrainingStateError,
    build_speculator,
)
from arctic_drafters.training import (
    TokenShards,
    TrainConfig,
    compute_hidden_states,
    evaluate_acceptance,
    generate_shards,
    load_prompts,
    read_shards,
    train_drafter,
)
from arctic_drafters.training.trainer import sample_batch


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prompts_are_chunked_from_text_and_messages(tmp_path):
    rows = [
        {"text": "a" * 10},
        {"messages": [{"role": "user", "content": "bcd"}, {"role": "assistant", "content": "ef"}]},
    ]
    prompts = load_prompts(_jsonl(tmp_path / "p.jsonl", rows), CharTokenizer(64), prompt_len=3)
    tok = CharTokenizer(64)
    assert prompts == [tok("aaa")["input_ids"]] * 3 + [
        tok("bcd")["input_ids"],
        tok("\nef")["input_ids"],
    ]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"text": "abcdef"}, {"text": "  "}], r"p\.jsonl:2: empty prompt"),
        ([{"prompt": "abc"}], r"p\.jsonl:1: a row must be"),
        ([{"text": "ab"}], r"no usable prompt \(1 rows, none with >= 4 tokens\)"),
        ([{"messages": [{"role": "user"}]}], "needs a string 'content'"),
    ],
)
def test_bad_prompt_files(tmp_path, rows, message):
    with pytest.raises(DatasetError, match=message):
        load_prompts(_jsonl(tmp_path / "p.jsonl", rows), CharTokenizer(64), prompt_len=4)


def test_not_json_is_named(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"text": "abc"}\n{oops\n')
    with pytest.raises(DatasetError, match=r"p\.jsonl:2: not JSON"):
        load_prompts(tmp_path / "p.jsonl", CharTokenizer(64), prompt_len=2)


@pytest.fixture(scope="module")
def target():
    return tiny_llama()


def test_greedy_shards_are_the_targets_argmax(tmp_path, target):
    generate_shards(
        target,
        random_prompts(5),
        tmp_path / "d",
        gen_len=12,
        batch_size=2,
        shard_size=3,
        temperature=0.0,
    )
    shards = read_shards(tmp_path / "d")
    assert shards.tokens.shape == (5, 20) and shards.prompt_len == 8 and shards.vocab_size == 64
    logits = target(shards.tokens).logits
    assert torch.equal(logits[:, 7:-1].argmax(-1), shards.tokens[:, 8:])


def test_hidden_states_are_what_the_lm_head_reads(target):
    tokens = torch.tensor(random_prompts(3, 10))
    states = compute_hidden_states(target, tokens, batch_size=2, dtype=torch.float32)
    torch.testing.assert_close(states.hidden @ states.lm_head.T, target(tokens).logits)


def test_sequence_longer_than_the_target_allows(tmp_path, target):
    with pytest.raises(DatasetError, match="max_position_embeddings 64"):
        generate_shards(target, random_prompts(2), tmp_path / "d", gen_len=60)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be a positive int, got 0"),
        ({"gen_len": 0}, "gen_len must be a positive int, got 0"),
        ({"shard_size": -1}, "shard_size must be a positive int, got -1"),
        ({"top_k": -1}, r"top_k must be an int >= 0 \(0: no top-k filtering\), got -1"),
        ({"temperature": -1.0}, "temperature must be a finite number >= 0, got -1.0"),
        ({"temperature": float("nan")}, "temperature must be a finite number >= 0, got nan"),
    ],
)
def test_generation_arguments_are_checked_before_writing(tmp_path, target, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_shards(target, random_prompts(2), tmp_path / "d", **({"gen_len": 4} | kwargs))
    assert not (tmp_path / "d").exists()  # no manifest left behind by a run that cannot start


def test_max_prompts_must_be_positive(tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", [{"text": "abcdefgh"}])
    with pytest.raises(ValueError, match="max_prompts must be positive or None, got 0"):
        load_prompts(path, CharTokenizer(64), prompt_len=2, max_prompts=0)


def test_out_of_vocab_tokens(target):
    with pytest.raises(DatasetError, match="outside the target's vocabulary"):
        compute_hidden_states(target, torch.tensor([[1, 64]]))


@pytest.fixture(scope="module")
def data(tmp_path_factory, target):
    out = tmp_path_factory.mktemp("data")
    generate_shards(
        target, random_prompts(24), out, gen_len=24, batch_size=24, temperature=1.0, top_k=5
    )
    shards = read_shards(out)
    return shards, compute_hidden_states(target, shards.tokens, dtype=torch.float32)


@torch.no_grad()
def _heldout_loss(model, shards, states):
    hidden, inputs, targets, _ = sample_batch(
        shards, states, 3, 512, torch.Generator().manual_seed(7)
    )
    logits = model(hidden, inputs)
    return float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.T.flatten()))


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("kind", ["mlp", "lstm"])
def test_training_learns_and_resume_is_exact(tmp_path, data, kind):
    shards, states = data
    cls = MLPSpeculatorConfig if kind == "mlp" else LSTMSpeculatorConfig
    config = cls(vocab_size=64, hidden_size=16, inner_dim=32)
    train = TrainConfig(steps=16, batch_positions=96, lr=5e-3, checkpoint_every=4, kl_weight=0.5)

    torch.manual_seed(1)
    straight = build_speculator(config)
    before = _heldout_loss(straight, shards, states)
    report = train_drafter(straight, shards, states, tmp_path / "a", train, progress=False)
    assert _heldout_loss(straight, shards, states) < 0.8 * before
    assert report["steps"] == 16 and len(report["ema_head_accuracy"]) == 3

    class Crash(Exception):
        pass

    def crash_at_11(step):
        if step == 11:
            raise Crash

    torch.manual_seed(1)
    crashed = build_speculator(config)
    with pytest.raises(Crash):
        train_drafter(
            crashed, shards, states, tmp_path / "b", train, on_step=crash_at_11, progress=False
        )
    torch.manual_seed(99)  # a fresh process: different init, restored from the checkpoint
    resumed = build_speculator(config)
    report = train_drafter(resumed, shards, states, tmp_path / "b", train, progress=False)
    assert report["resumed_from"] == 8  # at most one checkpoint interval lost
    for k, v in _weights(straight).items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_resume_from_another_run_is_refused(tmp_path, data):
    shards, states = data
    model = build_speculator(MLPSpeculatorConfig(64, 16, 8))
    train_drafter(
        model,
        shards,
        states,
        tmp_path,
        TrainConfig(steps=2, batch_positions=8, checkpoint_every=1),
        progress=False,
    )
    with pytest.raises(TrainingStateError, match="written by another run"):
        train_drafter(
            model, shards, states, tmp_path, TrainConfig(steps=3, batch_positions=8), progress=False
        )


def test_vocab_and_hidden_mismatch(tmp_path, data):
    shards, states = data
    with pytest.raises(IncompatibleTargetError, match="vocab_size 64, the drafter has 65"):
        train_drafter(
            build_speculator(MLPSpeculatorConfig(65, 16, 8)),
            shards,
            states,
            tmp_path,
            TrainConfig(steps=1),
        )
    with pytest.raises(IncompatibleTargetError, match="expects hidden_size 17"):
        train_drafter(
            build_speculator(MLPSpeculatorConfig(64, 17, 8)),
            shards,
            states,
            tmp_path,
            TrainConfig(steps=1),
        )
    with pytest.raises(IncompatibleTargetError, match="shards vocab_size 64"):
        evaluate_acceptance(build_speculator(MLPSpeculatorConfig(65, 16, 8)), shards, states)


def test_continuations_too_short(tmp_path, data):
    shards, states = data
    short = TokenShards(shards.tokens, prompt_len=shards.tokens.shape[1] - 2, vocab_size=64)
    with pytest.raises(DatasetError, match="too short to train 3 heads"):
        train_drafter(
            build_speculator(MLPSpeculatorConfig(64, 16, 8)),
            short,
            states,
            tmp_path,
            TrainConfig(steps=1),
        )


def test_train_config_validation():
    with pytest.raises(ValueError, match="steps must be a positive int, got 0"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="warmup_frac must be in"):
        TrainConfig(warmup_frac=1.0)


class _Oracle(torch.nn.Module):
    """Drafts the stored continuation, wrong from draft position ``wrong_from`` on."""

    def __init__(self, shards, wrong_from):
        super().__init__()
        self.config = MLPSpeculatorConfig(shards.vocab_size, 4, 4)
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.shards, self.wrong_from = shards, wrong_from

    def propose(self, hidden, last, n):
        seq, pos = hidden[:, 0].long(), hidden[:, 1].long()
        truth = self.shards.tokens[seq[:, None], pos[:, None] + 2 + torch.arange(n)]
        truth[:, self.wrong_from :] = (truth[:, self.wrong_from :] + 1) % self.shards.vocab_size
        return truth


@pytest.mark.parametrize("wrong_from", [0, 1, 2, 3])
def test_acceptance_counts_the_matching_prefix(wrong_from):
    tokens = torch.randint(0, 50, (3, 12))
    shards = TokenShards(tokens, prompt_len=4, vocab_size=50)
    hidden = torch.stack(torch.meshgrid(torch.arange(3.0), torch.arange(12.0), indexing="ij"), -1)
    hidden = torch.cat([hidden, torch.zeros(3, 12, 2)], -1)
    from arctic_drafters.training import HiddenStates

    report = evaluate_acceptance(
        _Oracle(shards, wrong_from), shards, HiddenStates(hidden, torch.zeros(50, 4)), n=3
    )
    assert report.per_position == [1.0] * wrong_from + [0.0] * (3 - wrong_from)
    assert report.mean_accepted == wrong_from and report.tokens_per_step == 1 + wrong_from
    assert report.positions == 3 * (12 - 3 - 2 - 4 + 1 + 1)


def test_missing_transformers_names_the_extra(monkeypatch):
    from arctic_drafters.training.target import require_transformers

    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r'pip install "arctic-drafters\[train\]"'):
        require_transformers()
