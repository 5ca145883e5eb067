"""On a CUDA GPU: a few training steps with the target in the loop, bf16 autocast (what
`arctic-train train` picks there), learn and keep the drafter's weights float32; the CPU's
float32 run of the same steps lands close."""

from __future__ import annotations

import pytest
import torch
from tiny_target import random_prompts, tiny_llama

from arctic_drafters import LSTMSpeculatorConfig, build_speculator
from arctic_drafters.training import (
    DistillConfig,
    SequenceStore,
    TargetStates,
    generate_shards,
    init_runtime,
    place_target,
    train_online,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_training_steps_on_cuda_with_bf16_autocast(tmp_path):
    target = tiny_llama()
    prompts = random_prompts(32)
    generate_shards(target, prompts, tmp_path / "data", gen_len=24, temperature=1.0, progress=False)
    store = SequenceStore(tmp_path / "data")
    config = DistillConfig(steps=30, batch_sequences=16, lr=1e-2, kl_weight=0.5)
    runs = {}
    for device in ("cuda", "cpu"):
        runtime = init_runtime(device, "auto")
        assert runtime.autocast_dtype == (torch.bfloat16 if device == "cuda" else None)
        states = TargetStates(place_target(tiny_llama().to(runtime.target_dtype), runtime))
        torch.manual_seed(1)
        drafter = build_speculator(LSTMSpeculatorConfig(64, 16, 32))
        report = train_online(
            drafter, store, states, tmp_path / device, config, runtime, progress=False
        )
        runs[device] = (drafter, report)
    drafter, report = runs["cuda"]
    assert next(drafter.parameters()).device.type == "cuda"
    assert all(p.dtype == torch.float32 for p in drafter.parameters())  # master weights
    assert report["precision"] == "bf16" and report["last"]["loss"] < 0.9 * 3 * 4.16  # ln 64
    cpu_loss = runs["cpu"][1]["last"]["loss"]
    assert abs(report["last"]["loss"] - cpu_loss) < 0.15 * cpu_loss  # bf16 vs fp32 numerics
