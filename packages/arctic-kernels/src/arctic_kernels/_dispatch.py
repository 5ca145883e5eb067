"""Backend choice for the fused ops: Triton on CUDA when it imports, the reference elsewhere.

The choice is recorded per op (`selected_backend`) and logged once per (op, backend), so a
deployment can tell from its log which code actually ran.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Literal

import torch

from arctic_kernels.exceptions import BackendUnavailableError

Backend = Literal["reference", "triton"]
BACKENDS: tuple[Backend, ...] = ("reference", "triton")

logger = logging.getLogger("arctic_kernels")
_last_choice: dict[str, Backend] = {}
_logged: set[tuple[str, Backend]] = set()


@functools.cache
def triton_available() -> bool:
    """True when `import triton` works (it is an optional dependency)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def triton_interpreting() -> bool:
    """TRITON_INTERPRET=1 runs Triton kernels on CPU tensors (slowly; for tests only)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def choose_backend(op: str, device: torch.device, requested: Backend | None) -> Backend:
    """Pick the backend for `op` on `device`; an explicit request is honoured or refused."""
    if requested is not None and requested not in BACKENDS:
        raise ValueError(f"backend={requested!r} is unknown; use one of {BACKENDS} or None")
    if requested is None:
        chosen: Backend = "triton" if device.type == "cuda" and triton_available() else "reference"
    else:
        chosen = requested
    if chosen == "triton":
        if not triton_available():
            raise BackendUnavailableError(
                f"{op}: backend='triton' needs triton; run `pip install \"arctic-kernels[triton]\"`"
            )
        if device.type != "cuda" and not triton_interpreting():
            raise BackendUnavailableError(
                f"{op}: backend='triton' on a {device.type} tensor needs TRITON_INTERPRET=1 "
                "set before triton is imported, or a CUDA tensor"
            )
    _last_choice[op] = chosen
    if (op, chosen) not in _logged:
        _logged.add((op, chosen))
        logger.info("arctic_kernels: %s runs on the %s backend (%s)", op, chosen, device.type)
    return chosen


def selected_backend(op: str) -> Backend | None:
    """The backend the last call of `op` ran on in this process, or None if never called."""
    return _last_choice.get(op)
