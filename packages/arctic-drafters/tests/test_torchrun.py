"""`torchrun --nproc-per-node 2` (gloo on the CPU) trains to the weights of one process with
the same global batch and seed; a 2-process checkpoint resumes in 1 process; FSDP2 sharding
of the frozen target changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from tiny_target import random_prompts, tiny_llama

from arctic_drafters import load_drafter
from arctic_drafters.cli import main
from arctic_drafters.training import generate_shards

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    model = tiny_llama()
    model.save_pretrained(root / "target")
    prompts = random_prompts(12)
    generate_shards(model, prompts, root / "data", gen_len=16, temperature=1.0, progress=False)
    return root


def _train_args(root, out, *extra):
    return [
        "train", "--target", str(root / "target"), "--data", str(root / "data"),
        "--out", str(out), "--inner-dim", "16", "--steps", "4", "--batch-sequences", "4",
        "--lr", "5e-3", "--kl-weight", "0.5", "--dtype", "float32", "--tensorboard", "off",
        "--device", "cpu", *extra,
    ]  # fmt: skip


def _torchrun(args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    cmd += ["--standalone", "-m", "arctic_drafters.cli", *args]  # --standalone: a free port
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def _assert_same_weights(a_dir, b_dir):
    a, b = load_drafter(a_dir), load_drafter(b_dir)
    for k, v in a.state_dict().items():
        torch.testing.assert_close(v, b.state_dict()[k], rtol=1e-4, atol=1e-5, msg=k)


@pytest.fixture(scope="module")
def one_process(dirs):
    out = dirs / "one"
    assert main(["--threads", "2", *_train_args(dirs, out)]) == 0
    return out


def test_two_processes_train_to_the_weights_of_one(dirs, one_process):
    out = dirs / "two"
    done = _torchrun(_train_args(dirs, out, "--micro-batch-sequences", "1"))
    assert "2 process(es), cpu" in done.stderr
    _assert_same_weights(one_process / "final", out / "final")


def test_a_two_process_checkpoint_of_a_sharded_target_resumes_in_one(dirs, one_process):
    out = dirs / "sharded"
    done = _torchrun(_train_args(dirs, out, "--shard-target", "--stop-after-steps", "2"))
    assert "2 process(es), cpu, fp32, target sharded by FSDP2" in done.stderr
    assert not (out / "final").exists()
    assert main(["--threads", "2", *_train_args(dirs, out)]) == 0  # one process goes on
    report = __import__("json").loads((out / "train_report.json").read_text())
    assert report["resumed_from"] == 2 and report["world_size"] == 1
    _assert_same_weights(one_process / "final", out / "final")
