"""Fixtures of arctic-vllm's unit tests: the bundled tiny target and its drafters, no engine."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

MODELS = Path(os.environ.get("ARCTIC_MODELS_DIR", Path(__file__).resolve().parents[3] / "models"))
TINY_MODEL = MODELS / "arctic-tiny-llama"
TINY_DRAFTERS = MODELS / "arctic-tiny-llama-drafters"


def _require(path: Path) -> Path:
    if not (path / "config.json").is_file():
        pytest.skip(f"{path} is missing (train it with tools/train_target.py / train_drafters.py)")
    return path


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    return _require(TINY_MODEL)


@pytest.fixture(scope="session", params=["mlp", "lstm"])
def drafter_dir(request: pytest.FixtureRequest) -> Path:
    return _require(TINY_DRAFTERS / request.param)


@pytest.fixture(scope="session")
def lstm_drafter() -> Path:
    return _require(TINY_DRAFTERS / "lstm")


@pytest.fixture(scope="session")
def target_config(tiny_model: Path) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(tiny_model)


@pytest.fixture(scope="session")
def engine_config(tiny_model: Path) -> Iterator[Callable[[dict[str, Any] | None], Any]]:
    """Build vLLM's real VllmConfig for the tiny target (start-up without an engine), with the
    arctic patches applied as vLLM's plugin loader would."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
        mp.setenv("HF_HUB_OFFLINE", "1")
        from vllm.engine.arg_utils import EngineArgs

        from arctic_vllm.patches import apply_all

        apply_all()  # re-entrant: vLLM's plugin loader may have applied them already

        def build(speculative_config: dict[str, Any] | None) -> Any:
            args = EngineArgs(
                model=str(tiny_model),
                speculative_config=speculative_config,
                max_model_len=512,
                enforce_eager=True,
                dtype="float32",
            )
            return args.create_engine_config()

        yield build


@pytest.fixture
def arctic_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog for arctic's logger, a child of vLLM's (which does not propagate to the root,
    where caplog listens): its records go to caplog's handler exactly once."""
    import logging

    logger = logging.getLogger("vllm.arctic")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(level)
        logger.propagate = propagate
