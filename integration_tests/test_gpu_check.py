"""tools/gpu_check.py on a machine without CUDA: one clear line, exit status 2, nothing run.

(On a GPU it runs every `gpu`-marked test and the draft-loop checks; see its docstring.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

GPU_CHECK = Path(__file__).resolve().parent.parent / "tools" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: run the check")
def test_without_cuda_it_says_so_and_exits_2():
    done = subprocess.run(
        [sys.executable, str(GPU_CHECK)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("gpu_check: no CUDA device (torch ")
    assert done.stderr.count("\n") == 1 and done.stdout == ""
