"""Training with the target in the loop (one process here; torchrun in test_torchrun.py)."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_target import random_prompts, tiny_llama

from arctic_drafters import LSTMSpeculatorConfig, MLPSpeculatorConfig, TrainingStateError
from arctic_drafters import build_speculator as build
from arctic_drafters.training import (
    DistillConfig,
    RunLog,
    SequenceOrder,
    SequenceStore,
    TargetStates,
    compute_hidden_states,
    evaluate_acceptance,
    evaluate_online,
    generate_shards,
    init_runtime,
    read_shards,
    train_online,
)
from arctic_drafters.training.positions import count_points, gather_points, select_points


@pytest.fixture(scope="module")
def target():
    return tiny_llama()


@pytest.fixture(scope="module")
def data(tmp_path_factory, target):
    out = tmp_path_factory.mktemp("data")
    generate_shards(
        target, random_prompts(24), out, gen_len=24, shard_size=5, temperature=1.0, top_k=5,
        progress=False,
    )  # fmt: skip
    return SequenceStore(out)


@pytest.fixture(scope="module")
def heldout(tmp_path_factory, target):
    out = tmp_path_factory.mktemp("heldout")
    generate_shards(
        target, random_prompts(6, seed=1), out, gen_len=24, temperature=0.0, progress=False
    )
    return out


CPU = init_runtime("cpu", "fp32")
CONFIG = LSTMSpeculatorConfig(vocab_size=64, hidden_size=16, inner_dim=32)
TRAIN = DistillConfig(steps=12, batch_sequences=8, lr=5e-3, kl_weight=0.5, seed=3)
LONGER = DistillConfig(steps=40, batch_sequences=8, lr=1e-2, kl_weight=0.5, seed=3)


def _drafter(config=CONFIG, seed=1):
    torch.manual_seed(seed)
    return build(config)


def _train(drafter, data, target, out, config=TRAIN, **kwargs):
    kwargs.setdefault("progress", False)
    return train_online(drafter, data, TargetStates(target), out, config, CPU, **kwargs)


def test_the_order_is_a_function_of_seed_and_step():
    order = SequenceOrder(10, seed=5)
    steps = [order.step(s, 4) for s in range(5)]  # 20 draws: two whole epochs
    assert sorted(torch.cat([*steps[:2], steps[2][:2]]).tolist()) == list(range(10))
    again = SequenceOrder(10, seed=5)
    assert torch.equal(again.step(3, 4), steps[3])  # no state: a resumed run draws the same
    assert not torch.equal(SequenceOrder(10, seed=6).step(0, 4), steps[0])


@torch.no_grad()
def _heldout_loss(drafter, store, target):
    batch = store.batch(torch.arange(len(store)))
    states = TargetStates(target)(batch.tokens, batch.attention_mask)
    rows, t = select_points(batch, 3, draft=False)
    p = gather_points(batch.tokens, states, rows, t, 3)
    logits = drafter(p.hidden, p.inputs)
    return float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), p.targets.T.flatten()))


@pytest.mark.parametrize("config", [CONFIG, MLPSpeculatorConfig(64, 16, 32)], ids=["lstm", "mlp"])
def test_online_training_learns(tmp_path, data, heldout, target, config):
    drafter = _drafter(config)
    store = SequenceStore(heldout)
    before = _heldout_loss(drafter, store, target)
    report = _train(drafter, data, target, tmp_path, config=LONGER)
    after = _heldout_loss(drafter, store, target)
    assert after < 0.8 * before, (before, after)
    assert report["steps_done"] == 40 and report["positions_per_s"] > 0
    assert report["last"]["positions"] == count_points(
        data.lengths[:8], data.prompt_lens[:8], 3, draft=False
    )  # every sequence has the same length here: 8 x 22 positions per step


def test_gradient_accumulation_gives_the_same_weights(tmp_path, data, target):
    whole, accumulated = _drafter(), _drafter()
    _train(whole, data, target, tmp_path / "a")
    _train(accumulated, data, target, tmp_path / "b", micro_batch_sequences=2)
    for (k, a), b in zip(
        whole.state_dict().items(), accumulated.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=k)


def test_stopping_and_resuming_is_bit_exact(tmp_path, data, target):
    straight = _drafter()
    _train(straight, data, target, tmp_path / "a")
    first = _drafter()
    report = _train(first, data, target, tmp_path / "b", stop_after_steps=5, checkpoint_every=100)
    assert report["steps_done"] == 5  # checkpointed on the way out
    resumed = _drafter(seed=99)  # a fresh process: another init, restored from the checkpoint
    report = _train(resumed, data, target, tmp_path / "b")
    assert report["resumed_from"] == 5
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    with pytest.raises(TrainingStateError, match="written by another run"):
        _train(_drafter(), data, target, tmp_path / "b", config=DistillConfig(steps=12, seed=4))


def test_batch_must_split_over_micro_batches(tmp_path, data, target):
    with pytest.raises(ValueError, match="micro_batch_sequences 3 must divide the 8 sequences"):
        _train(_drafter(), data, target, tmp_path, micro_batch_sequences=3)


def test_online_evaluation_equals_the_in_memory_one(tmp_path, data, heldout, target):
    drafter = _drafter()
    _train(drafter, data, target, tmp_path, config=LONGER)  # some acceptance to compare
    shards = read_shards(heldout)
    states = compute_hidden_states(target, shards.tokens, dtype=torch.float32)
    expected = evaluate_acceptance(drafter, shards, states)
    got = evaluate_online(
        drafter, SequenceStore(heldout), TargetStates(target), CPU, batch_sequences=4
    )
    assert got.positions == expected.positions == 6 * (32 - 3 - 2 - 7 + 1)  # t = P-1 .. L-n-2
    assert sum(expected.per_position) > 0
    assert got.per_position == pytest.approx(expected.per_position, abs=1e-12)


def test_run_log_writes_jsonl(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with RunLog(tmp_path) as log:
        log.write({"step": 1, "loss": 2.5, "head_accuracy": [0.1, 0.2]})
    assert "tensorboard is not installed" in capsys.readouterr().err
    assert json.loads((tmp_path / "log.jsonl").read_text()) == {
        "step": 1,
        "loss": 2.5,
        "head_accuracy": [0.1, 0.2],
    }
    with pytest.raises(ImportError, match="tensorboard"):
        RunLog(tmp_path, tensorboard=True)
    RunLog(tmp_path, tensorboard=False).close()
    assert "tensorboard" not in capsys.readouterr().err


def test_run_log_writes_tensorboard_events_when_installed(tmp_path):
    pytest.importorskip("tensorboard")
    with RunLog(tmp_path, tensorboard=True) as log:
        log.write({"step": 1, "loss": 2.5, "head_accuracy": [0.1, 0.2]})
        assert log.tensorboard_dir == tmp_path / "tensorboard"
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
