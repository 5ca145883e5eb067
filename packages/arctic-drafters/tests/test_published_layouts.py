"""The published Arctic LSTM layout (ArcticTraining's separate-gate state dict and config)
loads, computes what Arctic's equations compute, and is checked against the target's
architecture; the Llama-3.1-8B sizes fit, shapes only."""

from __future__ import annotations

import pytest
import torch
from anchor_checkpoints import arctic_lstm, write
from published_layouts import LLAMA_8B, arctic_lstm_config, arctic_lstm_state
from serving_reference import greedy, lstm_logits_per_gate

from arctic_drafters import (
    CheckpointError,
    IncompatibleTargetError,
    LSTMSpeculator,
    check_compatible,
    load_drafter,
    load_drafter_config,
)
from arctic_drafters.arctic_format import arctic_config
from arctic_drafters.arctic_layout import anchor_to_native
from arctic_drafters.strict_load import build_on_meta, check_state_fits

V, H, D = 97, 24, 16
LLAMA = ["LlamaForCausalLM"]

CASES = {
    # torch.save of the training model: the tied embeddings and heads repeated per name.
    "published-bin": (arctic_lstm_config(V, H, D, archs=LLAMA), {}, "bin"),
    # The same weights with each shared tensor once (a deduplicated safetensors).
    "deduplicated-safetensors": (
        arctic_lstm_config(V, H, D, archs=LLAMA),
        {"repeat_shared": False},
        "safetensors",
    ),
    "unscaled-4-heads": (
        arctic_lstm_config(V, H, D, 4, scale_input=False),
        {"n_predict": 4},
        "bin",
    ),
    # ArcticTraining's tie_lstm_embs=false: four embeddings (Arctic Inference loads, not runs, it).
    "untied-embeddings": (
        arctic_lstm_config(V, H, D, tie_lstm_embs=False),
        {"tie_lstm_embs": False},
        "safetensors",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_published_lstm_matches_arctic_equations(tmp_path, name):
    cfg, state_args, fmt = CASES[name]
    state = arctic_lstm_state(V, H, D, seed=len(name), **state_args)
    model = load_drafter(write(tmp_path / name, cfg, state, fmt)).double()
    assert isinstance(model, LSTMSpeculator)
    assert model.config.tie_lstm_embs == cfg["tie_lstm_embs"]
    assert model.config.base_model_archs == tuple(cfg.get("base_model_archs", ()))
    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(6, H, generator=g, dtype=torch.float64) * 3
    tokens = torch.randint(0, V, (6, cfg["n_predict"]), generator=g)
    expected = lstm_logits_per_gate(cfg, state, hidden, tokens)
    torch.testing.assert_close(model(hidden, tokens), expected)
    drafts = greedy(lambda h, t: lstm_logits_per_gate(cfg, state, h, t), hidden, tokens[:, 0], 3)
    assert torch.equal(model.propose(hidden, tokens[:, 0], 3), drafts)


def test_each_gate_reaches_its_own_block(tmp_path):
    """Swapping two gates' tensors in the file changes the drafts: the import keeps which
    tensor is which gate (a wrong order would still fit every shape)."""
    cfg = arctic_lstm_config(V, H, D)
    state = arctic_lstm_state(V, H, D, seed=5)
    swapped = dict(state)
    for j in (0, 1):
        swapped[f"input_proj.{j}.weight"] = state[f"output_proj.{j}.weight"]
        swapped[f"output_proj.{j}.weight"] = state[f"input_proj.{j}.weight"]
    hidden = torch.randn(4, H, dtype=torch.float64)
    tokens = torch.randint(0, V, (4, 3))
    for weights, name in ((state, "a"), (swapped, "b")):
        model = load_drafter(write(tmp_path / name, cfg, weights)).double()
        expected = lstm_logits_per_gate(cfg, weights, hidden, tokens)
        torch.testing.assert_close(model(hidden, tokens), expected)
    assert not torch.allclose(
        lstm_logits_per_gate(cfg, state, hidden, tokens),
        lstm_logits_per_gate(cfg, swapped, hidden, tokens),
    )


def test_prefixed_keys_and_list_dims_load(tmp_path):
    cfg = arctic_lstm_config(V, H, D) | {"inner_dim": [D], "emb_dim": [D], "proj_dim": [D]}
    state = arctic_lstm_state(V, H, D, seed=9)
    model = load_drafter(
        write(tmp_path / "m", cfg, {f"speculator.{k}": v for k, v in state.items()})
    )
    assert model.config.inner_dim == D


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda w: w.pop("cell_proj.1.weight"), r"missing \['cell_proj\.1\.weight'\]"),
        (
            lambda w: w.update({"projs.0.weight": torch.zeros(4 * D, H)}),
            r"stored twice: combined \(\['projs\.0\.weight'\]\) and per gate",
        ),
        (
            lambda w: w.update({"output_emb.0.weight": w["forget_emb.0.weight"] + 1}),
            r"output_emb\.0\.weight differs from forget_emb\.0\.weight",
        ),
        (
            lambda w: w.update({"head.2.weight": w["head.0.weight"] * 2}),
            r"head\.2\.weight differs from the tensor it is tied to",
        ),
        (
            lambda w: w.update({"input_proj.0.weight": torch.zeros(D + 1, H)}),
            r"differ in shape.*input_proj\.0\.weight': \(17, 24\)",
        ),
    ],
)
def test_broken_published_layouts_are_named(tmp_path, edit, message):
    state = arctic_lstm_state(V, H, D, seed=2)
    edit(state)
    root = write(tmp_path / "m", arctic_lstm_config(V, H, D), state)
    with pytest.raises(CheckpointError, match=message) as info:
        load_drafter(root)
    assert str(root / "pytorch_model.bin") in str(info.value)


def test_combined_layout_still_loads(tmp_path):
    """Arctic Inference's own module layout (projs.i, one embedding) beside the published."""
    model = load_drafter(write(tmp_path / "m", arctic_lstm_config(V, H, D), arctic_lstm()))
    assert model.proj[0].weight.shape == (4 * D, H)


# -- base_model_archs: the target's architecture, as Arctic Inference's proposer checks ------


def _target(arch: str | None) -> dict:
    return {"vocab_size": V, "hidden_size": H} | ({"architectures": [arch]} if arch else {})


def test_base_model_archs_must_include_the_target(tmp_path):
    root = write(
        tmp_path / "m", arctic_lstm_config(V, H, D, archs=LLAMA), arctic_lstm_state(V, H, D)
    )
    config = load_drafter_config(root)
    assert config.base_model_archs == ("LlamaForCausalLM",)
    check_compatible(config, _target("LlamaForCausalLM"))
    check_compatible(config, _target(None))  # a target config without architectures: sizes only
    with pytest.raises(IncompatibleTargetError) as info:
        check_compatible(config, _target("Qwen2ForCausalLM"))
    message = str(info.value)
    assert "['LlamaForCausalLM']" in message and "Qwen2ForCausalLM" in message
    assert "ARCTIC_INFERENCE_SKIP_SPEC_MODEL_CHECK=1" in message


def test_the_architecture_check_follows_arctic_inference_switch(tmp_path, monkeypatch):
    root = write(
        tmp_path / "m", arctic_lstm_config(V, H, D, archs=LLAMA), arctic_lstm_state(V, H, D)
    )
    monkeypatch.setenv("ARCTIC_INFERENCE_SKIP_SPEC_MODEL_CHECK", "1")
    check_compatible(load_drafter(root), _target("LlamaSwiftKVForCausalLM"))
    with pytest.raises(IncompatibleTargetError, match="vocab_size"):  # sizes still checked
        check_compatible(load_drafter(root), _target("X") | {"vocab_size": V + 1})


def test_a_config_without_base_model_archs_is_checked_by_sizes(tmp_path):
    config = load_drafter_config(write(tmp_path / "m", arctic_lstm_config(V, H, D), arctic_lstm()))
    assert config.base_model_archs == ()
    check_compatible(config, _target("AnyForCausalLM"))


@pytest.mark.parametrize("value", [5, [1], [""], {"a": 1}])
def test_base_model_archs_of_the_wrong_type_are_refused(tmp_path, value):
    cfg = arctic_lstm_config(V, H, D) | {"base_model_archs": value}
    with pytest.raises(CheckpointError, match=r"base_model_archs=.* must be a list of names"):
        load_drafter_config(write(tmp_path / "m", cfg, arctic_lstm()))


# -- the published sizes, on the meta device ----------------------------------------------


def test_llama_8b_published_layout_fits_shapes_only():
    """Llama-3.1-8B's drafter (hidden 4096, vocab 128256, 3 heads, the published config) on
    the meta device: the file's tensor names and shapes become exactly our model's, and a
    draft runs to the right shapes; no memory is allocated."""
    h, v, d, n = (LLAMA_8B[k] for k in ("input_hidden_dim", "vocab_size", "width", "n_predict"))
    cfg = arctic_lstm_config(v, h, d, n, archs=LLAMA)
    config = arctic_config(cfg)
    assert (config.hidden_size, config.vocab_size, config.inner_dim, config.n_predict) == (
        h,
        v,
        d,
        n,
    )
    model = build_on_meta(config)
    for repeat_shared in (True, False):
        state = arctic_lstm_state(v, h, d, n, repeat_shared=repeat_shared, device="meta")
        native = anchor_to_native(state, config)
        check_state_fits(model, {k: tuple(t.shape) for k, t in native.items()}, "published")
    hidden = torch.empty(2, h, device="meta")
    tokens = torch.zeros(2, n, dtype=torch.long, device="meta")
    assert model(hidden, tokens).shape == (n, 2, v)
    assert config.parameter_count() == sum(p.numel() for p in model.parameters())


def test_a_native_checkpoint_keeps_base_model_archs(tmp_path):
    from arctic_drafters import LSTMSpeculatorConfig, build_speculator, save_drafter

    config = LSTMSpeculatorConfig(V, H, D, base_model_archs=("LlamaForCausalLM",))
    root = save_drafter(build_speculator(config), tmp_path / "native")
    assert load_drafter_config(root) == config
    with pytest.raises(IncompatibleTargetError, match="Qwen2ForCausalLM"):
        check_compatible(load_drafter(root), _target("Qwen2ForCausalLM"))
