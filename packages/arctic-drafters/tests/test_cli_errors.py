"""`arctic-train` errors: one line on stderr naming the flag and the value, exit status 2, and
a traceback only under --debug / ARCTIC_DEBUG=1."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from arctic_drafters import CheckpointError, MLPSpeculatorConfig, build_speculator, save_drafter
from arctic_drafters.cli import main


@pytest.fixture
def paths(tmp_path):
    """A target directory with a real (tiny Llama) config.json, a prompt file, a data dir,
    a drafter for that target and a plain file: enough for every flag to parse."""
    transformers = pytest.importorskip("transformers")
    target = tmp_path / "target"
    transformers.LlamaConfig(
        vocab_size=50, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2,
    ).save_pretrained(target)  # fmt: skip
    prompts = tmp_path / "rows.jsonl"
    prompts.write_text('{"text": "hello"}\n')
    (tmp_path / "data").mkdir()
    drafter = save_drafter(build_speculator(MLPSpeculatorConfig(50, 8, 6)), tmp_path / "drafter")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    return {
        "target": str(target),
        "prompts": str(prompts),
        "data": str(tmp_path / "data"),
        "drafter": str(drafter),
        "file": str(a_file),
        "dir": str(tmp_path),
        "out": str(tmp_path / "out"),
    }


def _argv(command: str, p: dict[str, str]) -> list[str]:
    base = ["--target", p["target"]]
    return {
        "generate": ["generate", *base, "--prompts", p["prompts"], "--out", p["out"]],
        "train": ["train", *base, "--data", p["data"], "--out", p["out"]],
        "evaluate": ["evaluate", *base, "--data", p["data"], "--drafter", p["drafter"]],
        "quantize": ["quantize", *base, "--data", p["data"], "--drafter", p["drafter"]],
    }[command]


def _one_line_error(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("arctic-train: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


BAD_FLAGS = [
    # (subcommand, flag, value, what the message says)
    ("generate", "--batch-size", "0", "--batch-size must be >= 1, got 0"),
    ("generate", "--batch-size", "two", "--batch-size must be an integer, got 'two'"),
    ("generate", "--prompt-len", "0", "--prompt-len must be >= 1, got 0"),
    ("generate", "--gen-len", "-3", "--gen-len must be >= 1, got -3"),
    ("generate", "--max-prompts", "0", "--max-prompts must be >= 1, got 0"),
    ("generate", "--top-k", "-1", "--top-k must be >= 0, got -1"),
    ("generate", "--temperature", "-0.5", "--temperature must be >= 0.0, got -0.5"),
    ("generate", "--temperature", "nan", "--temperature must be a finite number, got nan"),
    ("generate", "--seed", "-1", "--seed must be >= 0, got -1"),
    ("generate", "--seed", str(2**32), f"--seed must be <= {2**32 - 1}, got {2**32}"),
    ("generate", "--target", "/nonexistent", "--target must be a local model directory"),
    ("generate", "--prompts", "/nonexistent.jsonl", "--prompts must be an existing file"),
    ("generate", "--out", "FILE", "--out must be a directory"),
    ("train", "--inner-dim", "0", "--inner-dim must be >= 1, got 0"),
    ("train", "--inner-dim", "70000", "--inner-dim must be <= 65536, got 70000"),
    ("train", "--n-predict", "0", "--n-predict must be >= 1, got 0"),
    ("train", "--n-predict", "33", "--n-predict must be <= 32, got 33"),
    ("train", "--steps", "0", "--steps must be >= 1, got 0"),
    ("train", "--batch-positions", "-8", "--batch-positions must be >= 1, got -8"),
    ("train", "--lr", "0", "--lr must be > 0.0, got 0"),
    ("train", "--lr", "inf", "--lr must be a finite number, got inf"),
    ("train", "--weight-decay", "-0.1", "--weight-decay must be >= 0.0, got -0.1"),
    ("train", "--warmup-frac", "1", "--warmup-frac must be < 1.0, got 1"),
    ("train", "--grad-clip", "0", "--grad-clip must be > 0.0, got 0"),
    ("train", "--kl-weight", "-1", "--kl-weight must be >= 0.0, got -1"),
    ("train", "--checkpoint-every", "0", "--checkpoint-every must be >= 1, got 0"),
    ("train", "--data", "/nonexistent", "--data must be an existing directory, got '/nonexistent'"),
    ("train", "--cache", "FILE", "--cache must be a directory"),
    ("evaluate", "--drafter", "/nonexistent", "--drafter must be an existing directory"),
    ("evaluate", "--n", "0", "--n must be >= 1, got 0"),
    ("quantize", "--positions", "0", "--positions must be >= 1, got 0"),
    ("quantize", "--out", "DIR", "--out must be a file path"),
]


@pytest.mark.parametrize(
    ("command", "flag", "value", "message"),
    BAD_FLAGS,
    ids=[f"{c[0]}{c[1]}={c[2]}" for c in BAD_FLAGS],
)
def test_a_bad_flag_is_one_line_naming_it(paths, capsys, command, flag, value, message):
    value = {"FILE": paths["file"], "DIR": paths["dir"]}.get(value, value)
    with pytest.raises(SystemExit) as exit_info:
        main([*_argv(command, paths), flag, value])
    assert exit_info.value.code == 2
    _one_line_error(capsys, message, value)


def test_threads_flag_is_validated(paths, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--threads", "0", *_argv("generate", paths)])
    assert exit_info.value.code == 2
    _one_line_error(capsys, "--threads must be >= 1, got 0")


def test_flags_ruled_out_by_each_other_or_by_the_drafter(paths, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*_argv("train", paths), "--n-predict", "1"])
    assert exit_info.value.code == 2
    _one_line_error(capsys, "--n-predict must be >= 2 unless --no-tie-weights, got 1")
    with pytest.raises(SystemExit) as exit_info:
        main([*_argv("evaluate", paths), "--n", "5"])  # the drafter has 3 heads
    assert exit_info.value.code == 2
    _one_line_error(capsys, "--n must be <= the drafter's n_predict (3), got 5")


def test_package_errors_are_one_line_and_debug_shows_them(paths, capsys, monkeypatch):
    weights = os.path.join(paths["drafter"], "model.safetensors")
    open(weights, "wb").close()  # zero-length: a CheckpointError naming the file
    argv = _argv("evaluate", paths)
    assert main(argv) == 2
    _one_line_error(capsys, weights, "not a readable safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        main(["--debug", *argv])
    with pytest.raises(CheckpointError):
        main([*argv, "--debug"])  # also accepted after the subcommand
    monkeypatch.setenv("ARCTIC_DEBUG", "1")
    with pytest.raises(CheckpointError):
        main(argv)


def test_data_errors_are_one_line(paths, capsys):
    # A valid drafter for the target, but the data directory holds no shards.
    assert main(_argv("evaluate", paths)) == 2
    _one_line_error(capsys, paths["data"], "has no manifest.json; run the generate stage first")


def test_the_installed_command_exits_2_without_a_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ARCTIC_DEBUG"}
    argv = ["generate", "--target", "/nonexistent", "--prompts", "x", "--out", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "arctic_drafters.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "arctic-train: error: --target must be a local model directory with a config.json, "
        "got '/nonexistent'\n"
    )
