"""`arctic-train train` with the target in the loop: logs, the held-out table, the served
drafter, --config YAML equal to the flags, --help with defaults, flag combinations."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from tiny_target import random_prompts, tiny_llama

from arctic_drafters import load_drafter
from arctic_drafters.cli import main
from arctic_drafters.cli_parser import build_parser, expand_config
from arctic_drafters.training import generate_shards


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("online")
    model = tiny_llama()
    model.save_pretrained(root / "target")
    prompts = random_prompts(16)
    generate_shards(model, prompts[:12], root / "data", gen_len=16, temperature=1.0, progress=False)
    generate_shards(
        model, prompts[12:], root / "heldout", gen_len=16, temperature=0.0, progress=False
    )
    return {name: str(root / name) for name in ("target", "data", "heldout")} | {"root": root}


def _train_argv(dirs, out, *extra):
    return [
        "--threads", "2", "train", "--target", dirs["target"], "--data", dirs["data"],
        "--out", str(out), "--inner-dim", "16", "--steps", "4", "--batch-sequences", "4",
        "--checkpoint-every", "2", "--tensorboard", "off", *extra,
    ]  # fmt: skip


def test_train_writes_the_log_the_table_and_a_served_drafter(tmp_path, dirs, capsys):
    out = tmp_path / "run"
    assert main(_train_argv(dirs, out, "--eval-data", dirs["heldout"], "--kl-weight", "0.5")) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["steps_done"] == 4 and report["world_size"] == 1 and report["device"] == "cpu"
    assert "held-out acceptance" in captured.err and "| acc@1 | acc@2 | acc@3 |" in captured.err
    assert f"drafter ready to serve: {out / 'final'}" in captured.err
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(len(r["head_accuracy"]) == 3 and r["positions_per_s"] > 0 for r in records)
    acceptance = json.loads((out / "acceptance.json").read_text())
    assert acceptance["positions"] == 4 * (24 - 3 - 2 - 7 + 1)
    assert report["heldout_acceptance"] == acceptance
    drafter = load_drafter(out / "final")
    assert drafter.config.hidden_size == 16
    weights = load_file(str(out / "final" / "model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}  # --dtype's default
    meta = json.loads((out / "final" / "config.json").read_text())["metadata"]
    assert meta["heldout_acceptance"] == acceptance and meta["target"] == dirs["target"]


def test_stop_after_steps_then_rerun_finishes_the_same_run(tmp_path, dirs, capsys):
    assert main(_train_argv(dirs, tmp_path / "a", "--dtype", "float32")) == 0
    assert (
        main(_train_argv(dirs, tmp_path / "b", "--dtype", "float32", "--stop-after-steps", "2"))
        == 0
    )
    assert not (tmp_path / "b" / "final").exists()  # stopped: a checkpoint, no drafter yet
    assert main(_train_argv(dirs, tmp_path / "b", "--dtype", "float32")) == 0
    capsys.readouterr()
    a, b = load_drafter(tmp_path / "a" / "final"), load_drafter(tmp_path / "b" / "final")
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_evaluate_online_matches_the_cached_path(tmp_path, dirs, capsys):
    assert main(_train_argv(dirs, tmp_path / "run", "--dtype", "float32")) == 0
    capsys.readouterr()
    base = ["evaluate", "--target", dirs["target"], "--data", dirs["heldout"]]
    base += ["--drafter", str(tmp_path / "run" / "final")]
    assert main([*base, "--batch-sequences", "3"]) == 0
    online = json.loads(capsys.readouterr().out)
    assert main([*base, "--cache", str(tmp_path / "cache")]) == 0
    cached = json.loads(capsys.readouterr().out)
    assert online["positions"] == cached["positions"]
    # The cache stores bf16 states, the loop float32 ones: a rare near-tie may flip.
    assert online["per_position"] == pytest.approx(cached["per_position"], abs=0.05)


def test_a_config_file_equals_the_flags(tmp_path, dirs):
    parser = build_parser()
    flags = _train_argv(dirs, tmp_path / "run", "--kl-weight", "0.25", "--no-tie-weights")
    config = tmp_path / "train.yaml"
    config.write_text(
        "train:\n"
        f"  target: {dirs['target']}\n  data: {dirs['data']}\n  out: {tmp_path / 'run'}\n"
        "  inner_dim: 16\n  steps: 4\n  batch-sequences: 4\n  checkpoint_every: 2\n"
        "  tensorboard: 'off'\n  kl_weight: 0.25\n  no_tie_weights: true\n"
    )
    from_file = ["--threads", "2", "train", "--config", str(config)]
    a = parser.parse_args(flags)
    b = parser.parse_args(expand_config(parser, from_file))
    assert vars(a) | {"config": None} == vars(b) | {"config": None}
    # The command line overrides the file; a value in the file is checked as its flag is.
    c = parser.parse_args(expand_config(parser, [*from_file, "--steps", "9"]))
    assert c.steps == 9 and c.kl_weight == 0.25
    config.write_text("steps: 0\n")
    with pytest.raises(SystemExit):
        parser.parse_args(expand_config(parser, ["train", "--config", str(config)]))


def test_config_file_errors_are_one_line(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("stepz: 3\n")
    with pytest.raises(SystemExit) as exc:
        main(["train", "--config", str(config)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown key 'stepz' for `arctic-train train`" in err


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for fragment in ("--batch-sequences BATCH_SEQUENCES", "(default: 32)", "(default: 0.001)",
                     "--precision {auto,bf16,fp32}", "(default: auto)", "--config CONFIG"):  # fmt: skip
        assert fragment in text, fragment


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--batch-positions", "8"], "--batch-positions applies to --cache runs"),
        (["--cache", "C", "--micro-batch-sequences", "2"], "--micro-batch-sequences needs training without --cache"),
        (["--cache", "C", "--shard-target"], "--cache runs in one process"),
        (["--tensorboard", "on"], "tensorboard"),
    ],
)  # fmt: skip
def test_flag_combinations(tmp_path, dirs, capsys, monkeypatch, extra, message):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    argv = _train_argv(dirs, tmp_path / "run", *extra)
    argv = [a if a != "C" else str(tmp_path / "cache") for a in argv]  # the last flag wins
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("arctic-train: error: ") and message in last, last
