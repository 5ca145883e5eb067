"""``arctic-bench``: flags are checked before anything is loaded (exit status 2, the flag named);
one end-to-end run through vLLM on the bundled tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arctic_vllm.bench import METHODS, TINY_MODEL, cli, has_bundled_model


def checkpoint(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def error_of(capsys: pytest.CaptureFixture[str], argv: list[str], **kwargs: object) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv, **kwargs)  # type: ignore[arg-type]
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_without_a_bundled_model_model_is_required(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "has_bundled_model", lambda: False)  # as outside a checkout
    err = error_of(capsys, [])
    assert "--model DIR is required" in err


def test_a_model_directory_without_a_checkpoint_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = error_of(capsys, ["--model", str(tmp_path)])
    assert f"--model {tmp_path}: no Hugging Face checkpoint there (config.json missing)" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["--workloads", "agentic-edit,chat"], "--workloads: unknown workload(s) ['chat']"),
        (["--methods", "none,eagle"], "--methods: unknown method(s) ['eagle']"),
        (["--drafter", "/nonexistent"], "--drafter /nonexistent: no drafter there"),
        (["--batch-size", "one"], "argument --batch-size: invalid int value: 'one'"),
    ],
)
def test_bad_flags_are_named(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = checkpoint(tmp_path / "model")
    assert message in error_of(capsys, ["--model", str(model), *flags])


def test_drafter_methods_on_a_model_of_your_own_need_a_drafter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = checkpoint(tmp_path / "model")
    err = error_of(capsys, ["--model", str(model), "--methods", "none,arctic-lstm,arctic-hybrid"])
    assert "--methods arctic-lstm,arctic-hybrid run a drafter: pass --drafter DIR" in err


def resolve(argv: list[str]) -> tuple[list[str], dict[str, object]]:
    p = cli.build_parser(
        prog="arctic-bench",
        description="",
        default_model=None,
        default_json=Path("out.json"),
        default_plot=None,
    )
    methods, configs = cli.resolve_methods(p, p.parse_args(argv))
    return methods, dict(configs)


def test_default_methods_leave_the_drafter_methods_out_without_a_drafter(tmp_path: Path) -> None:
    model = checkpoint(tmp_path / "model")
    methods, configs = resolve(["--model", str(model)])
    assert methods == ["none", "ngram", "suffix", "arctic-suffix"]
    assert configs == METHODS


def test_a_drafter_serves_every_drafter_method(tmp_path: Path) -> None:
    model, drafter = checkpoint(tmp_path / "model"), checkpoint(tmp_path / "drafter")
    methods, configs = resolve(["--model", str(model), "--drafter", str(drafter)])
    assert methods == cli.DEFAULT_METHODS.split(",")
    assert configs["arctic-lstm"]["model"] == str(drafter)  # type: ignore[index]
    assert configs["arctic-hybrid"]["model"] == str(drafter)  # type: ignore[index]
    assert configs["suffix"] == METHODS["suffix"]


def test_the_bundled_model_brings_its_drafters() -> None:
    if not has_bundled_model():
        pytest.skip(f"no bundled model at {TINY_MODEL} (a checkout has one)")
    methods, configs = resolve(["--model", str(TINY_MODEL)])
    assert methods == cli.DEFAULT_METHODS.split(",")
    assert configs == METHODS


@pytest.mark.vllm
def test_a_run_on_the_tiny_model_is_lossless_and_writes_json_and_png(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    argv = ["--model", str(tiny_model), "--methods", "none,arctic-suffix"]
    argv += ["--workloads", "humaneval", "--json", str(out), "--plot", str(png)]
    assert cli.main(argv) == 0
    rows = json.loads(out.read_text())["results"]
    assert [(r["workload"], r["method"]) for r in rows] == [
        ("humaneval", "none"),
        ("humaneval", "arctic-suffix"),
    ]
    assert all(r["lossless"] for r in rows)
    assert png.read_bytes().startswith(b"\x89PNG")
    assert f"[arctic-bench] batch size 1; JSON written to {out}, PNG to {png}" in (
        capsys.readouterr().out
    )
