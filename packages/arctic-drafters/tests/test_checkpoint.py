from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from arctic_drafters import (
    CheckpointError,
    IncompatibleTargetError,
    MLPSpeculatorConfig,
    build_speculator,
    check_compatible,
    load_drafter,
    save_drafter,
)


def test_round_trip_is_exact(tmp_path, small_config):
    model = build_speculator(small_config)
    save_drafter(model, tmp_path / "d", metadata={"target": "t"})
    loaded = load_drafter(tmp_path / "d")
    assert loaded.config == small_config and type(loaded) is type(model)
    for (k, a), (k2, b) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(a, b)
    assert json.loads((tmp_path / "d" / "config.json").read_text())["metadata"] == {"target": "t"}


def test_half_precision_save(tmp_path):
    model = build_speculator(MLPSpeculatorConfig(50, 8, 6))
    save_drafter(model, tmp_path / "d", dtype=torch.bfloat16)
    assert {t.dtype for t in load_file(str(tmp_path / "d" / "model.safetensors")).values()} == {
        torch.bfloat16
    }
    loaded = load_drafter(tmp_path / "d", dtype=torch.float32)
    assert torch.allclose(loaded.head[0].weight, model.head[0].weight, rtol=1e-2, atol=1e-2)


@pytest.fixture
def saved(tmp_path):
    return save_drafter(build_speculator(MLPSpeculatorConfig(50, 8, 6)), tmp_path / "d")


def _edit_weights(path, edit):
    tensors = load_file(str(path / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(path / "model.safetensors"))


def test_strict_load_names_missing_key(saved):
    _edit_weights(saved, lambda t: t.pop("ln.0.bias"))
    with pytest.raises(CheckpointError, match=r"missing keys \['ln\.0\.bias'\]"):
        load_drafter(saved)


def test_strict_load_names_unexpected_key(saved):
    _edit_weights(saved, lambda t: t.update({"extra.weight": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match=r"unexpected keys \['extra\.weight'\]"):
        load_drafter(saved)


def test_strict_load_names_shape_mismatch(saved):
    _edit_weights(saved, lambda t: t.update({"head.0.weight": torch.zeros(51, 6)}))
    with pytest.raises(
        CheckpointError, match=r"head\.0\.weight: checkpoint \(51, 6\) vs model \(50, 6\)"
    ):
        load_drafter(saved)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c | {"format_version": 99}, "format_version 99 is not supported"),
        (lambda c: c | {"inner_dim": -3}, "inner_dim must be a positive int, got -3"),
        (lambda c: c | {"colour": "red"}, r"unknown mlp config fields: \['colour'\]"),
        (lambda c: {"architectures": ["GPT2"]}, "neither an arctic-drafters checkpoint"),
    ],
)
def test_bad_config_json(saved, edit, message):
    cfg = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps(edit(cfg)))
    with pytest.raises(CheckpointError, match=message):
        load_drafter(saved)


def test_missing_files(tmp_path, saved):
    with pytest.raises(CheckpointError, match=r"has no config\.json"):
        load_drafter(tmp_path / "nowhere")
    (saved / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"has no model\.safetensors"):
        load_drafter(saved)


def test_check_compatible():
    model = build_speculator(MLPSpeculatorConfig(50, 8, 6))
    check_compatible(model, {"vocab_size": 50, "hidden_size": 8})
    with pytest.raises(
        IncompatibleTargetError, match="drafter vocab_size 50 != target vocab_size 51"
    ):
        check_compatible(model, {"vocab_size": 51, "hidden_size": 8})
    with pytest.raises(
        IncompatibleTargetError, match="drafter hidden_size 8 != target hidden_size 9"
    ):
        check_compatible(model.config, {"vocab_size": 50, "hidden_size": 9})
    with pytest.raises(IncompatibleTargetError, match="lacks vocab_size"):
        check_compatible(model, {})


def test_the_config_alone_is_read_without_the_weights(tmp_path):
    """A front end checks a drafter against its target from config.json only."""
    from arctic_drafters import (
        MLPSpeculatorConfig,
        build_speculator,
        load_drafter_config,
        save_drafter,
    )

    config = MLPSpeculatorConfig(61, 20, 12)
    save_drafter(build_speculator(config), tmp_path / "d")
    (tmp_path / "d" / "model.safetensors").write_bytes(b"not read")  # corrupt: never opened
    assert load_drafter_config(tmp_path / "d") == config


def test_the_config_alone_of_an_arctic_checkpoint(tmp_path):
    from anchor_checkpoints import H, V, arctic_config, write

    from arctic_drafters import load_drafter, load_drafter_config

    root = write(
        tmp_path / "a", arctic_config("ArcticLSTMSpeculatorPreTrainedModel", "sum_lstm", True), {}
    )
    config = load_drafter_config(root)  # no weights file at all: not needed
    assert (config.vocab_size, config.hidden_size, config.kind) == (V, H, "lstm")
    with pytest.raises(CheckpointError):
        load_drafter(root)  # the full load does need them
