"""What a training run writes as it goes: ``log.jsonl`` (one JSON object per step: loss,
per-head loss and accuracy, learning rate, positions/s) and, when the ``tensorboard`` package
is installed, TensorBoard event files under ``tensorboard/`` (the same scalars).

Only the main process writes (``train_online`` calls ``write`` on rank 0).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

LOG_FILE = "log.jsonl"
TENSORBOARD_DIR = "tensorboard"
TENSORBOARD_HINT = 'pip install "arctic-drafters[train]" (it brings tensorboard)'


def tensorboard_writer(log_dir: Path) -> Any | None:
    """A ``SummaryWriter``, or None when the tensorboard package is absent."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(log_dir))


def _tensorboard_importable() -> bool:
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


class RunLog:
    """``tensorboard``: True requires it (ImportError naming the install), None uses it when
    installed (saying so once on stderr when not), False never."""

    def __init__(self, out_dir: str | os.PathLike[str], tensorboard: bool | None = None) -> None:
        self.out = Path(out_dir)
        self.path = self.out / LOG_FILE
        if tensorboard and not _tensorboard_importable():  # before anything is written
            raise ImportError(f"TensorBoard event files need tensorboard: {TENSORBOARD_HINT}")
        self.out.mkdir(parents=True, exist_ok=True)
        self._tb = None if tensorboard is False else tensorboard_writer(self.out / TENSORBOARD_DIR)
        if self._tb is None and tensorboard is None:
            print(
                f"arctic-train: tensorboard is not installed, writing {self.path} only "
                f"({TENSORBOARD_HINT})",
                file=sys.stderr,
            )
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    @property
    def tensorboard_dir(self) -> Path | None:
        return self.out / TENSORBOARD_DIR if self._tb is not None else None

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        if self._tb is None:
            return
        step = int(record["step"])
        for key, value in record.items():
            if key == "step":
                continue
            if isinstance(value, list):
                for i, v in enumerate(value):
                    self._tb.add_scalar(f"{key}/head{i}", v, step)
            elif isinstance(value, int | float):
                self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
