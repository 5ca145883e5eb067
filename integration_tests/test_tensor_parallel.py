"""Tensor parallelism through vLLM on the CPU (TP=2, one core per rank): the drafter's heads
are split over vLLM's own TP group (one all-gather of packed top-1 keys per head) and the
greedy output equals TP=2 without speculation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from arctic_vllm.bench import TINY_DRAFTERS

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parent.parent / "tools" / "tp_generate.py"


def _generate(speculative_config: dict[str, object] | None) -> tuple[dict[str, object], str]:
    cmd = [sys.executable, str(SCRIPT), "--tp", "2"]
    if speculative_config is not None:
        cmd += ["--speculative-config", json.dumps(speculative_config)]
    env = dict(os.environ, VLLM_LOGGING_LEVEL="INFO")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=420)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stdout + done.stderr


def test_tp2_arctic_drafter_is_lossless_with_vocab_parallel_heads():
    config = {"method": "arctic", "model": str(TINY_DRAFTERS / "lstm"), "num_speculative_tokens": 3}
    spec, log = _generate(config)
    base, _ = _generate(None)
    assert spec["outputs"] == base["outputs"]
    assert spec["accepted"] > 0
    # Both ranks split the 8192-token heads in two and used the vocab-parallel runner.
    assert log.count("vocab-parallel over vLLM's TP group (shards [4096, 4096])") == 2, log[-3000:]
