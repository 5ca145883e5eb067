"""Importing anchor checkpoints gives the outputs of the independent reference equations."""

from __future__ import annotations

import pytest
import torch
from anchor_checkpoints import D, H, V, arctic_config, arctic_lstm, ibm_mlp, vllm_config, write
from drafter_reference import reference_greedy, reference_logits

from arctic_drafters import CheckpointError, LSTMSpeculator, MLPSpeculator, load_drafter

CASES = [
    # (name, config, weights)
    ("vllm-untied", vllm_config(False, False), ibm_mlp(False)),
    ("vllm-untied-scaled", vllm_config(False, True), ibm_mlp(False, seed=1)),
    ("vllm-tied-repeated", vllm_config(True, True), ibm_mlp(True, seed=2)),
    ("vllm-tied-once", vllm_config(True, False), ibm_mlp(True, repeat_tied=False, seed=3)),
    # ArcticLSTMSpeculator runs sum_rnn (Arctic Inference registers the LSTM class for it).
    (
        "arctic-sum-rnn",
        arctic_config("ArcticLSTMSpeculatorPreTrainedModel", "sum_rnn", tie=False),
        ibm_mlp(False, seq_wrap=True, seed=4),
    ),
    (
        "arctic-sum-rnn-tied",
        arctic_config("ArcticLSTMSpeculatorPreTrainedModel", "sum_rnn", tie=True),
        ibm_mlp(True, seq_wrap=True, repeat_tied=False, seed=5),
    ),
    (
        "mlp-variant-sum-rnn",
        arctic_config("MLPVariantSpeculatorPreTrainedModel", "sum_rnn", tie=True),
        ibm_mlp(True, seq_wrap=True, seed=12),
    ),
    # ArcticMLPSpeculator: IBM's fields and keys (emb_dim is the target's width).
    (
        "arctic-mlp",
        vllm_config(False, True) | {"architectures": ["ArcticMLPSpeculatorPreTrainedModel"]},
        ibm_mlp(False, seed=13),
    ),
    (
        "arctic-mlp-tied",
        vllm_config(True, True) | {"architectures": ["ArcticMLPSpeculatorPreTrainedModel"]},
        ibm_mlp(True, repeat_tied=False, seed=14),
    ),
    (
        "arctic-sum-lstm",
        arctic_config("ArcticLSTMSpeculatorPreTrainedModel", "sum_lstm", tie=True),
        arctic_lstm(6),
    ),
    (
        "arctic-sum-lstm-flat-dims",
        arctic_config(
            "ArcticLSTMSpeculatorPreTrainedModel",
            "sum_lstm",
            tie=True,
            scale_input=False,
            dotted=False,
        ),
        arctic_lstm(7),
    ),
]


@pytest.mark.parametrize(("name", "cfg", "weights"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("fmt", ["bin", "safetensors"])
def test_import_matches_reference(tmp_path, name, cfg, weights, fmt):
    model = load_drafter(write(tmp_path / name, cfg, weights, fmt)).double()
    expected_cls = (
        LSTMSpeculator
        if cfg.get("method") == "sum_lstm" or "input_hidden_dim" in cfg
        else MLPSpeculator
    )
    assert isinstance(model, expected_cls)
    g = torch.Generator().manual_seed(11)
    hidden = torch.randn(5, H, generator=g, dtype=torch.float64) * 3
    tokens = torch.randint(0, V, (5, 3), generator=g)
    torch.testing.assert_close(
        model(hidden, tokens), reference_logits(weights, cfg, hidden, tokens)
    )
    assert torch.equal(
        model.propose(hidden, tokens[:, 0], 3),
        reference_greedy(weights, cfg, hidden, tokens[:, 0], 3),
    )


def test_pickle_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    path = tmp_path / "evil"
    path.mkdir()
    (path / "config.json").write_text(
        '{"model_type": "mlp_speculator", "vocab_size": 5, "emb_dim": 4, "n_predict": 2}'
    )
    torch.save({"emb.0.weight": Evil()}, path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="could not be loaded with weights_only=True"):
        load_drafter(path)


def test_tied_copies_that_differ_are_rejected(tmp_path):
    w = ibm_mlp(True)
    w["head.2.weight"] = w["head.2.weight"] + 1
    with pytest.raises(CheckpointError, match=r"head\.2\.weight differs"):
        load_drafter(write(tmp_path / "m", vllm_config(True, False), w))


def test_missing_and_unexpected_keys_are_named(tmp_path):
    w = ibm_mlp(False)
    del w["proj.1.weight"]
    w["bogus.weight"] = torch.zeros(1)
    with pytest.raises(
        CheckpointError,
        match=r"missing keys \['proj\.1\.weight'\].*unexpected keys \['bogus\.weight'\]",
    ):
        load_drafter(write(tmp_path / "m", vllm_config(False, False), w))


def test_shape_mismatch_is_named(tmp_path):
    cfg = vllm_config(False, False) | {"vocab_size": V + 1}
    with pytest.raises(
        CheckpointError,
        match=r"shape mismatches.*emb\.0\.weight: checkpoint \(97, 16\) vs model \(98, 16\)",
    ):
        load_drafter(write(tmp_path / "m", cfg, ibm_mlp(False)))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"emb_dim": "32"}, "only one common width"),
        ({"method": "sum_rnn", "tie_weights": False}, "stacked sum_rnn layers are not"),
        ({"inner_dim": "abc"}, "not an int or dotted ints"),
        ({"tie_weights": False}, "tie_weights=true"),
        ({"n_predict": 0}, "n_predict must be a positive int"),
    ],
)
def test_unsupported_arctic_configs(tmp_path, change, message):
    cfg = arctic_config("ArcticLSTMSpeculatorPreTrainedModel", "sum_lstm", tie=True) | change
    with pytest.raises(CheckpointError, match=message):
        load_drafter(write(tmp_path / "m", cfg, arctic_lstm()))


def test_lstm_embedding_layout_must_match_tie_lstm_embs(tmp_path):
    cfg = arctic_config("ArcticLSTMSpeculatorPreTrainedModel", "sum_lstm", tie=True) | {
        "tie_lstm_embs": False
    }
    with pytest.raises(CheckpointError, match=r"missing \['input_emb\.0\.weight'"):
        load_drafter(write(tmp_path / "m", cfg, arctic_lstm()))


def test_dims_constants_are_small():
    assert (V, H, D) == (97, 24, 16)
