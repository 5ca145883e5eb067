from __future__ import annotations

import os
import sys

import pytest
import torch

# Without a GPU the Triton kernels run in Triton's CPU interpreter. It must be on before
# triton is first imported: triton.language's own helpers (tl.sum, tl.sigmoid, ...) are
# jit functions created at import, and compiled ones cannot be called from interpreted
# kernels. This is process-wide, so run these tests in their own pytest process, not in
# one with vLLM (whose Triton code would be interpreted too). On CUDA they compile for real.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# stand_ins.py sits beside the tests; the root config puts nothing on the path.
sys.path.insert(0, os.path.dirname(__file__))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
