"""export_drafter / `arctic-train export`: what Arctic Inference 0.3.0 and vLLM 0.32 read.

Each export is read back by an independent reader (serving_reference: the readers' module
parameters, their loaders' renaming, their equations; Arctic's own module needs a GPU to
import) and by our loader (round trip, bit-identical in float32)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from anchor_checkpoints import write
from published_layouts import arctic_lstm_config, arctic_lstm_state
from safetensors.torch import load_file
from serving_reference import greedy, logits, read_checkpoint
from small_configs import SMALL_CONFIGS

from arctic_drafters import (
    EXPORT_FORMATS,
    ExportError,
    LSTMSpeculatorConfig,
    MLPSpeculatorConfig,
    build_speculator,
    export_drafter,
    load_drafter,
)
from arctic_drafters.cli import main

LLAMA = ["LlamaForCausalLM"]
MLP_FIELDS = [f.name for f in dataclasses.fields(MLPSpeculatorConfig)]
# (config, format) pairs a reader cannot run, and why.
REFUSED = {
    ("lstm", "mlp_speculator"): "has no LSTM gates",
    ("lstm-untied-embs", "mlp_speculator"): "has no LSTM gates",
    ("lstm-untied-embs", "arctic"): "only with tie_weights=true and tie_lstm_embs=true",
}


def _inputs(config, batch=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, config.hidden_size, generator=g, dtype=torch.float64) * 3
    tokens = torch.randint(0, config.vocab_size, (batch, config.n_predict), generator=g)
    return hidden, tokens


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_export_is_read_by_the_serving_reader_and_round_trips(tmp_path, small_config, fmt):
    name = next(k for k, v in SMALL_CONFIGS.items() if v == small_config)
    model = build_speculator(small_config).eval()
    if (name, fmt) in REFUSED:
        with pytest.raises(ExportError, match=REFUSED[name, fmt]):
            export_drafter(model, tmp_path / "out", fmt, base_model_archs=LLAMA)
        assert not (tmp_path / "out").exists()  # refused before anything is written
        return
    out = export_drafter(model, tmp_path / "out", fmt, base_model_archs=LLAMA, dtype=torch.float32)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    cfg, weights = read_checkpoint(out)
    assert cfg["base_model_archs"] == LLAMA and cfg["torch_dtype"] == "float32"
    assert len(cfg["top_k_tokens_per_head"]) == cfg["n_predict"] == small_config.n_predict
    model = model.double()
    hidden, tokens = _inputs(small_config)
    torch.testing.assert_close(model(hidden, tokens), logits(cfg, weights, hidden, tokens))
    drafts = greedy(lambda h, t: logits(cfg, weights, h, t), hidden, tokens[:, 0], 2)
    assert torch.equal(model.propose(hidden, tokens[:, 0], 2), drafts)
    back = load_drafter(out).double()
    recorded = dataclasses.replace(small_config, base_model_archs=tuple(LLAMA))
    if (name, fmt) == ("sum-rnn", "mlp_speculator"):  # the same step, read as IBM's MLP
        recorded = MLPSpeculatorConfig(**{f: getattr(recorded, f) for f in MLP_FIELDS})
    assert back.config == recorded
    assert torch.equal(back(hidden, tokens), model(hidden, tokens))


def test_the_arctic_lstm_export_is_the_published_layout(tmp_path):
    """Published checkpoint -> our loader -> export: the same tensors under the same names
    (each shared tensor once), the same config fields ArcticTraining writes."""
    v, h, d = 97, 24, 16
    published = arctic_lstm_config(v, h, d, archs=LLAMA)
    state = arctic_lstm_state(v, h, d, repeat_shared=False, seed=4)
    model = load_drafter(write(tmp_path / "published", published, state, "safetensors"))
    out = export_drafter(model, tmp_path / "out", "arctic", dtype=torch.float32)
    exported = load_file(out / "model.safetensors")
    assert sorted(exported) == sorted(state)
    assert all(torch.equal(exported[k], state[k]) for k in state)
    cfg = json.loads((out / "config.json").read_text())
    kept = {k: v for k, v in published.items() if k not in ("transformers_version", "torch_dtype")}
    kept.pop("base_model_name_or_path")
    assert {k: cfg[k] for k in kept} == kept


def test_vllm_reads_the_mlp_speculator_config(tmp_path):
    configs = pytest.importorskip("vllm.transformers_utils.configs.mlp_speculator")
    config = MLPSpeculatorConfig(61, 20, 12, n_predict=4, tie_weights=False)
    out = export_drafter(build_speculator(config), tmp_path / "out", "mlp_speculator")
    read = configs.MLPSpeculatorConfig.from_pretrained(str(out))
    assert (read.vocab_size, read.emb_dim, read.inner_dim, read.n_predict) == (61, 20, 12, 4)
    assert read.num_lookahead_tokens == 4 and read.tie_weights is False
    assert read.architectures == ["MLPSpeculatorPreTrainedModel"]


def test_bfloat16_is_the_default_dtype(tmp_path):
    out = export_drafter(
        build_speculator(SMALL_CONFIGS["lstm"]), tmp_path / "o", "arctic", base_model_archs=LLAMA
    )
    assert {t.dtype for t in load_file(out / "model.safetensors").values()} == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"


def test_arctic_needs_base_model_archs(tmp_path):
    model = build_speculator(SMALL_CONFIGS["mlp-tied"])
    with pytest.raises(ExportError, match="without base_model_archs"):
        export_drafter(model, tmp_path / "o", "arctic")
    recorded = build_speculator(
        LSTMSpeculatorConfig(61, 20, 12, base_model_archs=("Qwen2ForCausalLM",))
    )
    out = export_drafter(recorded, tmp_path / "r", "arctic")
    assert json.loads((out / "config.json").read_text())["base_model_archs"] == ["Qwen2ForCausalLM"]
    # vLLM's reader never checks it: written when known, not required.
    assert "base_model_archs" not in json.loads(
        (export_drafter(model, tmp_path / "v", "mlp_speculator") / "config.json").read_text()
    )


@pytest.mark.parametrize(
    ("model", "kwargs", "message"),
    [
        (MLPSpeculatorConfig(61, 20, 12, norm_eps=1e-5), {}, "norm_eps=1e-05 cannot be exported"),
        (MLPSpeculatorConfig(61, 20, 12), {"format": "eagle"}, "format must be one of"),
        (MLPSpeculatorConfig(61, 20, 12), {"dtype": torch.int8}, "floating-point dtype"),
        (MLPSpeculatorConfig(61, 20, 12), {"base_model_archs": [""]}, "architecture names"),
    ],
)
def test_unexportable_drafters_are_refused_before_writing(tmp_path, model, kwargs, message):
    kwargs = {"format": "mlp_speculator", "base_model_archs": LLAMA} | kwargs
    with pytest.raises(ExportError, match=message):
        export_drafter(build_speculator(model), tmp_path / "o", **kwargs)
    assert not (tmp_path / "o").exists()


def test_a_quantized_or_edited_drafter_is_refused(tmp_path):
    model = build_speculator(SMALL_CONFIGS["mlp-tied"])
    model.extra = torch.nn.Linear(2, 2)
    with pytest.raises(ExportError, match=r"not the plain ones.*extra\.weight"):
        export_drafter(model, tmp_path / "o", "mlp_speculator")


def test_an_output_holding_pytorch_model_bin_is_refused(tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "pytorch_model.bin").write_bytes(b"old")
    with pytest.raises(ExportError, match=r"holds a pytorch_model\.bin"):
        export_drafter(
            build_speculator(SMALL_CONFIGS["mlp-tied"]), tmp_path / "o", "mlp_speculator"
        )
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["pytorch_model.bin"]


# -- arctic-train export ---------------------------------------------------------------


def _saved(tmp_path, config):
    from arctic_drafters import save_drafter

    return save_drafter(build_speculator(config), tmp_path / "drafter", dtype=torch.float32)


def test_cli_export(tmp_path, capsys):
    drafter = _saved(tmp_path, SMALL_CONFIGS["lstm"])
    argv = ["export", "--drafter", str(drafter), "--out", str(tmp_path / "a"), "--format", "arctic"]
    assert main([*argv, "--base-model-arch", "LlamaForCausalLM", "--dtype", "float32"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["files"] == ["config.json", "model.safetensors"]
    cfg, _ = read_checkpoint(tmp_path / "a")
    assert cfg["architectures"] == ["ArcticLSTMSpeculatorPreTrainedModel"]
    assert cfg["base_model_archs"] == LLAMA


def test_cli_export_takes_the_targets_architecture(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    target = tmp_path / "target"
    transformers.LlamaConfig(
        vocab_size=61, hidden_size=20, num_attention_heads=2, architectures=LLAMA
    ).save_pretrained(target)
    drafter = _saved(tmp_path, SMALL_CONFIGS["mlp-tied"])
    argv = ["export", "--drafter", str(drafter), "--out", str(tmp_path / "a"), "--format", "arctic"]
    assert main([*argv, "--target", str(target)]) == 0
    assert read_checkpoint(tmp_path / "a")[0]["base_model_archs"] == LLAMA
    other = _saved(tmp_path / "x", MLPSpeculatorConfig(62, 20, 12))
    assert (
        main(
            [
                "export",
                "--drafter",
                str(other),
                "--out",
                str(tmp_path / "b"),
                "--format",
                "arctic",
                "--target",
                str(target),
            ]
        )
        == 2
    )
    assert "vocab_size 62 != target vocab_size 61" in capsys.readouterr().err


def test_cli_export_of_an_lstm_to_vllm_is_one_line(tmp_path, capsys):
    drafter = _saved(tmp_path, SMALL_CONFIGS["lstm"])
    argv = [
        "export",
        "--drafter",
        str(drafter),
        "--out",
        str(tmp_path / "v"),
        "--format",
        "mlp_speculator",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("arctic-train: error: vLLM's mlp_speculator format has no LSTM gates")
    assert err.count("\n") == 1
