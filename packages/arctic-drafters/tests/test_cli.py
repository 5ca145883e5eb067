"""`arctic-train` end to end on a random tiny Llama with the workspace's tokenizer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tiny_target import tiny_llama

from arctic_drafters import IncompatibleTargetError, load_drafter
from arctic_drafters.cli import main

TOKENIZER = Path(__file__).resolve().parents[3] / "models" / "arctic-tiny-llama"


@pytest.fixture(scope="module")
def target_dir(tmp_path_factory):
    if not (TOKENIZER / "tokenizer.json").is_file():
        pytest.skip("the workspace tokenizer (models/arctic-tiny-llama) is not present")
    out = tmp_path_factory.mktemp("target")
    tiny_llama(vocab=8192, hidden=16, max_pos=64).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TOKENIZER / name, out / name)
    return out


def test_generate_train_evaluate(tmp_path, target_dir, capsys):
    rows = tmp_path / "rows.jsonl"
    text = "def add(a, b):\n    return a + b\n\n" * 8
    rows.write_text(
        json.dumps({"text": text})
        + "\n"
        + json.dumps({"messages": [{"role": "user", "content": text}]})
        + "\n"
    )
    common = ["--threads", "2"]
    assert (
        main(
            [
                *common,
                "generate",
                "--target",
                str(target_dir),
                "--prompts",
                str(rows),
                "--out",
                str(tmp_path / "d"),
                "--prompt-len",
                "8",
                "--gen-len",
                "10",
                "--max-prompts",
                "6",
                "--engine",
                "transformers",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                *common,
                "generate",
                "--target",
                str(target_dir),
                "--prompts",
                str(rows),
                "--out",
                str(tmp_path / "g"),
                "--prompt-len",
                "8",
                "--gen-len",
                "10",
                "--max-prompts",
                "4",
                "--greedy",
                "--engine",
                "transformers",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                *common,
                "train",
                "--target",
                str(target_dir),
                "--data",
                str(tmp_path / "d"),
                "--out",
                str(tmp_path / "run"),
                "--kind",
                "lstm",
                "--inner-dim",
                "8",
                "--steps",
                "3",
                "--batch-positions",
                "16",
                "--cache",
                str(tmp_path / "cache"),
                "--kl-weight",
                "0.5",
            ]
        )
        == 0
    )
    assert (tmp_path / "cache" / "hidden.safetensors").is_file()
    drafter = load_drafter(tmp_path / "run" / "final")
    assert drafter.config.vocab_size == 8192 and drafter.config.hidden_size == 16
    capsys.readouterr()
    assert (
        main(
            [
                *common,
                "evaluate",
                "--target",
                str(target_dir),
                "--data",
                str(tmp_path / "g"),
                "--drafter",
                str(tmp_path / "run" / "final"),
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert len(report["per_position"]) == 3 and report["positions"] == 4 * (
        10 - 3
    )  # draft points t = P-1 .. T-n-2
    assert report["tokens_per_step"] == pytest.approx(1 + report["mean_accepted"])
    # FP8 layers by GPTQ on the training data's hidden states, loaded back as a server does.
    assert (
        main(
            [
                *common,
                "quantize",
                "--target",
                str(target_dir),
                "--data",
                str(tmp_path / "d"),
                "--cache",
                str(tmp_path / "cache"),
                "--drafter",
                str(tmp_path / "run" / "final"),
                "--positions",
                "40",
                "--include-projections",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["rounding"] == "gptq" and summary["calibration_positions"] == 40
    assert summary["layers"] == ["proj.0", "proj.1", "head.0"]  # LSTM: 2 projections, tied head
    import torch

    from arctic_kernels import Fp8Linear, load_fp8_layers

    served = load_drafter(tmp_path / "run" / "final")
    report = load_fp8_layers(served, Path(summary["file"]))
    assert report.rounding == "gptq" and any(isinstance(m, Fp8Linear) for m in served.modules())
    state = torch.randn(3, 16, dtype=next(served.parameters()).dtype)
    drafts = served.propose(state, torch.tensor([1, 2, 3]), 3)
    assert drafts.shape == (3, 3) and int(drafts.max()) < 8192


def test_evaluate_refuses_a_drafter_for_another_target(tmp_path, target_dir, capsys, monkeypatch):
    from arctic_drafters import MLPSpeculatorConfig, build_speculator, save_drafter

    save_drafter(build_speculator(MLPSpeculatorConfig(8000, 16, 8)), tmp_path / "other")
    argv = [
        "evaluate",
        "--target",
        str(target_dir),
        "--data",
        str(tmp_path),
        "--drafter",
        str(tmp_path / "other"),
    ]
    # Refused before any data is read (tmp_path holds no shards): one line, status 2.
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "vocab_size 8000 != target vocab_size 8192" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    monkeypatch.setenv("ARCTIC_DEBUG", "1")  # debugging: the exception itself propagates
    with pytest.raises(IncompatibleTargetError, match="vocab_size 8000 != target vocab_size 8192"):
        main(argv)
