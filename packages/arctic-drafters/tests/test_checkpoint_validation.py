"""Configs and weights that parse but cannot be right: sizes past the limits or the file's
shapes (refused before the model is allocated), unknown architectures, non-floating or
non-finite weights, an n_predict the stored heads do not have."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from anchor_checkpoints import arctic_config, arctic_lstm, ibm_mlp, vllm_config, write
from safetensors.torch import load_file, save_file

from arctic_drafters import CheckpointError, MLPSpeculatorConfig, build_speculator, load_drafter
from arctic_drafters import save_drafter as save
from arctic_drafters.arctic_format import ARCTIC_ARCHITECTURES

LSTM_CONFIG = arctic_config("ArcticLSTMSpeculatorPreTrainedModel", "sum_lstm", tie=True)


def _native(tmp_path, config=None, **edits):
    root = save(build_speculator(config or MLPSpeculatorConfig(50, 8, 6)), tmp_path / "d")
    data = json.loads((root / "config.json").read_text())
    (root / "config.json").write_text(json.dumps(data | edits))
    return root


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("vocab_size", 1e11, r"vocab_size must be a positive int, got 100000000000\.0"),
        ("vocab_size", 10**11, "vocab_size must be <= 4194304, got 100000000000 "),
        ("hidden_size", 2**20, "hidden_size must be <= 65536, got 1048576 "),
        ("inner_dim", -6, "inner_dim must be a positive int, got -6"),
        ("inner_dim", True, "inner_dim must be a positive int, got True"),
        ("n_predict", 3.0, r"n_predict must be a positive int, got 3\.0"),
        ("n_predict", 1000, "n_predict must be <= 32"),
        ("vocab_size", "50", "vocab_size must be a positive int, got '50'"),
    ],
)
def test_native_sizes_are_checked_before_building(tmp_path, field, value, message):
    root = _native(tmp_path, **{field: value})
    with pytest.raises(CheckpointError, match=message) as info:
        load_drafter(root)
    assert str(root / "config.json") in str(info.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("vocab_size", 1e11, r"vocab_size=100000000000\.0 is not an int"),
        ("vocab_size", 10**11, "vocab_size must be <= 4194304"),
        ("vocab_size", 97.5, r"vocab_size=97\.5 is not an int"),
        ("vocab_size", -97, "vocab_size=-97 must be non-negative"),
        ("vocab_size", True, "vocab_size=True is not an int"),
        ("n_predict", False, "n_predict=False is not an int"),
        ("emb_dim", 1e11, r"emb_dim=100000000000\.0 is not an int"),
        ("emb_dim", "16.1e9", "is not an int or dotted ints"),
        ("inner_dim", "16.100000000000", "only one common width"),
        ("input_hidden_dim", 24.0, r"input_hidden_dim=24\.0 is not an int"),
        ("input_hidden_dim", 2**40, "hidden_size must be <= 65536"),
        ("input_hidden_dim", "24.24", "input_hidden_dim='24.24' must be one int"),
        ("tie_weights", "false", "tie_weights='false' must be true or false"),
        ("scale_input", 1, "scale_input=1 must be true or false"),
        ("tie_lstm_embs", None, "tie_lstm_embs=None must be true or false"),
    ],
)
def test_arctic_fields_are_typed_and_bounded(tmp_path, field, value, message):
    root = write(tmp_path / "m", LSTM_CONFIG | {field: value}, arctic_lstm())
    with pytest.raises(CheckpointError, match=message) as info:
        load_drafter(root)
    assert str(root / "config.json") in str(info.value)


def test_vllm_sizes_are_bounded(tmp_path):
    cfg = vllm_config(False, False) | {"inner_dim": 10**9}
    with pytest.raises(CheckpointError, match="inner_dim must be <= 65536, got 1000000000 "):
        load_drafter(write(tmp_path / "m", cfg, ibm_mlp(False)))


# A size inside every limit but far beyond the file: 4M x 4096 embeddings and heads are ~130 GB
# in float32. The old loader built the model first and died allocating it; under a 4 GiB
# address-space cap only a shape check on the meta device gets to say what is wrong.
_BIG = {"vocab_size": 4_000_000, "inner_dim": 4096}
_CAPPED_LOAD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from arctic_drafters import CheckpointError, load_drafter
for path in sys.argv[1:]:
    try:
        load_drafter(path)
        print("loaded")
    except CheckpointError as exc:
        print("CheckpointError", exc)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is Linux's")
def test_sizes_beyond_the_file_fail_before_the_model_is_allocated(tmp_path):
    native = _native(tmp_path, **_BIG)
    imported = write(tmp_path / "m", vllm_config(True, False) | _BIG, ibm_mlp(True))
    done = subprocess.run(
        [sys.executable, "-c", _CAPPED_LOAD, str(native), str(imported)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and len(lines) == 2, done.stderr[-2000:]
    assert "head.0.weight: checkpoint (50, 6) vs model (4000000, 4096)" in lines[0]
    assert "head.0.weight: checkpoint (97, 16) vs model (4000000, 4096)" in lines[1]


@pytest.mark.parametrize(
    "architectures",
    [["ArcticGRUSpeculatorPreTrainedModel"], [*ARCTIC_ARCHITECTURES[:1], "EagleSpeculator"]],
)
def test_unknown_architecture_is_named(tmp_path, architectures):
    cfg = LSTM_CONFIG | {"architectures": architectures}
    with pytest.raises(CheckpointError) as info:
        load_drafter(write(tmp_path / "m", cfg, arctic_lstm()))
    message = str(info.value)
    assert f"architecture {architectures[-1]!r} is not supported" in message
    assert all(name in message for name in ARCTIC_ARCHITECTURES)
    assert "width" not in message


@pytest.mark.parametrize("architectures", ["ArcticLSTMSpeculatorPreTrainedModel", 5])
def test_architectures_must_be_a_list(tmp_path, architectures):
    cfg = LSTM_CONFIG | {"architectures": architectures}
    with pytest.raises(CheckpointError, match="architectures must be a list of names"):
        load_drafter(write(tmp_path / "m", cfg, arctic_lstm()))


def test_a_foreign_config_lists_the_supported_architectures(tmp_path):
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
    with pytest.raises(CheckpointError, match="supported architectures: ArcticLSTM"):
        load_drafter(write(tmp_path / "m", cfg, arctic_lstm()))


def _native_with(tmp_path, key, tensor):
    root = save(build_speculator(MLPSpeculatorConfig(50, 8, 6)), tmp_path / "d")
    tensors = load_file(str(root / "model.safetensors"))
    tensors[key] = tensor(tensors[key])
    save_file(tensors, str(root / "model.safetensors"))
    return root


NOT_FLOAT = {
    "int32": lambda t: (t * 100).to(torch.int32),
    "int64": lambda t: t.to(torch.int64),
    "bool": lambda t: t > 0,
    "uint8": lambda t: t.to(torch.uint8),
}


@pytest.mark.parametrize("dtype", sorted(NOT_FLOAT))
def test_non_floating_weights_are_refused(tmp_path, dtype):
    root = _native_with(tmp_path, "head.0.weight", NOT_FLOAT[dtype])
    with pytest.raises(
        CheckpointError, match=rf"floating point, got \['head\.0\.weight: torch\.{dtype}'\]"
    ):
        load_drafter(root)
    w = arctic_lstm()
    w["projs.1.weight"] = NOT_FLOAT[dtype](w["projs.1.weight"])
    with pytest.raises(CheckpointError, match=r"projs\.1\.weight: torch\."):
        load_drafter(write(tmp_path / "m", LSTM_CONFIG, w))


def _poison(value, dtype=torch.float32):
    def edit(t):
        t = t.clone().to(dtype)
        t.view(-1)[:2] = value
        return t

    return edit


@pytest.mark.parametrize(
    ("value", "dtype"),
    [
        (float("nan"), torch.float32),
        (float("inf"), torch.float32),
        (float("-inf"), torch.bfloat16),
        (float("nan"), torch.float16),
    ],
)
def test_non_finite_weights_are_refused(tmp_path, value, dtype):
    root = _native_with(tmp_path, "ln.0.bias", _poison(value, dtype))
    with pytest.raises(
        CheckpointError, match=r"NaN or inf values \['ln\.0\.bias: 2 of 6 values'\]"
    ):
        load_drafter(root)
    w = ibm_mlp(True)  # tied, repeated per head: NaN must not pass as "differs from its copy"
    for i in range(3):
        w[f"head.{i}.weight"] = _poison(value)(w["head.0.weight"])
    with pytest.raises(CheckpointError, match=r"NaN or inf values .*'head\.0\.weight: 2 of"):
        load_drafter(write(tmp_path / "m", vllm_config(True, False), w))


def test_float8_weights_are_checked_too(tmp_path):
    root = _native_with(tmp_path, "head.0.weight", _poison(float("nan"), torch.float8_e4m3fn))
    with pytest.raises(CheckpointError, match=r"head\.0\.weight: 2 of 300 values"):
        load_drafter(root)


@pytest.mark.parametrize(("stored_as", "n_predict"), [("bin", 5), ("bin", 2), ("safetensors", 4)])
def test_n_predict_must_match_the_heads_stored_by_an_import(tmp_path, stored_as, n_predict):
    cfg = vllm_config(True, False) | {"n_predict": n_predict}  # heads repeated per index: 3
    root = write(tmp_path / "m", cfg, ibm_mlp(True), stored_as)
    with pytest.raises(
        CheckpointError,
        match=rf"stores 3 heads \(head\.0 \.\. head\.2\) .*n_predict is {n_predict}",
    ):
        load_drafter(root)
    cfg = vllm_config(False, False) | {"n_predict": n_predict}
    with pytest.raises(CheckpointError, match=rf"stores 3 heads .*n_predict is {n_predict}"):
        load_drafter(write(tmp_path / "u", cfg, ibm_mlp(False), stored_as))


def test_n_predict_must_match_a_native_checkpoint(tmp_path):
    untied = MLPSpeculatorConfig(50, 8, 6, n_predict=3, tie_weights=False)
    root = _native(tmp_path / "u", untied, n_predict=4)
    with pytest.raises(CheckpointError, match=r"saved with n_predict=3, .*says n_predict=4"):
        load_drafter(root)
    # A tied checkpoint stores its shared head once whatever n_predict is: the n_predict
    # recorded in model.safetensors' metadata is what catches an edited config.json.
    root = _native(tmp_path / "t", n_predict=5)
    with pytest.raises(CheckpointError, match=r"saved with n_predict=3, .*set it back to 3"):
        load_drafter(root)


def test_checkpoints_saved_before_n_predict_was_recorded_still_load(tmp_path):
    model = build_speculator(MLPSpeculatorConfig(50, 8, 6, n_predict=3, tie_weights=False))
    root = save(model, tmp_path / "d")
    tensors = load_file(str(root / "model.safetensors"))
    save_file(tensors, str(root / "model.safetensors"), metadata={"format": "pt"})
    loaded = load_drafter(root)
    assert all(
        torch.equal(a, b) for a, b in zip(model.parameters(), loaded.parameters(), strict=True)
    )
    cfg = json.loads((root / "config.json").read_text())
    (root / "config.json").write_text(json.dumps(cfg | {"n_predict": 4}))
    with pytest.raises(CheckpointError, match=r"stores 3 heads .*n_predict is 4"):
        load_drafter(root)
